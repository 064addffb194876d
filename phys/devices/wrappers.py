"""Devices that wrap a device: detector noise, and physics that drifts over time.

``Noisy(device, sigma)`` adds Gaussian noise to every measurement.
``Drifting(device, process)`` changes the device's calibration as time passes: the
``process`` gives per-channel input gains (actuators) and output gains and offsets
(detectors) at each moment, e.g. :class:`LinearDrift` (slow drift) or
:class:`StepChange` (a sudden change). Time is the number of samples measured through
the wrapper, or any clock the caller passes (a training step counter, lab seconds).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from phys.device import Device, DeviceInfo

__all__ = ["Drifting", "DriftState", "LinearDrift", "Noisy", "StepChange", "Wrapper"]


class Wrapper(Device):
    """A device that measures through ``device``; closing it closes ``device``.

    Args:
        device: The wrapped device.
        info: This wrapper's info (by default ``device.info``).
    """

    def __init__(self, device: Device, info: DeviceInfo | None = None) -> None:
        super().__init__()
        if not isinstance(device, Device):
            raise ValueError(f"can only wrap a phys.Device, got {type(device).__name__}")
        self.device = device
        self.info = info or device.info

    def to(self, torch_device: torch.device | str) -> Wrapper:
        """Move the wrapped device to ``torch_device`` and compute this wrapper's own
        arithmetic where that device now computes (the host, for hardware); returns
        ``self``.

        Raises:
            ValueError: a bad ``torch_device`` (see :meth:`phys.Device.to`).
        """
        self.device.to(torch_device)
        self.torch_device = self.device.torch_device
        return self

    def set(self, name: str, values: object) -> None:
        """Set a physical parameter of the wrapped device (its ``info.params``)."""
        self._of_device("set")(name, values)

    def get(self, name: str) -> torch.Tensor:
        """Read a physical parameter of the wrapped device."""
        return self._of_device("get")(name)

    def params_state(self) -> dict[str, torch.Tensor]:
        """The wrapped device's parameter values (empty when it cannot give them)."""
        state = getattr(self.device, "params_state", None)
        return state() if callable(state) else {}

    def load_params_state(self, state: dict[str, torch.Tensor]) -> None:
        """Restore :meth:`params_state` on the wrapped device."""
        self._of_device("load_params_state")(state)

    def _of_device(self, method: str) -> Callable[..., object]:
        found = getattr(self.device, method, None)
        if not callable(found):
            raise ValueError(f"device {self.device.info.name!r} has no {method}() for its "
                             f"parameters")
        return found

    def _lab_cost(self, n_samples: int) -> tuple[float | None, float | None]:
        return self.device._lab_cost(n_samples)

    def _close(self) -> None:
        self.device.close()


class Noisy(Wrapper):
    """Adds Gaussian noise of standard deviation ``sigma`` to every output value.

    Args:
        device: The device to measure through.
        sigma: Noise level, in output units (or as a fraction of ``|y|`` when
            ``relative``).
        relative: Multiplicative noise ``y (1 + sigma * n)`` instead of additive.
        seed: Seeds the noise.

    Examples::

        >>> import phys, torch
        >>> dev = Noisy(phys.open("cavity", n_in=4, n_out=3), sigma=0.01)
        >>> dev.info.stochastic
        True
    """

    def __init__(self, device: Device, sigma: float, *, relative: bool = False,
                 seed: int = 0) -> None:
        if not (math.isfinite(sigma) and sigma >= 0):
            raise ValueError(f"sigma must be a number >= 0, got {sigma}")
        info = replace(device.info, name=f"noisy({device.info.name})", stochastic=sigma > 0,
                       differentiable=False, extra={**device.info.extra, "noise_sigma": sigma})
        super().__init__(device, info)
        self.sigma, self.relative = sigma, relative
        self._gen = torch.Generator().manual_seed(seed)

    def _query(self, x: torch.Tensor) -> torch.Tensor:
        y = self.device.query(x)
        # drawn on the host: the same noise for a seed wherever the device computes
        noise = self.sigma * torch.randn(y.shape, generator=self._gen,
                                          device=self._gen.device).to(y.device)
        return y * (1 + noise) if self.relative else y + noise


@dataclass(frozen=True)
class DriftState:
    """Calibration of a device at one moment: ``y = out_gain * f(in_gain * x) + out_offset``.

    Each field is a float or a tensor of per-channel values (``(n_in,)`` or ``(n_out,)``).
    """

    in_gain: torch.Tensor | float = 1.0
    out_gain: torch.Tensor | float = 1.0
    out_offset: torch.Tensor | float = 0.0


