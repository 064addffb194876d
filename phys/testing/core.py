"""What every conformance check shares: its error, its type and its test inputs."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from phys.device import Device, DeviceInfo

__all__ = ["Broken", "Check", "CheckContext", "ConformanceError", "DeviceFactory", "NotApplicable",
           "check", "expect"]

#: A device, or a callable that opens a fresh one with fixed settings (a class, a partial).
DeviceFactory = Callable[[], Device]

#: Why a check does not apply to a device, or ``None`` when it does.
SkipRule = Callable[[DeviceInfo, bool], "str | None"]

#: Relative agreement asked of answers that an iterative solver may compute in a slightly
#: different order (one row alone and in a batch): solvers stop at a tolerance that can
#: depend on the rest of the batch.
NUMERIC_RTOL = 1e-3


class ConformanceError(AssertionError):
    """A device broke the contract.

    The message of one check's failure starts with the check's name (``"reject-nan: ..."``);
    :func:`~phys.testing.check_device` raises one error for all failed checks.

    Attributes:
        failures: Name of each failed check -> what went wrong.
    """

    def __init__(self, message: str, failures: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.failures = dict(failures or {})


class NotApplicable(Exception):
    """A check does not apply to a device by its declared info; the message says why."""


class Broken(Exception):
    """Raised inside a check: what went wrong, without the check's name (which
    :meth:`Check.run_on` adds, turning it into a :class:`ConformanceError`)."""


@dataclass(frozen=True)
class CheckContext:
    """What a check may use besides the device.

    Args:
        seed: Seeds the random test inputs.
        factory: Opens a second device with the same settings, or ``None``.
    """

    seed: int = 0
    factory: DeviceFactory | None = None

    def generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed)

    def inputs(self, info: DeviceInfo, rows: int, gen: torch.Generator | None = None,
               ) -> torch.Tensor:
        """``(rows, n_in)`` float32 inputs uniform over the device range."""
        u = torch.rand(rows, info.n_in, generator=gen or self.generator(), dtype=torch.float64)
        return (info.in_min + u * (info.in_max - info.in_min)).float()


def expect(condition: bool, detail: str) -> None:
    """Raise :class:`Broken` with ``detail`` unless ``condition``."""
    if not condition:
        raise Broken(detail)


def close_enough(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal up to :data:`NUMERIC_RTOL` of the scale of ``b``."""
    scale = float(b.abs().max()) if b.numel() else 0.0
    return torch.allclose(a, b, rtol=NUMERIC_RTOL, atol=NUMERIC_RTOL * scale)


def _always(info: DeviceInfo, has_factory: bool) -> str | None:
    return None


class Check:
    """One named promise of the :class:`~phys.Device` contract.

    Call it with a device (checked as it is, left open unless the check closes it) or with
    a factory (a fresh device is opened, checked and closed). It raises
    :class:`ConformanceError` naming the check when the device breaks the promise, and
    :class:`NotApplicable` when the device's info says the promise is not made.

    Args:
        name: Short name, e.g. ``"reject-nan"``.
        run: ``run(device, context)``; raises :class:`Broken` (see :func:`expect`).
        skip: ``skip(info, has_factory)``: why the check does not apply, or ``None``.
    """

    def __init__(self, name: str, run: Callable[[Device, CheckContext], None],
                 skip: SkipRule | None = None) -> None:
        self.name, self.run, self.skip = name, run, skip or _always
        self.__doc__ = run.__doc__
        self.__name__ = run.__name__

    def __repr__(self) -> str:
        return f"<check {self.name!r}>"

    def skip_reason(self, info: DeviceInfo, *, has_factory: bool = False) -> str | None:
        """Why this check does not apply to a device with ``info``, or ``None``."""
        return self.skip(info, has_factory)

    def __call__(self, device: Device | DeviceFactory, *,
                 reopen: DeviceFactory | None = None, seed: int = 0) -> None:
        """Run the check on ``device`` (a device or a factory of devices).

        Args:
            device: An open device, or a callable that opens one.
            reopen: Opens a second device with the same settings; by default the factory
                when ``device`` is one.
            seed: Seeds the random test inputs.

        Raises:
            ConformanceError: the device broke the promise (or the check could not run).
            NotApplicable: the promise does not apply to this device.
            ValueError: ``device`` is neither a device nor a callable returning one.
        """
        opened = not isinstance(device, Device)
        dev = _open(device) if opened else device
        factory = reopen if reopen is not None else (device if opened else None)
        try:
            self.run_on(dev, CheckContext(seed=seed, factory=factory))
        finally:
            if opened:
                dev.close()

    def run_on(self, device: Device, context: CheckContext) -> None:
        """Run the check on an open device; an unexpected exception is a failure."""
        try:
            reason = self.skip_reason(device.info, has_factory=context.factory is not None)
            if reason is not None:
                raise NotApplicable(f"{self.name}: {reason}")
            self.run(device, context)
        except Broken as err:
            raise ConformanceError(f"{self.name}: {err}") from None
        except (ConformanceError, NotApplicable):
            raise
        except Exception as err:
            raise ConformanceError(
                f"{self.name}: raised {type(err).__name__}: {err}") from err


def _open(factory: object) -> Device:
    if not callable(factory):
        raise ValueError(f"device must be a phys.Device or a callable that opens one, got "
                         f"{type(factory).__name__}")
    dev = factory()
    if not isinstance(dev, Device):
        raise ValueError(f"device factory {factory!r} returned {type(dev).__name__}, "
                         f"not a phys.Device")
    return dev


def check(name: str, *, skip: SkipRule | None = None,
          ) -> Callable[[Callable[[Device, CheckContext], None]], Check]:
    """Decorator: make ``run(device, context)`` the :class:`Check` called ``name``."""
    def make(run: Callable[[Device, CheckContext], None]) -> Check:
        return Check(name, run, skip)
    return make


# -- when checks do not apply ----------------------------------------------------------------

def if_stochastic(info: DeviceInfo, has_factory: bool) -> str | None:
    return "info.stochastic: repeated queries may differ" if info.stochastic else None


def unless_differentiable(info: DeviceInfo, has_factory: bool) -> str | None:
    return None if info.differentiable else "not info.differentiable: the device has no vjp"


def without_factory(info: DeviceInfo, has_factory: bool) -> str | None:
    return None if has_factory else "no factory to open a second device with"


def any_of(*rules: SkipRule) -> SkipRule:
    """The first reason that one of ``rules`` gives."""
    def first(info: DeviceInfo, has_factory: bool) -> str | None:
        for rule in rules:
            reason = rule(info, has_factory)
            if reason is not None:
                return reason
        return None
    return first
