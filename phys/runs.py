"""Run directories: a run's configuration, metrics and checkpoints, and resuming it.

Every ``phys train`` run (and each level and seed of ``phys swap``) keeps its files in
one directory::

    config.json          what is being run; ``--resume`` refuses a different one
    checkpoint.pt        the latest checkpoint: after every epoch and every N batches
    checkpoint.prev.pt   the checkpoint before it, used when the latest is damaged
    metrics.csv          one row per finished epoch
    results.json         when the run is finished (``phys train`` also draws curve.png)

A checkpoint holds the model, the optimiser states, every random generator (the
trainer's, torch's, Python's, NumPy's and the devices' own noise generators), the epoch and
the position within it, and the devices' counters. It is written atomically (temporary
file, fsync, rename), the one it replaces kept as ``checkpoint.prev.pt``, and read with
``torch.load(weights_only=True)``, so a checkpoint runs no code when loaded.

With deterministic devices a resumed run ends exactly where the uninterrupted run would
have: same weights, same accuracies, same device counters.
"""

from __future__ import annotations

import copy
import io
import json
import math
import os
import random
import sys
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from phys import atomic

__all__ = ["CONFIG", "LATEST", "PREVIOUS", "CheckpointError", "CheckpointWarning",
           "DeviceLost", "Keeper", "RunDir", "config_diff", "device_guard", "jsonable",
           "restore_rng", "rng_state"]

CONFIG, LATEST, PREVIOUS = "config.json", "checkpoint.pt", "checkpoint.prev.pt"
RESULTS, METRICS = "results.json", "metrics.csv"
FORMAT, VERSION = "physnn-run", 1


class CheckpointError(ValueError):
    """No readable checkpoint in a run directory; the message names every file tried."""


class CheckpointWarning(RuntimeWarning):
    """The latest checkpoint was damaged or missing; an earlier one was used instead."""


class DeviceLost(RuntimeError):
    """A device stopped answering and did not come back in time; the run was saved."""


def _log(text: str) -> None:
    print(f"phys: {text}", file=sys.stderr, flush=True)


def jsonable(obj: Any) -> Any:
    """``obj`` as JSON would give it back (tuples become lists), for comparing configs."""
    return json.loads(json.dumps(obj, sort_keys=True))


def config_diff(saved: Mapping[str, Any], given: Mapping[str, Any]) -> list[str]:
    """One line per key whose value differs: ``"epochs: 5 in the run, 8 now"``."""
    saved, given = jsonable(dict(saved)), jsonable(dict(given))
    lines = []
    for key in sorted(set(saved) | set(given)):
        if saved.get(key, ...) != given.get(key, ...):
            old = repr(saved[key]) if key in saved else "(absent)"
            new = repr(given[key]) if key in given else "(absent)"
            lines.append(f"{key}: {old} in the run, {new} now")
    return lines


