"""The device contract: one interface for every physical system physnn trains through.

A :class:`Device` takes a batch of input vectors inside a declared range and returns
measured output vectors. Subclasses implement one method, :meth:`Device._query`;
validation, batch splitting, bookkeeping and the no-gradient guarantee live here, so
that every device - simulator, serial hardware or quantum circuit - behaves the same.
"""

from __future__ import annotations

import math
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from types import MappingProxyType
from typing import Any, ClassVar

import torch

from phys.flops import physical

__all__ = ["SIZES", "Device", "DeviceInfo", "DeviceStats", "DeviceUnavailable", "ParamSpec",
           "as_torch_device", "validate_batch"]

#: The layer-sizing options. A trainer that opens one device per layer passes those that a
#: device class declares in :attr:`Device.sizes`, so a simulator fits the layer; fixed
#: hardware declares none and a layer adapts to it.
SIZES = ("n_in", "n_out", "seed")


class DeviceUnavailable(RuntimeError):
    """A device that is lost or does not answer (cable pulled, power lost, a link that keeps
    failing). Drivers raise subclasses of it; a device whose ``info.recoverable`` is true can
    then be opened again with :meth:`Device.reopen`."""


@dataclass(frozen=True)
class ParamSpec:
    """One settable physical parameter of a device (an SLM mask, a scatterer's tuning).

    Args:
        name: Parameter name, as :meth:`Device.set` takes it.
        shape: Shape of its value, e.g. ``(32,)``.
        min: Smallest allowed value of every element (inclusive), in ``units``.
        max: Largest allowed value of every element (inclusive).
        units: Physical units of the values (``""`` when dimensionless).
        index: The wire protocol's SET index for serial devices, else ``None``.
    """

    name: str
    shape: tuple[int, ...]
    min: float
    max: float
    units: str = ""
    index: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"ParamSpec.name must be a non-empty string, got {self.name!r}")
        shape = tuple(self.shape)
        if any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in shape):
            raise ValueError(f"ParamSpec {self.name!r}: shape must be positive ints, got "
                             f"{self.shape!r}")
        lo, hi = float(self.min), float(self.max)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
            raise ValueError(f"ParamSpec {self.name!r} needs finite min <= max, got "
                             f"{self.min!r}, {self.max!r}")
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "min", lo)
        object.__setattr__(self, "max", hi)

    def as_dict(self) -> dict[str, Any]:
        return {f.name: (list(self.shape) if f.name == "shape" else getattr(self, f.name))
                for f in fields(self)}


