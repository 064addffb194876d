"""What a checkpoint holds besides the trainer's own state: the global random states,
the devices' counters and noise generators, PAT's twins, and the run's configuration."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Mapping
from typing import Any

from phys.runs.layout import FORMAT, VERSION, CheckpointError

__all__ = ["Clock", "check_kind", "check_state", "device_state", "load_device_state", "restore_rng",
           "restore_train", "rng_state", "train_state"]


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


def _params_state(device: Any) -> dict[str, Any] | None:
    """The device's physical parameter values, where it can give them."""
    state = getattr(device, "params_state", None)
    return state() if callable(state) and device.info.params else None


def device_state(device: Any) -> dict[str, Any]:
    """A device's counters, the states of its random generators and, where it has
    them, the values of its physical parameters (``params``)."""
    out = {"stats": device.stats.as_dict(),
           "generators": {k: g.get_state() for k, g in _generators(device).items()}}
    params = _params_state(device)
    if params is not None:
        out["params"] = params
    return out


def load_device_state(device: Any, state: Mapping[str, Any]) -> None:
    """Undo :func:`device_state`.

    Raises:
        CheckpointError: the saved parameters do not fit the device (naming it).
    """
    params = state.get("params")
    load = getattr(device, "load_params_state", None)
    if params is not None and callable(load):
        try:
            load(params)
        except ValueError as err:
            raise CheckpointError(f"the checkpoint's device settings: {err}") from None
    for key, value in state["stats"].items():
        setattr(device.stats, key, value)
    gens = _generators(device)
    for key, value in state["generators"].items():
        if key in gens:
            gens[key].set_state(value)


# -- a trainer's state -------------------------------------------------------------------

def train_state(trainer: Any, spec: Mapping[str, Any], extra: Mapping[str, Any],
                seconds: float, kind: str = "train") -> dict[str, Any]:
    """Everything a run of ``kind`` (``"train"``: ``phys train``, ``"swap"``: a run of
    ``phys swap``) needs to resume: the trainer's
    :meth:`~phys.train.base.Trainer.state_dict` plus the run's configuration, random
    states, devices' counters and generators, PAT's twins and the training seconds."""
    from torch import nn

    twins = [t.state_dict() if isinstance(t, nn.Module) else None
             for t in getattr(trainer, "twins", [])]
    return {**trainer.state_dict(), "format": FORMAT, "version": VERSION, "kind": kind,
            "spec": dict(spec), "rng": rng_state(),
            "devices": [device_state(d) for d in trainer.devices()], "twins": twins,
            "extra": dict(extra), "seconds": seconds}


def check_kind(state: Mapping[str, Any], kind: str, where: Any = "the run") -> None:
    """``CheckpointError`` unless ``state`` is the checkpoint of a run of ``kind``."""
    if state.get("kind") != kind:
        raise CheckpointError(f"{where}: the checkpoint is not a {kind!r} run's "
                              f"(it is {state.get('kind')!r})")


def _count(value: Any, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= high


def check_state(state: Mapping[str, Any], where: Any, *, epochs: int,
                batches: int | None = None) -> None:
    """Refuse a checkpoint whose counters are out of range, naming the value: its
    ``epoch`` must be one of 0 to ``epochs`` (the run's), its history have a row per
    epoch done, its ``seconds`` be finite and >= 0, and its position within an epoch
    (``progress``) one of 0 to ``batches`` (the batches of an epoch, where known).

    Raises:
        CheckpointError: naming ``where`` (the checkpoint file) and the value.
    """
    epoch, history, seconds = state.get("epoch"), state.get("history"), state.get("seconds")
    if not _count(epoch, epochs):
        raise CheckpointError(f"{where}: epoch {epoch!r} is out of range: the run has "
                              f"{epochs} epochs (0 to {epochs} done)")
    if not isinstance(history, list) or len(history) != epoch:
        rows = len(history) if isinstance(history, list) else repr(history)
        raise CheckpointError(f"{where}: history has {rows} rows for epoch {epoch}")
    if (isinstance(seconds, bool) or not isinstance(seconds, (int, float))
            or not math.isfinite(seconds) or seconds < 0):
        raise CheckpointError(f"{where}: seconds {seconds!r} is out of range "
                              f"(a finite number >= 0)")
    progress = state.get("progress")
    if progress is None:
        return
    done = progress.get("batches") if isinstance(progress, Mapping) else None
    if epoch == epochs or not _count(done, batches if batches is not None else 2**62):
        limit = "" if batches is None else f" (0 to {batches} batches an epoch)"
        raise CheckpointError(f"{where}: batch position {done!r} in epoch {epoch + 1} is "
                              f"out of range for a run of {epochs} epochs{limit}")


def restore_train(trainer: Any, state: Mapping[str, Any], kind: str = "train",
                  where: Any = "the run") -> None:
    """Undo :func:`train_state` on a trainer built from the same configuration.

    Raises:
        CheckpointError: ``state`` is not the checkpoint of a run of ``kind`` (``where``
            names the run in the message), or has another number of devices.
    """
    check_kind(state, kind, where)
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


class Clock:
    """Training seconds of the run, those before a resume included."""

    def __init__(self, before: float = 0.0) -> None:
        self.before, self.t0 = before, time.perf_counter()

    def seconds(self) -> float:
        return self.before + time.perf_counter() - self.t0
