"""A lab device that stops answering during training: a training callback that saves the
run, waits for the device to come back and goes on, or gives up naming the command that
continues the run."""

from __future__ import annotations

import copy
import math
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

from phys.runs.keeper import Keeper
from phys.train.callbacks import Callback

__all__ = ["DeviceGuard", "DeviceLost", "SettingGuard", "SettingRefused"]

T = TypeVar("T")


class DeviceLost(RuntimeError):
    """A device stopped answering and did not come back in time; the run was saved."""


def _log(text: str) -> None:
    print(f"phys: {text}", file=sys.stderr, flush=True)


class DeviceGuard(Callback):
    """Survive devices that can be lost and found again (``info.recoverable``, such as a
    serial lab device); does nothing for a trainer without such devices.

    When a device raises :class:`~phys.DeviceUnavailable` during a training step, the
    trainer is put back where it was before the step, the run is saved (with a
    ``keeper``), and the guard says so and tries :meth:`~phys.Device.reopen` every
    ``poll`` seconds for up to ``wait`` seconds. If the device comes back, the step (or
    the batch of evaluation) runs again; otherwise :class:`DeviceLost` is raised with a
    message that names ``resume_hint`` (the command that continues the run).

    Args:
        wait: Seconds to wait for the devices to come back (>= 0).
        resume_hint: The command that continues the run, for messages.
        keeper: Saves the run before waiting (``None``: nothing is saved).
        poll: Seconds between tries.
        log: Where messages go (default: stderr, prefixed ``phys:``).
    """

    def __init__(self, wait: float, resume_hint: str, keeper: Keeper | None = None, *,
                 poll: float = 0.5, log: Callable[[str], None] = _log) -> None:
        if (isinstance(wait, bool) or not isinstance(wait, (int, float)) or not wait >= 0
                or math.isinf(wait)):
            raise ValueError(f"device_wait must be a number of seconds >= 0, got {wait!r}")
        self.wait, self.resume_hint, self.keeper = float(wait), resume_hint, keeper
        self.poll, self.log = poll, log
        self.fallible: list[Any] = []

    def on_fit_start(self, trainer: Any) -> None:
        self.fallible = [d for d in trainer.devices() if d.info.recoverable]

    def wrap(self, trainer: Any, kind: str, call: Callable[[], T]) -> T:
        if not self.fallible:
            return call()
        import torch

        from phys.device import DeviceUnavailable

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
                self._lost(trainer, kind, err)

    def _lost(self, trainer: Any, kind: str, err: Exception) -> None:
        """Save, say so and wait; returns once the devices are back, else raises
        :class:`DeviceLost`."""
        where = f"{'evaluating' if kind == 'predict' else 'training'} epoch {trainer.epoch + 1}"
        self.log(f"the device stopped answering ({where}): {err}")
        if self.keeper is not None:
            self.keeper.save(wait=True)
            self.log(f"saved the run to {self.keeper.run.latest}")
        self.log(f"waiting up to {self.wait:g} s for the device to come back ...")
        if not self._back():
            saved = (f"the run is saved in {self.keeper.run.path}" if self.keeper is not None
                     else "nothing was saved (no run directory)")
            raise DeviceLost(f"the device did not come back within {self.wait:g} s ({err}); "
                             f"{saved}; when it is back, continue with: "
                             f"{self.resume_hint}") from None
        self.log("the device is back; training continues")

    def _back(self) -> bool:
        """Reopen the devices until they answer or ``wait`` seconds have passed."""
        from phys.device import DeviceUnavailable

        deadline = time.monotonic() + self.wait
        while True:
            try:
                for dev in self.fallible:
                    dev.reopen()
                return True
            except DeviceUnavailable as err:
                if time.monotonic() >= deadline:
                    self.log(f"still no answer: {err}")
                    return False
                time.sleep(min(self.poll, max(0.0, deadline - time.monotonic())))


class SettingRefused(DeviceLost):
    """A device refused a physical setting while its parameters trained; the run was
    saved as it was before that step."""


class SettingGuard(Callback):
    """Stops a run cleanly when a device refuses a physical setting mid-run (a trainer's
    :class:`~phys.train.physics.PhysicsSetError`): the trainer is put back where it was
    before the step (its parameters set back on the devices), the run is saved (with a
    ``keeper``), and :class:`SettingRefused` names the layer, parameter and value and the
    command that continues the run. Does nothing for a trainer that trains no physics.

    Args:
        resume_hint: The command that continues the run, for messages.
        keeper: Saves the run (``None``: nothing is saved).
    """

    def __init__(self, resume_hint: str, keeper: Keeper | None = None) -> None:
        self.resume_hint, self.keeper = resume_hint, keeper

    def wrap(self, trainer: Any, kind: str, call: Callable[[], T]) -> T:
        if kind != "step" or getattr(trainer, "physics", None) is None:
            return call()
        import torch

        from phys.train.physics import PhysicsSetError

        before = (copy.deepcopy(trainer.state_dict()), torch.get_rng_state())
        try:
            return call()
        except PhysicsSetError as err:
            back = ""
            try:
                trainer.load_state_dict(copy.deepcopy(before[0]))
            except PhysicsSetError as again:  # the trainer's state is restored all the same
                back = f" (setting the parameters back was refused too: {again})"
            torch.set_rng_state(before[1])
            saved = "nothing was saved (no run directory)"
            if self.keeper is not None:
                self.keeper.save(wait=True)
                saved = (f"the run is saved in {self.keeper.run.path} as it was before this "
                         f"step; continue with: {self.resume_hint}")
            raise SettingRefused(f"training stopped in epoch {trainer.epoch + 1}: {err}{back}; "
                                 f"{saved}") from err