class RunDir:
    """The files of one run in directory ``path`` (see the module docstring).

    Examples::

        >>> import tempfile
        >>> run = RunDir(tempfile.mkdtemp())
        >>> run.start("train", {"epochs": 2}, fresh=True)
        >>> run.save({"epoch": 1})
        >>> run.save({"epoch": 2})
        >>> state, used = run.load()
        >>> state["epoch"], used.name
        (2, 'checkpoint.pt')
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.config_path = self.path / CONFIG
        self.latest = self.path / LATEST
        self.previous = self.path / PREVIOUS
        self.results = self.path / RESULTS

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # -- what is there ----------------------------------------------------------------
    def read_config(self) -> dict[str, Any] | None:
        """``{"kind": ..., "config": {...}}`` of the run here, or ``None``."""
        if not self.config_path.exists():
            return None
        try:
            saved = json.loads(self.config_path.read_text())
        except (OSError, ValueError) as err:
            raise ValueError(f"{self.config_path}: unreadable run configuration: {err}") from None
        if not isinstance(saved, dict) or "config" not in saved:
            raise ValueError(f"{self.config_path}: not a run configuration")
        return saved

    def has_checkpoint(self) -> bool:
        return self.latest.exists() or self.previous.exists()

    def finished(self) -> bool:
        """Whether the run wrote its results."""
        return self.results.exists()

    def check(self, kind: str, config: Mapping[str, Any], *, resume: bool,
              overwrite: bool = False, command: str = "phys train",
              saved: bool | None = None) -> None:
        """Refuse, before anything is opened or written, what would lose or mix up work.

        With ``resume``: the directory must hold a run of ``kind`` with this ``config``
        (otherwise the message lists every difference) and saved progress (``saved``;
        by default: a checkpoint) or results. Without: it must not hold an unfinished run
        with saved progress, unless ``overwrite``.

        Raises:
            ValueError: with what to do instead.
        """
        if saved is None:
            saved = self.has_checkpoint()
        config_saved = self.read_config()
        if resume:
            if config_saved is None:
                raise ValueError(f"--resume {self.path}: no run there (no {CONFIG})")
            if config_saved.get("kind") != kind:
                raise ValueError(f"--resume {self.path}: that is a "
                                 f"{config_saved.get('kind')!r} run, not a {kind!r} run")
            diff = config_diff(config_saved["config"], config)
            if diff:
                raise ValueError(f"--resume {self.path}: the run there has another "
                                 f"configuration:\n  " + "\n  ".join(diff))
            if not saved and not self.finished():
                raise ValueError(f"--resume {self.path}: no checkpoint to resume from")
        elif config_saved is not None and saved and not self.finished() and not overwrite:
            raise ValueError(f"{self.path} holds an unfinished run; continue it with "
                             f"`{command} --resume {self.path}`, or pass --overwrite to start "
                             f"it again")

    # -- writing ----------------------------------------------------------------------
    def start(self, kind: str, config: Mapping[str, Any], *, fresh: bool) -> None:
        """Create the directory and write ``config.json``; ``fresh`` removes the
        checkpoints and results of an earlier run first. Temporary files that a killed
        run left behind are removed."""
        self.path.mkdir(parents=True, exist_ok=True)
        for name in (LATEST, PREVIOUS, METRICS, RESULTS, CONFIG, "curve.png"):  # a killed run
            for stale in (*self.path.glob(f".{name}.*.tmp"), *self.path.glob(f".{name}.*.link")):
                stale.unlink(missing_ok=True)
        if fresh:
            for path in (self.latest, self.previous, self.results, self.path / METRICS):
                path.unlink(missing_ok=True)
        atomic.write_json(self.config_path, {"format": FORMAT, "version": VERSION,
                                             "kind": kind, "config": jsonable(dict(config))})

    def save(self, state: Mapping[str, Any]) -> None:
        """Write ``state`` as the latest checkpoint; the latest so far becomes the
        previous one. A reader always finds one complete checkpoint."""
        self.write(self.serialize(state))

    @staticmethod
    def serialize(state: Mapping[str, Any]) -> bytes:
        """``state`` as the bytes of a checkpoint file (``torch.save``)."""
        import torch

        buf = io.BytesIO()
        torch.save(dict(state), buf)
        return buf.getvalue()

    def write(self, data: bytes) -> None:
        """Write checkpoint bytes from :meth:`serialize` (see :meth:`save`)."""
        with atomic.atomic_path(self.latest) as tmp:
            tmp.write_bytes(data)
            if self.latest.exists():
                self._keep_previous()

    def _keep_previous(self) -> None:
        """Make the latest checkpoint the previous one, the latest staying in place
        until the new one replaces it (a hard link; a rename where links are not
        supported)."""
        link = self.path / f".{PREVIOUS}.{os.getpid()}.link"
        try:
            link.unlink(missing_ok=True)
            os.link(self.latest, link)
        except OSError:
            os.replace(self.latest, self.previous)
        else:
            os.replace(link, self.previous)

    def write_metrics(self, history: Sequence[Mapping[str, Any]]) -> None:
        atomic.write_text(*self.metrics(history).popitem())

    def metrics(self, history: Sequence[Mapping[str, Any]]) -> dict[Path, str]:
        """``{path of metrics.csv: its text}`` for ``history``."""
        from phys.report import metrics_csv

        return {self.path / METRICS: metrics_csv(history)}

    # -- reading ----------------------------------------------------------------------
    def load(self) -> tuple[dict[str, Any], Path]:
        """The newest readable checkpoint and its path.

        A damaged or truncated ``checkpoint.pt`` is reported with a
        :class:`CheckpointWarning` naming the file, and ``checkpoint.prev.pt`` is used.

        Raises:
            CheckpointError: neither file can be read (the message says why for each).
        """
        import torch

        problems = []
        for path in (self.latest, self.previous):
            if not path.exists():
                problems.append(f"{path.name} is missing")
                continue
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as err:  # truncated zip, bad pickle, bad tensor data ...
                text = str(err).splitlines()[0] if str(err) else type(err).__name__
                problems.append(f"{path.name} is damaged or truncated ({text})")
                continue
            if not isinstance(state, dict) or "epoch" not in state:
                problems.append(f"{path.name} is not a checkpoint of this run")
                continue
            if problems:
                warnings.warn(f"{self.path}: {'; '.join(problems)}; resuming from {path.name} "
                              f"(epoch {state['epoch']})", CheckpointWarning, stacklevel=2)
            return state, path
        raise CheckpointError(f"{self.path}: no readable checkpoint: {'; '.join(problems)}")


# -- random generators -----------------------------------------------------------------

def rng_state() -> dict[str, Any]:
    """torch's, Python's and NumPy's global random states, in a form that
    ``torch.load(weights_only=True)`` reads."""
    import numpy as np
    import torch

    name, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {"torch": torch.get_rng_state(),
            "python": [version, list(internal), gauss_next],
            "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos),
                      int(has_gauss), float(gauss)]}


def restore_rng(state: Mapping[str, Any]) -> None:
    """Undo :func:`rng_state`."""
    import numpy as np
    import torch

    torch.set_rng_state(state["torch"])
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))


def _generators(obj: Any, prefix: str = "", depth: int = 0) -> dict[str, Any]:
    """The ``torch.Generator`` attributes of a device and of the devices it wraps."""
    import torch

    from phys.device import Device

    found: dict[str, Any] = {}
    for name, value in vars(obj).items():
        if isinstance(value, torch.Generator):
            found[prefix + name] = value
        elif isinstance(value, Device) and depth < 4:
            found.update(_generators(value, f"{prefix}{name}.", depth + 1))
    return found


def device_state(device: Any) -> dict[str, Any]:
    """A device's counters and the states of its random generators."""
    return {"stats": device.stats.as_dict(),
            "generators": {k: g.get_state() for k, g in _generators(device).items()}}