@dataclass(frozen=True)
class DeviceInfo:
    """What a device is and what it accepts: capabilities as data.

    Args:
        name: Registry name or a human-readable identifier.
        n_in: Length of one input vector.
        n_out: Length of one measured output vector.
        in_min: Smallest accepted input value (inclusive), in the device's input units.
        in_max: Largest accepted input value (inclusive).
        max_batch: Most input vectors the device takes in one round trip;
            :meth:`Device.query` splits larger batches.
        differentiable: ``True`` when :meth:`Device.vjp` gives exact gradients.
        stochastic: ``True`` when repeated queries of one input may differ (noise).
        exclusive: ``True`` for one physical instance (a rig on a port): whoever shares it
            must route every query through one holder of it, as a sweep does.
        recoverable: ``True`` when the device can be opened again with
            :meth:`Device.reopen` after :class:`DeviceUnavailable`.
        params: The device's settable physical parameters, as :class:`ParamSpec`.
        extra: Free-form facts such as firmware version or units (read-only).
    """

    name: str
    n_in: int
    n_out: int
    in_min: float
    in_max: float
    max_batch: int
    differentiable: bool = False
    stochastic: bool = False
    exclusive: bool = False
    recoverable: bool = False
    params: tuple[ParamSpec, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key in ("n_in", "n_out", "max_batch"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"DeviceInfo.{key} must be a positive int, got {value!r}")
        lo, hi = float(self.in_min), float(self.in_max)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(
                f"DeviceInfo needs finite in_min < in_max, got in_min={self.in_min!r}, "
                f"in_max={self.in_max!r}"
            )
        object.__setattr__(self, "in_min", lo)
        object.__setattr__(self, "in_max", hi)
        for key in ("differentiable", "stochastic", "exclusive", "recoverable"):
            if not isinstance(getattr(self, key), bool):
                raise ValueError(f"DeviceInfo.{key} must be a bool, got {getattr(self, key)!r}")
        params = tuple(p if isinstance(p, ParamSpec) else ParamSpec(**p) for p in self.params)
        names = [p.name for p in params]
        if len(set(names)) != len(names):
            raise ValueError(f"DeviceInfo.params has a name twice: {names}")
        object.__setattr__(self, "params", params)
        object.__setattr__(self, "extra", MappingProxyType(dict(self.extra)))

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # the read-only view of ``extra`` does not pickle; rebuild from a plain dict
        return type(self), tuple(
            dict(self.extra) if f.name == "extra" else getattr(self, f.name)
            for f in fields(self)
        )

    def as_dict(self) -> dict[str, Any]:
        """Plain-dict copy (JSON-serialisable when ``extra`` is); :meth:`from_dict` reads
        it back."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["params"] = [p.as_dict() for p in self.params]
        d["extra"] = dict(self.extra)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DeviceInfo:
        """The info that :meth:`as_dict` wrote (e.g. read back from JSON).

        Raises:
            ValueError: a key that is not a field, a missing field, or a bad value.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"DeviceInfo has no field {', '.join(unknown)}")
        values = dict(d)
        values["params"] = tuple(ParamSpec(**{**p, "shape": tuple(p["shape"])})
                                 for p in values.get("params", ()))
        try:
            return cls(**values)
        except TypeError as err:
            raise ValueError(f"DeviceInfo: {err}") from None

    def param(self, name: str) -> ParamSpec:
        """The parameter called ``name``.

        Raises:
            ValueError: the device has no such parameter (the message lists those it has).
        """
        for p in self.params:
            if p.name == name:
                return p
        have = ", ".join(p.name for p in self.params) or "none"
        raise ValueError(f"device {self.name!r} has no parameter {name!r}; it has {have}")


@dataclass
class DeviceStats:
    """Running totals of what a device has been asked to do.

    ``queries`` counts round trips to the device (batches after splitting by
    ``max_batch``), ``samples`` counts input vectors, ``wall_seconds`` the time spent
    inside the device, ``lab_seconds`` and ``joules`` the device's own estimate of what
    a physical rig would take (``None`` while the device gives no estimate).
    """

    queries: int = 0
    samples: int = 0
    wall_seconds: float = 0.0
    lab_seconds: float | None = None
    joules: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def reset(self) -> None:
        self.queries, self.samples, self.wall_seconds = 0, 0, 0.0
        self.lab_seconds = self.joules = None


def _describe_index(index: torch.Tensor) -> str:
    return "[" + ", ".join(str(int(i)) for i in index) + "]"