DriftProcess = Callable[[float, DeviceInfo], DriftState]


class LinearDrift:
    """Per-channel gains that drift linearly: ``g_i(t) = 1 + rate * d_i * t / scale``.

    Args:
        out_rate: Relative change of the detector gains per ``scale`` time units.
        in_rate: Relative change of the actuator gains per ``scale`` time units.
        scale: Time units in which the rates are given (default 1e6 samples).
        start: Time at which the drift begins.
        seed: Seeds the directions ``d_i ~ N(0, 1)``.
    """

    def __init__(self, out_rate: float = 0.1, in_rate: float = 0.0, *, scale: float = 1e6,
                 start: float = 0.0, seed: int = 0) -> None:
        self.out_rate, self.in_rate, self.scale, self.start = out_rate, in_rate, scale, start
        self.seed = seed

    def _directions(self, n: int, offset: int) -> torch.Tensor:
        return torch.randn(n, generator=torch.Generator().manual_seed(self.seed + offset))

    def __call__(self, t: float, info: DeviceInfo) -> DriftState:
        elapsed = max(0.0, t - self.start) / self.scale
        return DriftState(
            in_gain=1 + self.in_rate * elapsed * self._directions(info.n_in, 1),
            out_gain=(1 + self.out_rate * elapsed * self._directions(info.n_out, 2)).clamp_min(0),
        )


class StepChange:
    """A sudden change at time ``at``: per-channel gains jump to ``1 + spread * d_i``
    around ``gain``, e.g. a detector replaced or a source realigned.

    Args:
        at: Time of the change.
        gain: Mean detector gain after the change.
        spread: Relative spread of the per-channel detector gains after the change.
        in_spread: Relative spread of the per-channel actuator gains after the change.
        seed: Seeds the directions.
    """

    def __init__(self, at: float, *, gain: float = 1.0, spread: float = 0.3,
                 in_spread: float = 0.0, seed: int = 0) -> None:
        self.at, self.gain, self.spread, self.in_spread = at, gain, spread, in_spread
        self.seed = seed

    def __call__(self, t: float, info: DeviceInfo) -> DriftState:
        if t < self.at:
            return DriftState()
        gen = torch.Generator().manual_seed(self.seed)
        out_d, in_d = torch.randn(info.n_out, generator=gen), torch.randn(info.n_in, generator=gen)
        return DriftState(in_gain=1 + self.in_spread * in_d,
                          out_gain=(self.gain * (1 + self.spread * out_d)).clamp_min(0))


class Drifting(Wrapper):
    """Measures through ``device`` with a calibration that changes over time.

    Inputs are scaled by the process's ``in_gain`` and clamped to the device range (an
    actuator cannot exceed its limits); outputs are scaled by ``out_gain`` and shifted by
    ``out_offset``.

    Args:
        device: The device to measure through.
        process: ``process(t, info) -> DriftState``, e.g. :class:`LinearDrift`.
        clock: Returns the current time; by default the number of samples measured
            through this wrapper so far.

    Examples::

        >>> import phys, torch
        >>> dev = Drifting(phys.open("cavity", n_in=4, n_out=3), StepChange(at=10))
        >>> before = dev.query(torch.full((10, 4), 0.5))
        >>> after = dev.query(torch.full((10, 4), 0.5))
        >>> bool((before != after).any())
        True
    """

    def __init__(self, device: Device, process: DriftProcess,
                 clock: Callable[[], float] | None = None) -> None:
        # repeated queries of one input differ as time passes: stochastic in the contract
        info = replace(device.info, name=f"drifting({device.info.name})", differentiable=False,
                       stochastic=True)
        super().__init__(device, info)
        self.process = process
        self.clock = clock or (lambda: float(self.stats.samples))

    def state(self) -> DriftState:
        """The calibration now."""
        return self.process(self.clock(), self.device.info)

    def _query(self, x: torch.Tensor) -> torch.Tensor:
        s = self.state()
        info = self.device.info
        in_gain, out_gain, out_offset = (
            v.to(x.device) if isinstance(v, torch.Tensor) else v
            for v in (s.in_gain, s.out_gain, s.out_offset))
        u = (x * in_gain).clamp(info.in_min, info.in_max)
        return self.device.query(u) * out_gain + out_offset