def load_device_state(device: Any, state: Mapping[str, Any]) -> None:
    for key, value in state["stats"].items():
        setattr(device.stats, key, value)
    gens = _generators(device)
    for key, value in state["generators"].items():
        if key in gens:
            gens[key].set_state(value)


# -- a trainer's state -------------------------------------------------------------------

def train_state(trainer: Any, spec: Mapping[str, Any], extra: Mapping[str, Any],
                seconds: float) -> dict[str, Any]:
    """Everything a ``phys train`` run needs to resume: the trainer's
    :meth:`~phys.train.base.Trainer.state_dict` plus the run's configuration, random
    states, devices' counters and generators, PAT's twins and the training seconds."""
    from torch import nn

    twins = [t.state_dict() if isinstance(t, nn.Module) else None
             for t in getattr(trainer, "twins", [])]
    return {**trainer.state_dict(), "format": FORMAT, "version": VERSION, "kind": "train",
            "spec": dict(spec), "rng": rng_state(),
            "devices": [device_state(d) for d in trainer.devices()], "twins": twins,
            "extra": dict(extra), "seconds": seconds}


def restore_train(trainer: Any, state: Mapping[str, Any]) -> None:
    """Undo :func:`train_state` on a trainer built from the same configuration."""
    trainer.load_state_dict(state)
    restore_rng(state["rng"])
    devices = trainer.devices()
    if len(devices) != len(state["devices"]):
        raise CheckpointError(f"the checkpoint has {len(state['devices'])} devices, this "
                              f"run {len(devices)}")
    for dev, saved in zip(devices, state["devices"], strict=True):
        load_device_state(dev, saved)
    for twin, saved in zip(getattr(trainer, "twins", []), state["twins"], strict=False):
        if saved is not None:
            twin.load_state_dict(saved)


