"""The options of :class:`~phys.simulators.wave2d.Wave2D` as a frozen dataclass, checked
once when it is made."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from phys.simulators._checks import check_int, check_number
from phys.simulators.wave2d.medium import default_grid, placements

__all__ = ["ABSORB_TARGET", "BACKENDS", "CELLS_PER_WAVELENGTH", "COURANT", "GRADIENTS",
           "INPUT_MODES", "MEDIA", "PLACEMENTS", "Wave2DConfig"]

MEDIA = ("scatterers", "lens", "homogeneous")
INPUT_MODES = ("pulse", "waveform")
PLACEMENTS = ("line", "random")
GRADIENTS = ("adjoint", "autograd")
BACKENDS = ("auto", "native", "torch")

#: Default carrier wavelength in grid cells of the background medium.
CELLS_PER_WAVELENGTH = 12.0
#: Default time step as a fraction of the CFL limit.
COURANT = 0.9
#: Default round-trip amplitude attenuation through the absorbing layer at normal
#: incidence, ``exp(-2 integral b dx / c)``; sets the default ``pml_sigma``. Stronger
#: damping reflects more from the damping gradient itself (about 2 % at 20 cells).
ABSORB_TARGET = 1e-2


@dataclass(frozen=True)
class Wave2DConfig:
    """Everything that defines a :class:`~phys.simulators.wave2d.Wave2D` device.

    Making one checks every option (``ValueError`` naming the option and the fix) and
    fills in the derived defaults of the options left ``None``, so ``config.dt`` is the
    time step the device uses. :func:`dataclasses.replace` keeps derived values; pass
    ``None`` again to derive them anew (e.g. ``replace(cfg, n_steps=800, dt=None,
    checkpoint_every=None, settle_seconds=None)``).

    Args:
        n_in: Number of sources in pulse mode (default 4). In waveform mode leave it
            ``None`` or equal to ``n_steps``.
        n_out: Number of probes.
        input_mode: ``"pulse"`` or ``"waveform"``.
        grid: ``(Nx, Ny)`` cells, the absorbing layer included; by default ``(100, 100)``,
            taller when the sources or probes need more rows
            (:func:`~phys.simulators.wave2d.medium.default_grid`).
        n_steps: Time steps per sample.
        h: Grid spacing (m).
        dt: Time step (s); default ``0.9`` of the CFL limit ``h / (c_max sqrt(2))``.
        c0: Background wave speed (m/s); default: sound in air.
        c1: Wave speed inside scatterers / the lens (m/s); default ``0.6 * c0``.
        c_nl: Kerr-like speed change (m/s) per unit field squared; ``0`` is a linear
            medium. Default ``0.2 * c0``.
        medium: ``"scatterers"``, ``"lens"`` or ``"homogeneous"``.
        n_scatterers: Discs drawn for ``medium="scatterers"``.
        scatterer_radius: ``(min, max)`` disc radius in cells.
        f0: Pulse carrier frequency (Hz); default one wavelength per 12 cells in the
            background. Keep ``c / f0 >= ~10 h`` for small numerical dispersion.
        pulse_cycles: Carrier cycles within the pulse envelope's full width at half
            maximum.
        n_sources: Sources fed the same waveform in waveform mode.
        placement: ``"line"`` or ``"random"``.
        pml: Absorbing layer width in cells.
        pml_order: Grading exponent ``p`` of the damping profile.
        pml_sigma: Damping at the outer edge (1/s); default
            ``(pml_order + 1) c_max ln(100) / (2 pml h)``: a 1 % round trip.
        normalize: Divide each output row by its sum over the probes.
        seed: Seeds the medium and random placements.
        in_range: Inclusive input range ``(in_min, in_max)``.
        max_batch: Largest batch simulated at once.
        checkpoint_every: Steps between checkpoints of the nonlinear backward pass;
            default ``ceil(sqrt(n_steps))``, so it keeps ``O(sqrt(n_steps))`` fields per
            sample (a linear medium needs none).
        gradient: ``"adjoint"`` (hand-written, checkpointed) or ``"autograd"`` (plain
            autograd through every step: ``O(n_steps)`` memory; a reference).
        backend: ``"native"``: C loops compiled on first use with the system C compiler
            (``$CC``, ``cc`` or ``gcc``), several times faster; ``"torch"``: torch tensor
            operations only; ``"auto"``: native when a compiler is found, else torch.
            Both give the same results up to rounding.
        settle_seconds: Lab time to let the field ring down between samples (s);
            default one window, ``n_steps * dt``.
        dtype: ``torch.float32`` or ``torch.float64``.

    Examples::

        >>> cfg = Wave2DConfig(n_in=3, n_out=2, grid=(40, 40), n_steps=150, pml=8)
        >>> round(cfg.dt * 1e6, 4)  # 0.9 of the CFL limit, in microseconds
        7.7308
        >>> Wave2DConfig(n_steps=0)
        Traceback (most recent call last):
            ...
        ValueError: n_steps must be an int >= 1, got 0
    """

    n_in: int | None = None
    n_out: int = 4
    input_mode: str = "pulse"
    grid: tuple[int, int] | None = None
    n_steps: int = 400
    h: float = 5e-3
    dt: float | None = None
    c0: float = 343.0
    c1: float | None = None
    c_nl: float | None = None
    medium: str = "scatterers"
    n_scatterers: int = 10
    scatterer_radius: tuple[float, float] = (2.0, 5.0)
    f0: float | None = None
    pulse_cycles: float = 2.0
    n_sources: int = 1
    placement: str = "line"
    pml: int = 20
    pml_order: float = 4.0
    pml_sigma: float | None = None
    normalize: bool = False
    seed: int = 0
    in_range: tuple[float, float] = (-1.0, 1.0)
    max_batch: int = 64
    checkpoint_every: int | None = None
    gradient: str = "adjoint"
    backend: str = "auto"
    settle_seconds: float | None = None
    dtype: torch.dtype = torch.float32

    def __post_init__(self) -> None:
        _check_choice(input_mode=(self.input_mode, INPUT_MODES), medium=(self.medium, MEDIA),
                      placement=(self.placement, PLACEMENTS),
                      gradient=(self.gradient, GRADIENTS), backend=(self.backend, BACKENDS))
        self._resolve_counts()
        self._resolve_speeds()
        self._resolve_pulse_and_layer()
        self._resolve_rest()
        self._check_geometry()

    # -- derived quantities ---------------------------------------------------------------
    @property
    def source_count(self) -> int:
        """Point sources: ``n_in`` in pulse mode, ``n_sources`` in waveform mode."""
        return self.n_in if self.input_mode == "pulse" else self.n_sources

    @property
    def c_max(self) -> float:
        """Speed bound of the CFL check (m/s): the fastest linear speed plus
        ``max(c_nl, 0)``."""
        c_lin_max = self.c1 if self.medium != "homogeneous" and self.c1 > self.c0 else self.c0
        return c_lin_max + max(self.c_nl, 0.0)

    def pulse_timing(self) -> tuple[float, float, int]:
        """The pulse envelope: Gaussian width ``sigma`` (s), its centre ``t0 = 3 sigma``
        (s; the envelope starts at ``e^-4.5`` of its peak) and its length in steps."""
        fwhm = self.pulse_cycles / self.f0
        sigma = fwhm / (2 * math.sqrt(2 * math.log(2)))
        t0 = 3 * sigma
        return sigma, t0, math.ceil(2 * t0 / self.dt) + 1

    # -- the checks, in order -------------------------------------------------------------
    def _set(self, **values: object) -> None:
        for key, value in values.items():
            object.__setattr__(self, key, value)

    def _resolve_counts(self) -> None:
        """grid, the integer options, and n_in."""
        grid = self.grid
        if grid is None:
            grid = default_grid(self.n_in if self.input_mode == "pulse" else None,
                                self.n_out, self.n_sources, self.pml)
        if not (isinstance(grid, tuple | list) and len(grid) == 2):
            raise ValueError(f"grid must be a pair (Nx, Ny) of cell counts, got {grid!r}")
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 3 for v in grid):
            raise ValueError(f"grid must be two ints >= 3 (cells), got {grid!r}")
        check_int(1, n_out=self.n_out, n_steps=self.n_steps, n_sources=self.n_sources)
        check_int(0, pml=self.pml, n_scatterers=self.n_scatterers)
        n_in = self.n_in
        if self.input_mode == "pulse":
            n_in = 4 if n_in is None else n_in
            check_int(1, n_in=n_in)
        elif n_in is not None and n_in != self.n_steps:
            raise ValueError(f"in waveform mode the input is the waveform: n_in must be "
                             f"None or n_steps={self.n_steps}, got {n_in!r}")
        self._set(grid=tuple(grid), n_in=self.n_steps if self.input_mode == "waveform" else n_in)

    def _resolve_speeds(self) -> None:
        """c1, c_nl and dt, with the CFL condition."""
        c0 = self.c0
        c1 = 0.6 * c0 if self.c1 is None else self.c1
        c_nl = 0.2 * c0 if self.c_nl is None else self.c_nl
        check_number(">0", h=self.h, c0=c0, c1=c1, pulse_cycles=self.pulse_cycles,
                     pml_order=self.pml_order)
        if not math.isfinite(c_nl):
            raise ValueError(f"c_nl must be a finite number, got {c_nl}")
        c_lin_min = c1 if self.medium != "homogeneous" and c1 < c0 else c0
        if c_lin_min + min(c_nl, 0.0) <= 0:
            raise ValueError(f"c_nl={c_nl} would make the wave speed negative (slowest "
                             f"linear speed {c_lin_min} m/s); use c_nl > {-c_lin_min}")
        self._set(c1=c1, c_nl=c_nl)
        c_max, h = self.c_max, self.h
        dt_limit = h / (c_max * math.sqrt(2))
        dt = COURANT * dt_limit if self.dt is None else self.dt
        check_number(">0", dt=dt)
        if dt > dt_limit * (1 + 1e-12):
            raise ValueError(
                f"dt={dt:.6g} s breaks the CFL condition dt <= h / (c_max * sqrt(2)) = "
                f"{dt_limit:.6g} s (h={h:g} m, c_max={c_max:g} m/s: the fastest linear speed "
                f"plus c_nl={c_nl:g}); reduce dt, or increase h, or lower c0 / c1 / c_nl")
        self._set(dt=dt)

    def _resolve_pulse_and_layer(self) -> None:
        """f0 (below the Nyquist frequency) and pml_sigma."""
        f0 = self.c0 / (CELLS_PER_WAVELENGTH * self.h) if self.f0 is None else self.f0
        pml_sigma = self.pml_sigma
        if pml_sigma is None:  # a round trip through the layer attenuates by ABSORB_TARGET
            depth = 2 * max(self.pml, 1) * self.h
            pml_sigma = (self.pml_order + 1) * self.c_max * math.log(1 / ABSORB_TARGET) / depth
        check_number(">0", f0=f0)
        check_number(">=0", pml_sigma=pml_sigma)
        if self.input_mode == "pulse" and f0 * self.dt >= 0.5:
            raise ValueError(f"f0={f0:g} Hz is above the Nyquist frequency 1 / (2 dt) = "
                             f"{0.5 / self.dt:g} Hz; lower f0 or dt")
        self._set(f0=f0, pml_sigma=pml_sigma)

    def _resolve_rest(self) -> None:
        """scatterer_radius, checkpoint_every, settle_seconds, dtype, in_range, max_batch."""
        r_lo, r_hi = _pair("scatterer_radius", self.scatterer_radius, "(min, max) cells")
        if not 0 < r_lo <= r_hi:
            raise ValueError(f"scatterer_radius must be (min, max) with 0 < min <= max cells, "
                             f"got {self.scatterer_radius!r}")
        every = self.checkpoint_every
        every = math.ceil(math.sqrt(self.n_steps)) if every is None else every
        check_int(1, checkpoint_every=every)
        settle = self.n_steps * self.dt if self.settle_seconds is None else self.settle_seconds
        check_number(">=0", settle_seconds=settle)
        if self.dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {self.dtype}")
        lo, hi = _pair("in_range", self.in_range, "(in_min, in_max)")
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"in_range must be (in_min, in_max) with finite in_min < in_max, "
                             f"got {self.in_range!r}")
        check_int(1, max_batch=self.max_batch)
        self._set(scatterer_radius=(r_lo, r_hi), checkpoint_every=every,
                  settle_seconds=settle, in_range=(lo, hi))

    def _check_geometry(self) -> None:
        """Sources and probes fit the grid, a wave reaches a probe within the window, and
        the pulse fits in it."""
        nx, ny = self.grid
        gen = torch.Generator().manual_seed(self.seed)
        sources, probes, _ = placements(nx, ny, self.pml, self.source_count, self.n_out,
                                        self.placement, gen)
        d = torch.cdist(sources.double(), probes.double()).min().item() * self.h
        window, c_max = self.n_steps * self.dt, self.c_max
        if d / c_max > window:
            raise ValueError(
                f"n_steps={self.n_steps} (window {window:.3g} s) is shorter than the travel "
                f"time {d / c_max:.3g} s from the nearest source to the nearest probe; "
                f"raise n_steps to at least {math.ceil(d / c_max / self.dt)}")
        n_drive = self.pulse_timing()[2] if self.input_mode == "pulse" else 0
        if n_drive > self.n_steps:
            raise ValueError(
                f"n_steps={self.n_steps} is shorter than the pulse ({n_drive} steps for "
                f"pulse_cycles={self.pulse_cycles} at f0={self.f0:g} Hz); raise n_steps, or "
                f"raise f0 / lower pulse_cycles")


def _pair(key: str, value: Any, what: str) -> tuple[float, float]:
    """``value`` as two floats; ValueError naming ``key`` otherwise."""
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{key} must be a pair {what}, got {value!r}") from None
    return a, b


def _check_choice(**pairs: tuple[str, tuple[str, ...]]) -> None:
    for key, (value, choices) in pairs.items():
        if value not in choices:
            raise ValueError(f"{key} must be one of {', '.join(map(repr, choices))}; got {value!r}")
