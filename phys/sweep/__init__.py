"""Sweeps: a grid of ``phys train`` or ``phys swap`` runs, each point a Ray task.

A sweep file is TOML::

    [sweep]
    command = "train"        # or "swap"
    out = "runs/widths"      # default: runs/<file name>
    cpus_per_point = 1       # Ray CPUs each point asks for (and its torch threads)
    max_points = 5000        # allow a grid this large (default 1000; or phys sweep --yes)

    [options]                # the same for every point: phys train options by name
    data = "digits"
    epochs = 5
    device_options = { noise = 0.01 }

    [grid]                   # every combination of these values is one point
    trainer = ["phyll", "pat"]
    hidden = [64, 256]
    seed = [0, 1, 2]

Option names, types, allowed values and defaults are those of the options dataclass of
the command (:class:`~phys.experiment.TrainSpec` for ``phys train``,
:class:`~phys.quantum.study.SwapConfig` for ``phys swap``), written with ``_`` or ``-``
(``dataset`` also means ``data``; ``seeds`` in a grid means ``seed``). A swap grid takes
``level`` and ``seed``: each point trains one level with one seed. The ``[sweep]`` table
is :class:`~phys.sweep.schema.SweepSettings`.

The whole file is checked when it is read, before Ray starts: every value against its
option's type and bounds, and every point as ``phys train`` checks it (the device and
its options, the dataset and its options, a simulator twin's options); a mistake is one
error naming the file, the key and its line. A grid of more points than ``max_points``
(default 1000) is refused, counted before any point is made, unless confirmed.

Each point runs the code of ``phys train`` / ``phys swap`` in its own run directory
``OUT/points/NAME`` (with checkpoints, see :mod:`phys.runs`), as a Ray task: on a local
Ray by default, on a cluster with ``address``. What a point of each command does is one
strategy object (:mod:`phys.sweep.commands`). A device whose info says ``exclusive`` (one
physical instance, such as a serial lab device) is opened once, in one Ray actor, and
every point's queries go through that actor one at a time; other devices are opened by
each point. The results are gathered into ``OUT/sweep.csv``, ``OUT/sweep.md`` and
``OUT/sweep.png``; ``OUT/sweep.json`` remembers finished points, so running the sweep
again skips them (and resumes unfinished ones from their checkpoints).
"""

from __future__ import annotations

from phys.sweep.commands import COMMANDS, SwapCommand, SweepCommand, TrainCommand
from phys.sweep.holder import DeviceHolder
from phys.sweep.runner import SweepOutcome, run_point, run_sweep
from phys.sweep.schema import Point, Sweep, SweepSettings, load_sweep, parse_sweep

__all__ = ["COMMANDS", "DeviceHolder", "Point", "SwapCommand", "Sweep", "SweepCommand",
           "SweepOutcome", "SweepSettings", "TrainCommand", "load_sweep", "parse_sweep",
           "run_point", "run_sweep"]