class Keeper:
    """Saves a run's state after every epoch and every ``every`` batches.

    The state is serialised where :meth:`save` is called (so it is the state of that
    moment); the file is written, fsynced and renamed by a background thread while
    training goes on, one write at a time (a save waits for the previous write).

    Args:
        run: Where to save.
        state: Returns the state to save (called at each save).
        every: Batches between saves within an epoch (``None`` or 0: at epoch ends only).
        batches: Batches per epoch (no save within an epoch right before its end).
        background: Write in a background thread (``False``: in :meth:`save`).

    Attributes:
        saves: Checkpoints saved.
        seconds: Seconds the caller spent in :meth:`save` and :meth:`flush` (what
            checkpoints cost training).
        write_seconds: Seconds spent writing files, in the background or not.
    """

    def __init__(self, run: RunDir, state: Callable[[], Mapping[str, Any]], *,
                 every: int | None = None, batches: int | None = None,
                 background: bool = True) -> None:
        if every is not None and (isinstance(every, bool) or every < 0):
            raise ValueError(f"checkpoint_every must be >= 0 batches, got {every}")
        self.run, self.state, self.every, self.batches = run, state, every or 0, batches
        self.background = background
        self.saves, self.seconds, self.write_seconds = 0, 0.0, 0.0
        self._writer: threading.Thread | None = None
        self._error: BaseException | None = None

    def _write(self, data: bytes, texts: Mapping[Path, str]) -> None:
        t0 = time.perf_counter()
        try:
            self.run.write(data)
            for path, text in texts.items():
                atomic.write_text(path, text)
        except BaseException as err:  # raised again by the next save or flush
            self._error = err
        self.write_seconds += time.perf_counter() - t0

    def _join(self) -> None:
        if self._writer is not None:
            self._writer.join()
            self._writer = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def save(self, *, wait: bool = False, texts: Mapping[Path, str] | None = None) -> None:
        """Save the state now, and write ``texts`` (path -> text) after it; ``wait``:
        return once everything is on disk."""
        t0 = time.perf_counter()
        data = self.run.serialize(self.state())
        texts = dict(texts or {})
        self._join()
        if self.background and not wait:
            self._writer = threading.Thread(target=self._write, args=(data, texts),
                                            name="phys-checkpoint")
            self._writer.start()
        else:
            self._write(data, texts)
            self._join()
        self.saves += 1
        self.seconds += time.perf_counter() - t0

    def flush(self) -> None:
        """Wait for the last write (raising its error, if it failed)."""
        t0 = time.perf_counter()
        self._join()
        self.seconds += time.perf_counter() - t0

    def on_batch(self, batch: int) -> None:
        if self.every and batch % self.every == 0 and batch != self.batches:
            self.save()


# -- a device that stops answering -------------------------------------------------------

def device_guard(trainer: Any, keeper: Keeper | None, *, wait: float, resume_hint: str,
                 poll: float = 0.5, log: Callable[[str], None] = _log
                 ) -> Callable[[str, Callable[[], Any]], Any] | None:
    """A :attr:`~phys.train.base.Trainer.guard` for trainers whose devices can be lost and
    found again (``info.recoverable``, such as a serial lab device); ``None`` when no
    device can be.

    When a device stops answering during a training step, the trainer is put back where it
    was before the step (:class:`~phys.DeviceUnavailable` raised), the run is saved, and
    the guard says so and tries :meth:`~phys.Device.reopen`
    every ``poll`` seconds for up to ``wait`` seconds. If the device comes back, the step
    runs again; otherwise :class:`DeviceLost` is raised with a message that names
    ``resume_hint`` (the command that continues the run).
    """
    if not isinstance(wait, (int, float)) or not wait >= 0 or math.isinf(wait):
        raise ValueError(f"device wait must be a number of seconds >= 0, got {wait!r}")
    fallible = [d for d in trainer.devices() if d.info.recoverable]
    if not fallible:
        return None
    import torch

    from phys.device import DeviceUnavailable

    def back() -> bool:
        deadline = time.monotonic() + wait
        while True:
            try:
                for dev in fallible:
                    dev.reopen()
                return True
            except DeviceUnavailable as err:
                if time.monotonic() >= deadline:
                    log(f"still no answer: {err}")
                    return False
                time.sleep(min(poll, max(0.0, deadline - time.monotonic())))

    def guard(kind: str, call: Callable[[], Any]) -> Any:
        before = None
        if kind == "step":  # a failed step may have updated some layers already
            before = (copy.deepcopy(trainer.state_dict()), torch.get_rng_state())
        while True:
            try:
                return call()
            except DeviceUnavailable as err:
                if before is not None:
                    trainer.load_state_dict(copy.deepcopy(before[0]))
                    torch.set_rng_state(before[1])
                where = f"{'evaluating' if kind == 'predict' else 'training'} epoch " \
                        f"{trainer.epoch + 1}"
                log(f"the device stopped answering ({where}): {err}")
                if keeper is not None:
                    keeper.save(wait=True)
                    log(f"saved the run to {keeper.run.latest}")
                log(f"waiting up to {wait:g} s for the device to come back ...")
                if not back():
                    saved = (f"the run is saved in {keeper.run.path}" if keeper is not None
                             else "nothing was saved (no run directory)")
                    raise DeviceLost(f"the device did not come back within {wait:g} s ({err}); "
                                     f"{saved}; when it is back, continue with: "
                                     f"{resume_hint}") from None
                log("the device is back; training continues")

    return guard