def _as_tensor(x: Any, info: DeviceInfo, where: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    try:
        return torch.as_tensor(x)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{where} for {info.name!r} is not array-like: {err}") from None


def validate_batch(x: Any, info: DeviceInfo, *, where: str = "input") -> torch.Tensor:
    """Check a device input and return it as a 2-D float32 tensor ``(B, n_in)``.

    Raises:
        ValueError: naming the problem and its position - wrong type, dtype or shape,
            NaN or Inf, or a value outside ``info.in_min .. info.in_max``.
    """
    x = _as_tensor(x, info, where)
    if not x.is_floating_point():
        raise ValueError(
            f"{where} for {info.name!r} must be a real floating-point tensor, got dtype "
            f"{x.dtype}"
        )
    if x.ndim not in (1, 2) or x.shape[-1] != info.n_in:
        raise ValueError(
            f"{where} for {info.name!r} must have shape (B, {info.n_in}) or ({info.n_in},), "
            f"got {tuple(x.shape)}"
        )
    x2 = x.detach().reshape(-1, info.n_in)
    bad = ~torch.isfinite(x2)
    if bad.any():
        index = bad.nonzero()[0]
        kind = "NaN" if torch.isnan(x2[tuple(index)]) else "Inf"
        raise ValueError(f"{where} for {info.name!r} contains {kind} at {_describe_index(index)}")
    outside = (x2 < info.in_min) | (x2 > info.in_max)
    if outside.any():
        index = outside.nonzero()[0]
        value = float(x2[tuple(index)])
        raise ValueError(
            f"{where} for {info.name!r} has {value!r} at {_describe_index(index)}, outside "
            f"the device range [{info.in_min}, {info.in_max}]"
        )
    return x2.to(torch.float32)


def as_torch_device(value: torch.device | str) -> torch.device:
    """``value`` as a :class:`torch.device` that exists here (``"cuda"`` becomes the
    current CUDA device, e.g. ``cuda:0``).

    Raises:
        ValueError: naming the value - not a device name torch can parse, or a device
            this machine does not have (``"cuda:99"``, CUDA without a GPU).

    Examples::

        >>> as_torch_device("cpu")
        device(type='cpu')
        >>> as_torch_device("gpu0")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: torch_device 'gpu0' is not a torch device name; ...
    """
    if isinstance(value, torch.device):
        device = value
    elif isinstance(value, str):
        try:
            device = torch.device(value)
        except RuntimeError:
            raise ValueError(f"torch_device {value!r} is not a torch device name; use e.g. "
                             f"'cpu', 'cuda' or 'cuda:0'") from None
    else:
        raise ValueError(f"torch_device must be a torch.device or a name such as 'cpu' or "
                         f"'cuda:0', got {value!r}")
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"torch_device {value!r}: CUDA is not available here (no GPU, "
                             f"or torch built without CUDA)")
        index = torch.cuda.current_device() if device.index is None else device.index
        if index >= count:
            raise ValueError(f"torch_device {value!r}: no such CUDA device; this machine has "
                             f"{count} (cuda:0 .. cuda:{count - 1})")
        device = torch.device("cuda", index)
    try:
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError, NotImplementedError) as err:
        raise ValueError(f"torch_device {value!r} cannot be used here: {err}") from None
    return device


