"""The device :class:`Wave2D`: a 2-D scalar wave medium with point sources and intensity
probes, built from a :class:`~phys.simulators.wave2d.config.Wave2DConfig`."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from phys.device import DeviceInfo, ParamSpec, validate_batch
from phys.simulators._checks import check_int
from phys.simulators.base import Simulator
from phys.simulators.wave2d.config import Wave2DConfig
from phys.simulators.wave2d.medium import damping, placements, speed_map
from phys.simulators.wave2d.native import _NativeStepper, resolve_backend
from phys.simulators.wave2d.stepper import _Stepper, _WaveFunction

__all__ = ["Wave2D"]

class Wave2D(Simulator):
    """2-D scalar wave medium with point sources and intensity probes.

    Two input modes:

    * ``"pulse"``: ``n_in`` sources; input ``x[i]`` is the amplitude of a Gaussian-envelope
      sine pulse (carrier ``f0``, ``pulse_cycles`` carrier cycles at half maximum) emitted
      by source ``i``. Negative amplitudes flip the carrier's sign.
    * ``"waveform"``: the input is a time series of ``n_steps`` samples (sample rate
      ``1 / dt``), injected at each of ``n_sources`` sources; ``n_in = n_steps``.

    Sources sit on a column ``EDGE_GAP`` cells inside the absorbing layer on the low-``x``
    side, probes on the opposite column (``placement="line"``), or at seeded random cells
    in the first and last quarter of the interior (``placement="random"``). Scatterers or
    the lens fill the region between the two.

    The source strength is calibrated at construction by simulating the *linear* medium:
    for every input in range, the linear field is at most 1 in magnitude everywhere (a
    bound that is reached by some input). The CFL check uses
    ``c_max = max(c_lin) + max(c_nl, 0)``: exact for the linear field, an estimate when
    the nonlinearity itself raises the field. Outputs are time-averaged probe intensities
    ``mean_n u[n]^2`` in these units (at most 1); with ``normalize=True`` each row is
    divided by its sum over probes.

    Physical parameter ``permittivity`` (``info.params``; :meth:`set`): the relative
    permittivity ``eps = (c0 / c_lin)^2`` of each cell of the design region, the box
    between the sources and the probes where the scatterers or the lens lie, as
    wavetorch trains it (``c_lin = c0 / sqrt(eps)`` there). Its range spans the two
    materials, ``c0`` and ``c1``, so the CFL step stays valid; the default is the seeded
    medium. The source gain stays the one calibrated for that medium. Gradients with
    respect to it (``simulate(x, params=...)``, :meth:`param_vjp`) run plain autograd
    through every step, checkpointed (``O(sqrt(n_steps))`` fields kept).

    :meth:`to` moves the medium to another torch device (a GPU); off the CPU the torch
    backend runs, since the native kernels are CPU-only (``info.extra["backend_note"]``
    says so), and ``backend="native"`` given explicitly refuses to move.

    Args:
        config: All options as one :class:`Wave2DConfig`.
        **options: Or the same options as keywords (``n_in=4, n_out=2, ...``): see
            :class:`Wave2DConfig` for each one's meaning, units and default.

    Attributes:
        config: The checked :class:`Wave2DConfig`, derived defaults filled in; its
            options are also attributes (``dev.dt``, ``dev.c_nl``, ...).
        backend: ``"native"`` or ``"torch"``: the backend in use (always ``"torch"`` off
            the CPU: see :meth:`to`).
        sources, probes: Cells ``(n, 2)`` of the sources and probes.
        c_lin: Linear wave speed (m/s), ``(Nx, Ny)``.
        design_box: ``(x_lo, x_hi, y_lo, y_hi)``, inclusive cells of the design region.
        damping: Absorbing-layer damping ``b`` (1/s), ``(Nx, Ny)``.
        gain: Source gain that keeps the linear field within ``[-1, 1]``.

    Shape:
        - Input: ``(B, n_in)``: pulse amplitudes, or waveform samples, in ``in_range``.
        - Output: ``(B, n_out)``: time-averaged probe intensities (``>= 0``).

    Examples::

        >>> import torch
        >>> from phys.simulators.wave2d import Wave2D, Wave2DConfig
        >>> dev = Wave2D(n_in=3, n_out=2, grid=(40, 40), n_steps=150, pml=8, seed=1)
        >>> dev.query(torch.rand(5, 3) * 2 - 1).shape
        torch.Size([5, 2])
        >>> audio = Wave2D(n_out=3, input_mode="waveform", grid=(40, 40), n_steps=100, pml=8)
        >>> audio.info.n_in
        100
        >>> same = Wave2D(config=Wave2DConfig(n_in=3, n_out=2, grid=(40, 40), n_steps=150,
        ...                                   pml=8, seed=1))
        >>> same.config == dev.config
        True
    """

    name = "wave2d"

    #: The options dataclass: its fields are this device's options (one owner each).
    options_class: ClassVar[type] = Wave2DConfig

    def __init__(self, config: Wave2DConfig | None = None, **options: Any) -> None:
        super().__init__()
        self.config = _merge(config, options)
        self.backend = resolve_backend(self.config.backend)
        self.info = self._device_info()
        self._keep_options()
        self._build_medium()
        self._build_stepper()
        self._waveform = self._source_waveform()
        self.gain = self._calibrate(max(abs(self.info.in_min), abs(self.info.in_max)))
        self._waveform = self._waveform * self.gain
        self._declare_permittivity()

    # -- construction -------------------------------------------------------------------
    def _device_info(self) -> DeviceInfo:
        cfg = self.config
        lo, hi = cfg.in_range
        return DeviceInfo(
            name=self.name, n_in=cfg.n_in, n_out=cfg.n_out, in_min=lo, in_max=hi,
            max_batch=cfg.max_batch, differentiable=True, stochastic=False,
            extra={
                "input_mode": cfg.input_mode, "grid": list(cfg.grid), "n_steps": cfg.n_steps,
                "h": cfg.h, "dt": cfg.dt, "c0": cfg.c0, "c1": cfg.c1, "c_nl": cfg.c_nl,
                "medium": cfg.medium, "f0": cfg.f0, "pml": cfg.pml,
                "pml_sigma": cfg.pml_sigma, "seed": cfg.seed, "normalize": cfg.normalize,
                "backend": self.backend,
                "units": "h: m, dt: s, c: m/s, f0: Hz; input: pulse amplitude or waveform "
                         "sample; output: time-averaged intensity, linear field <= 1",
            },
        )

    def _keep_options(self) -> None:
        """The options the device reads, as attributes."""
        cfg = self.config
        self.input_mode, self.medium, self.normalize, self.gradient = (
            cfg.input_mode, cfg.medium, cfg.normalize, cfg.gradient)
        self.grid, self.n_steps, self.h, self.dt = cfg.grid, cfg.n_steps, cfg.h, cfg.dt
        self.c0, self.c1, self.c_nl, self.f0 = cfg.c0, cfg.c1, cfg.c_nl, cfg.f0
        self.pulse_cycles, self.checkpoint_every = cfg.pulse_cycles, cfg.checkpoint_every
        self.settle_seconds, self.dtype = cfg.settle_seconds, cfg.dtype

    def _build_medium(self) -> None:
        """Source and probe cells, the speed map and the absorbing layer, from the seed."""
        cfg = self.config
        nx, ny = cfg.grid
        gen = torch.Generator().manual_seed(cfg.seed)
        self.sources, self.probes, box = placements(nx, ny, cfg.pml, cfg.source_count,
                                                    cfg.n_out, cfg.placement, gen)
        self.design_box = box
        self.c_lin = speed_map(cfg.medium, nx, ny, box, cfg.c0, cfg.c1, cfg.n_scatterers,
                               cfg.scatterer_radius, gen)
        self.damping = damping(nx, ny, cfg.pml, cfg.pml_sigma, cfg.pml_order)

    def _build_stepper(self) -> None:
        """The time stepper of the chosen backend, with the scheme's coefficients."""
        dt, h = self.dt, self.h
        kappa = 1.0 / (1.0 + self.damping * dt)
        stepper = _NativeStepper if self.backend == "native" else _Stepper
        self._stepper = stepper(kappa, self.damping * dt, self.c_lin * (dt / h),
                                self.c_nl * dt / h, self.sources, self.probes, self.dtype)

    def _design(self) -> tuple[slice, slice]:
        x_lo, x_hi, y_lo, y_hi = self.design_box
        return slice(x_lo, x_hi + 1), slice(y_lo, y_hi + 1)

    def _declare_permittivity(self) -> None:
        """``permittivity`` over the design box, between the two materials' values."""
        cfg = self.config
        fast = cfg.c_max - max(cfg.c_nl, 0.0)  # the fastest linear speed the CFL step allows
        slow = min(cfg.c0, cfg.c1)
        if slow + min(cfg.c_nl, 0.0) <= 0:  # c1 may be too slow where the medium has none
            slow = cfg.c0
        eps = (cfg.c0 / self.c_lin[self._design()]) ** 2
        lo = min((cfg.c0 / fast) ** 2, float(eps.min()))
        hi = max((cfg.c0 / slow) ** 2, float(eps.max()))
        spec = ParamSpec("permittivity", tuple(eps.shape), lo, hi, units="")
        self._declare_params({"permittivity": (spec, eps)}, torch.float64)

    def _speed(self, eps: torch.Tensor) -> torch.Tensor:
        """The speed map with ``c0 / sqrt(eps)`` in the design box (differentiable)."""
        inside = torch.zeros(self.grid, dtype=torch.bool, device=eps.device)
        inside[self._design()] = True
        region = torch.zeros(self.grid, dtype=eps.dtype, device=eps.device)
        region[self._design()] = self.c0 / eps.sqrt()
        return torch.where(inside, region, self.c_lin.to(device=eps.device, dtype=eps.dtype))

    def _params_changed(self, names: tuple[str, ...]) -> None:
        """The speed map and the stepper from the set permittivity."""
        self.c_lin = self._speed(self._param_values["permittivity"].double()).detach()
        self._build_stepper()

    # -- placement --------------------------------------------------------------------
    def _check_device(self, device: torch.device) -> None:
        if device.type != "cpu" and self.config.backend == "native":
            raise ValueError(
                f"wave2d backend='native' runs its C kernels on the CPU only and cannot "
                f"move to {device}; use backend='auto' (torch off the CPU) or 'torch'")

    def _placed(self, device: torch.device) -> None:
        """The backend for ``device`` (native kernels on the CPU only) and its stepper,
        built from the moved maps; ``info.extra["backend"]`` says which, and
        ``info.extra["backend_note"]`` why when the native kernels had to give way."""
        host = resolve_backend(self.config.backend)
        self.backend = host if device.type == "cpu" else "torch"
        extra = {k: v for k, v in self.info.extra.items() if k != "backend_note"}
        extra["backend"] = self.backend
        if self.backend != host:
            extra["backend_note"] = (f"torch on {device}: the native C kernels run on the "
                                     f"CPU only")
        self.info = replace(self.info, extra=extra)
        self._build_stepper()

    def _source_waveform(self) -> torch.Tensor:
        """Per-step source signal per unit input, before calibration. Shape ``(n_drive,)``."""
        if self.input_mode == "waveform":
            return torch.ones(1, dtype=torch.float64)
        sigma, t0, n_drive = self.config.pulse_timing()
        t = torch.arange(n_drive, dtype=torch.float64) * self.dt - t0
        return torch.exp(-0.5 * (t / sigma) ** 2) * torch.sin(2 * math.pi * self.f0 * t)

    def _calibrate(self, x_max: float) -> float:
        """Source gain so the linear field stays within ``[-1, 1]`` for all inputs in range.

        Pulse mode: the field is ``sum_i x_i R_i`` (``R_i``: response to source ``i``), so
        its bound is ``x_max * max_(n, r) sum_i |R_i[n](r)|``. Waveform mode: the field is
        the waveform convolved with the impulse response ``G``, bounded by
        ``x_max * max_r sum_n |G[n](r)|`` (reached by a matched waveform).
        """
        n_src = len(self.sources)
        if self.input_mode == "pulse":
            drive = self._waveform[:, None, None] * torch.eye(n_src, dtype=torch.float64)
            peak = torch.zeros(self._stepper.m, dtype=self.dtype)

            def monitor(u: torch.Tensor) -> None:
                torch.maximum(peak, u.abs().sum(0), out=peak)
        else:
            drive = torch.ones(1, 1, n_src, dtype=torch.float64)
            peak = torch.zeros(1, self._stepper.m, dtype=self.dtype)

            def monitor(u: torch.Tensor) -> None:
                peak.add_(u.abs())
        st = self._stepper
        with torch.no_grad():
            batch = drive.shape[1]
            st.march(st.zeros(batch), st.zeros(batch), 0, self.n_steps,
                     drive=drive.to(self.dtype).unbind(0), linear=True, monitor=monitor)
        bound = float(peak.max()) * x_max
        return 1.0 / bound if bound > 0 else 1.0

    # -- physics ------------------------------------------------------------------------
    def _drive(self, x: torch.Tensor) -> torch.Tensor:
        """Source term per step. Shape: ``(B, n_in)`` -> ``(n_drive, B, n_sources)``."""
        wave = self._waveform.to(x.dtype)
        if self.input_mode == "pulse":
            return wave[:, None, None] * x[None]
        n_src = len(self.sources)
        return (x.T * wave)[:, :, None].expand(-1, -1, n_src).contiguous()

    def _record(self, x: torch.Tensor) -> torch.Tensor:
        """Field at the probes for every step. Shape: ``(B, n_in)`` -> ``(n_steps, B, n_out)``."""
        x = x.to(self.dtype)
        drive = self._drive(x)
        if self._param_given("permittivity"):
            c_lin = self._speed(self._param("permittivity"))
            if torch.is_grad_enabled() and (drive.requires_grad or c_lin.requires_grad):
                return self._record_autograd(drive, c_lin)
            with torch.no_grad():
                return self._record_autograd(drive, c_lin)
        if not (torch.is_grad_enabled() and drive.requires_grad):
            with torch.no_grad():
                return self._stepper.forward(drive, self.n_steps)[0]
        if self.gradient == "autograd":
            return self._record_autograd(drive)
        return _WaveFunction.apply(drive, self._stepper, self.n_steps, self.checkpoint_every)

    def _record_autograd(self, drive: torch.Tensor, c_lin: torch.Tensor | None = None,
                         ) -> torch.Tensor:
        """Reference for :meth:`_record`: plain autograd through every step, on
        ``(B, Nx, Ny)`` fields with padding; independent of :class:`_Stepper`.

        ``c_lin`` replaces the speed map (gradients flow into it); then the steps run in
        chunks of ``checkpoint_every`` that are recomputed in the backward pass
        (:func:`torch.utils.checkpoint.checkpoint`), so memory grows as
        ``sqrt(n_steps)``; without it, as ``n_steps``."""
        chunked = c_lin is not None and torch.is_grad_enabled()
        c_lin = self.c_lin if c_lin is None else c_lin
        chat = (c_lin * (self.dt / self.h)).to(self.dtype)
        u_prev = u = torch.zeros(drive.shape[1], *self.grid, dtype=self.dtype,
                                 device=drive.device)
        every = self.checkpoint_every if chunked else self.n_steps
        records = []
        for first in range(0, self.n_steps, every):
            last = min(first + every, self.n_steps)
            if chunked:
                u_prev, u, record = checkpoint(self._autograd_steps, u_prev, u, chat, drive,
                                               first, last, use_reentrant=False)
            else:
                u_prev, u, record = self._autograd_steps(u_prev, u, chat, drive, first, last)
            records.append(record)
        return torch.cat(records)

    def _autograd_steps(self, u_prev: torch.Tensor, u: torch.Tensor, chat: torch.Tensor,
                        drive: torch.Tensor, first: int, last: int,
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Steps ``first .. last - 1`` of :meth:`_record_autograd`: the fields after them
        and the probe record ``(last - first, B, n_out)``."""
        kappa = (1.0 / (1.0 + self.damping * self.dt)).to(self.dtype).to(u.device)
        bc = -(1.0 - self.damping * self.dt).to(self.dtype).to(u.device) * kappa
        cnl = self.c_nl * self.dt / self.h
        rows = torch.arange(u.shape[0], device=u.device)[:, None]
        sx, sy = self.sources[:, 0], self.sources[:, 1]
        px, py = self.probes[:, 0], self.probes[:, 1]
        record = []
        for n in range(first, last):
            p = F.pad(u, (1, 1, 1, 1))
            lap = p[:, :-2, 1:-1] + p[:, 2:, 1:-1] + p[:, 1:-1, :-2] + p[:, 1:-1, 2:] - 4 * u
            q = chat + cnl * u * u
            u_next = 2 * kappa * u + bc * u_prev + kappa * q * q * lap
            if n < drive.shape[0]:
                u_next = u_next.index_put((rows, sx, sy), drive[n], accumulate=True)
            u_prev, u = u, u_next
            record.append(u[:, px, py])
        return u_prev, u, torch.stack(record)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self._record(x).square().mean(0)
        if self.normalize:
            y = y / (y.sum(1, keepdim=True) + torch.finfo(y.dtype).tiny)
        return y

    def _lab_cost(self, n_samples: int) -> tuple[float, None]:
        """Lab seconds: each sample emits for ``n_steps * dt`` and waits ``settle_seconds``."""
        return n_samples * (self.n_steps * self.dt + self.settle_seconds), None

    # -- extras -------------------------------------------------------------------------
    def probe_signals(self, x: torch.Tensor) -> torch.Tensor:
        """Field at the probes at every step (differentiable, like :meth:`simulate`).

        Shape: ``(B, n_in)`` -> ``(B, n_steps, n_out)``, normalised field units; step
        ``n`` is the field at time ``(n + 1) * dt``.
        """
        if self._closed:
            raise RuntimeError(f"device {self.info.name!r} is closed")
        x = x if isinstance(x, torch.Tensor) else torch.as_tensor(x)
        validate_batch(x, self.info)
        record = self._record(x.reshape(-1, self.info.n_in).to(self.torch_device))
        return record.transpose(0, 1).to(x.device)

    def propagate(self, u: torch.Tensor, u_prev: torch.Tensor | None = None,
                  n_steps: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """Advance source-free fields by ``n_steps`` leapfrog steps (no autograd).

        Args:
            u: Field at the current step, normalised units.
            u_prev: Field one step earlier; default ``u`` (starting at rest).
            n_steps: Steps to take.

        Shape:
            ``(B, Nx, Ny)`` or ``(Nx, Ny)`` in, the pair ``(u_prev, u)`` after the last
            step out, same shape.
        """
        check_int(0, n_steps=n_steps)
        single = u.ndim == 2
        if tuple(u.shape[-2:]) != self.grid or u.ndim not in (2, 3):
            raise ValueError(f"u must have shape (B, {self.grid[0]}, {self.grid[1]}) or "
                             f"{self.grid}, got {tuple(u.shape)}")
        u_prev = u if u_prev is None else u_prev
        if u_prev.shape != u.shape:
            raise ValueError(f"u_prev must have the shape of u {tuple(u.shape)}, got "
                             f"{tuple(u_prev.shape)}")
        st, here = self._stepper, self.torch_device
        with torch.no_grad():
            prev, cur = st.march(st.pad(u_prev.reshape(-1, *self.grid).to(here)),
                                 st.pad(u.reshape(-1, *self.grid).to(here)), 0, n_steps)
        out = st.unpad(prev).to(u.device), st.unpad(cur).to(u.device)
        return (out[0][0], out[1][0]) if single else out

    def energy(self, u_prev: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Discrete energy of the linear, lossless scheme between two consecutive steps.

        ``E = 1/2 sum h^2 [(u - u_prev)^2 / (c_lin dt)^2 + u (-L) u_prev]`` with ``L`` the
        5-point Laplacian (zero outside the grid): exactly conserved by :meth:`propagate`
        when ``c_nl = 0`` and ``pml_sigma = 0`` (up to rounding), positive under the CFL
        condition. Units: field^2 (per unit depth).

        Shape: ``(B, Nx, Ny)`` or ``(Nx, Ny)`` pairs -> ``(B,)`` or scalar.
        """
        u64, p64 = u.double(), u_prev.double()
        pad = F.pad(p64, (1, 1, 1, 1))
        neighbours = (pad[..., :-2, 1:-1] + pad[..., 2:, 1:-1]
                      + pad[..., 1:-1, :-2] + pad[..., 1:-1, 2:])
        c_lin = self.c_lin.to(u.device)
        kinetic = (u64 - p64) ** 2 * (self.h / (c_lin * self.dt)) ** 2
        potential = u64 * (4 * p64 - neighbours)
        return 0.5 * (kinetic + potential).sum((-2, -1))


def _merge(config: Wave2DConfig | None, options: dict[str, Any]) -> Wave2DConfig:
    """``config``, or a config made of the keyword ``options``; TypeError for both."""
    if config is None:
        return Wave2DConfig(**options)
    if not isinstance(config, Wave2DConfig):
        raise TypeError(f"config must be a Wave2DConfig, got {type(config).__name__}")
    if options:
        raise TypeError(f"pass either config or keyword options, not both; got config and "
                        f"{', '.join(options)}")
    return config
