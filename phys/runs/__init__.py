"""Run directories: a run's configuration, metrics and checkpoints, and resuming it.

Every ``phys train`` run (and each level and seed of ``phys swap``) keeps its files in
one directory::

    config.json          what is being run; ``--resume`` refuses a different one
    checkpoint.pt        the latest checkpoint: after every epoch and every N batches
    checkpoint.prev.pt   the checkpoint before it, used when the latest is damaged
    metrics.csv          one row per finished epoch
    results.json         when the run is finished (``phys train`` also draws curve.png)
    events.out.tfevents.*  TensorBoard event files, written while ``phys train`` runs
    .lock                while a run writes the directory: the writer's pid (flock)

A checkpoint holds the model, the optimiser states, every random generator (the
trainer's, torch's, Python's, NumPy's and the devices' own noise generators), the epoch and
the position within it, and the devices' counters. It is written atomically (temporary
file, fsync, rename), the one it replaces kept as ``checkpoint.prev.pt``, sealed with a
checksum of every byte and of ``config.json`` that is verified before it is used, and
read with ``torch.load(weights_only=True)``, so a checkpoint runs no code when loaded.

With deterministic devices a resumed run ends exactly where the uninterrupted run would
have: same weights, same accuracies, same device counters.

The modules, one job each:

- :mod:`phys.runs.layout`: :class:`RunDir`, the file names, ``config.json``, atomic
  checkpoint files;
- :mod:`phys.runs.checksum`: the checksums sealed into checkpoint files;
- :mod:`phys.runs.tensorboard`: :class:`~phys.runs.tensorboard.TensorBoardLog`, live
  monitoring of a run;
- :mod:`phys.runs.lock`: :class:`~phys.runs.lock.RunLock`, one writer per directory, and
  the checks that a path can be a run directory;
- :mod:`phys.runs.state`: what a checkpoint holds (:func:`train_state`,
  :func:`restore_train`);
- :mod:`phys.runs.keeper`: :class:`Keeper`, the callback that saves checkpoints;
- :mod:`phys.runs.device_loss`: :class:`DeviceGuard`, the callback that survives a lab
  device that stops answering, and :class:`DeviceLost`;
- :mod:`phys.runs.provenance`: the versions and git commit recorded in ``results.json``;
- :mod:`phys.runs.training`: :func:`train`, what ``phys train`` runs;
- :mod:`phys.runs.swap`: :func:`~phys.runs.swap.run_study`, what ``phys swap`` runs.
"""

from __future__ import annotations

from phys.runs.device_loss import DeviceGuard, DeviceLost, SettingRefused
from phys.runs.keeper import Keeper
from phys.runs.layout import (
    CONFIG,
    FORMAT,
    LATEST,
    METRICS,
    PREVIOUS,
    RESULTS,
    VERSION,
    CheckpointError,
    CheckpointWarning,
    RunDir,
    config_diff,
    jsonable,
)
from phys.runs.lock import RunLocked
from phys.runs.provenance import versions
from phys.runs.state import (
    device_state,
    load_device_state,
    restore_rng,
    restore_train,
    rng_state,
    train_state,
)
from phys.runs.training import train

__all__ = ["CONFIG", "FORMAT", "LATEST", "METRICS", "PREVIOUS", "RESULTS", "VERSION",
           "CheckpointError", "CheckpointWarning", "DeviceGuard", "DeviceLost", "Keeper",
           "RunDir", "RunLocked", "SettingRefused", "config_diff", "device_state", "jsonable",
           "load_device_state", "restore_rng", "restore_train", "rng_state", "train",
           "train_state", "versions"]