class Device(ABC):
    """A physical system that can be queried but, in general, not differentiated.

    Subclasses set ``self.info`` (a :class:`DeviceInfo`) in ``__init__`` and implement
    :meth:`_query`. Everything else is provided:

    * :meth:`query` validates the input, splits it into chunks of at most
      ``info.max_batch`` rows, runs :meth:`_query` on each without autograd, checks what
      comes back and updates :attr:`stats`;
    * inputs are moved to :attr:`torch_device` (where the device computes) and results
      back to the input's torch device, so no subclass moves data;
    * :meth:`to` chooses where the device computes (simulators move there, devices on
      the host stay and answer on the caller's device all the same);
    * :meth:`close` is idempotent and the device is a context manager.

    Shape:
        - Input: ``(B, n_in)`` or ``(n_in,)``, any real float dtype, values inside
          ``[in_min, in_max]``.
        - Output: ``(B, n_out)`` or ``(n_out,)``, float32, on the input's torch device.

    Examples::

        >>> import phys, torch
        >>> with phys.open("cavity", n_in=4, n_out=3) as dev:
        ...     y = dev.query(torch.zeros(5, 4))
        >>> tuple(y.shape)
        (5, 3)
    """

    info: DeviceInfo

    #: Where :meth:`_query` wants its inputs; results go back to the caller's device.
    torch_device: torch.device = torch.device("cpu")

    #: The layer-sizing options (of :data:`SIZES`) the constructor takes.
    sizes: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        self.stats = DeviceStats()
        self._closed = False
        self._lock = threading.Lock()

    # -- the one method a device implements -------------------------------------------
    @abstractmethod
    def _query(self, x: torch.Tensor) -> torch.Tensor:
        """Measure a validated batch.

        Args:
            x: float32 tensor ``(b, n_in)`` with ``1 <= b <= max_batch``, values in range.

        Returns:
            Tensor ``(b, n_out)``, one row per input row in the same order.
        """

    # -- optional hooks ---------------------------------------------------------------
    def _lab_cost(self, n_samples: int) -> tuple[float | None, float | None]:
        """The device's estimate of (lab seconds, joules) for measuring ``n_samples``."""
        return None, None

    def _close(self) -> None:  # noqa: B027 - optional hook, empty by default
        """Release resources (ports, threads). Called once by :meth:`close`."""

    def vjp(self, x: torch.Tensor, grad_out: torch.Tensor) -> torch.Tensor:
        """Vector-Jacobian product ``grad_out @ d query(x) / dx`` for devices with
        ``info.differentiable``; others raise :class:`NotImplementedError`."""
        raise NotImplementedError(
            f"device {self.info.name!r} is not differentiable: it can only be queried"
        )

    def reopen(self) -> None:
        """Open the device again after :class:`DeviceUnavailable`, with its settings
        restored. Devices whose ``info.recoverable`` is true implement it; by default the
        device cannot be reopened.

        Raises:
            DeviceUnavailable: the device cannot be reopened (or is still not answering).
        """
        raise DeviceUnavailable(
            f"device {self.info.name!r} cannot be reopened (its info.recoverable is False)")

    # -- the public surface -----------------------------------------------------------
    def to(self, torch_device: torch.device | str) -> Device:
        """Compute on ``torch_device`` where the device can; returns ``self``.

        Devices that compute on the host - hardware on a port, recordings, a PennyLane
        circuit - keep doing so: this default checks the value and returns ``self``
        unchanged. That is enough for a network on any torch device, since
        :meth:`query` moves inputs to :attr:`torch_device` and results back to the
        caller's device. Simulators move their tensors there
        (:meth:`phys.simulators.base.Simulator.to`); wrappers move the device they wrap.

        Args:
            torch_device: A :class:`torch.device` or a name: ``"cpu"``, ``"cuda"``,
                ``"cuda:1"``, ...

        Raises:
            ValueError: a name torch cannot parse, or a device this machine does not
                have (``"cuda:99"``), before anything moves.
        """
        as_torch_device(torch_device)
        return self

    @property
    def closed(self) -> bool:
        return self._closed

    def query(self, x: Any) -> torch.Tensor:
        """Measure a batch of inputs; see the class docstring for shapes.

        Raises:
            ValueError: bad input (before anything reaches the device).
            RuntimeError: the device is closed or returned a malformed answer.
        """
        if self._closed:
            raise RuntimeError(f"device {self.info.name!r} is closed")
        x = _as_tensor(x, self.info, "input")
        single, out_device = x.ndim == 1, x.device
        batch = validate_batch(x, self.info)
        n = batch.shape[0]
        if n == 0:
            return torch.empty(0, self.info.n_out, dtype=torch.float32, device=out_device)
        step = self.info.max_batch
        parts = []
        batch = batch.to(self.torch_device)
        with self._lock, torch.no_grad(), physical():
            for start in range(0, n, step):
                chunk = batch[start:start + step]
                t0 = time.perf_counter()
                y = self._query(chunk)
                self.stats.wall_seconds += time.perf_counter() - t0
                parts.append(self._check_output(y, chunk.shape[0]))
                self.stats.queries += 1
                self.stats.samples += chunk.shape[0]
                self._add_lab_cost(chunk.shape[0])
        out = torch.cat(parts).to(out_device)
        return out[0] if single else out

    def close(self) -> None:
        """Release the device; calling it again does nothing."""
        if not self._closed:
            self._closed = True
            self._close()

    def __enter__(self) -> Device:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        i = self.info
        state = " closed" if self._closed else ""
        return f"<{type(self).__name__} {i.name!r} n_in={i.n_in} n_out={i.n_out}{state}>"

    # -- internals --------------------------------------------------------------------
    def _check_output(self, y: Any, rows: int) -> torch.Tensor:
        if not isinstance(y, torch.Tensor):
            y = torch.as_tensor(y)
        if tuple(y.shape) != (rows, self.info.n_out):
            raise RuntimeError(
                f"device {self.info.name!r} answered shape {tuple(y.shape)} for {rows} "
                f"inputs; expected ({rows}, {self.info.n_out})"
            )
        y = y.detach().to(torch.float32)
        if not bool(torch.isfinite(y).all()):
            raise RuntimeError(f"device {self.info.name!r} answered a non-finite value")
        return y

    def _add_lab_cost(self, n: int) -> None:
        seconds, joules = self._lab_cost(n)
        if seconds is not None:
            self.stats.lab_seconds = (self.stats.lab_seconds or 0.0) + float(seconds)
        if joules is not None:
            self.stats.joules = (self.stats.joules or 0.0) + float(joules)
