"""Free-space diffractive optics: SLM encoding, a nonlinear layer, a camera.

A coherent plane wave of intensity ``intensity`` lights a spatial light modulator (SLM)
of ``grid = (H, W)`` pixels with pitch ``pitch``. The ``n_in`` inputs are written onto
the SLM as a ``rows x cols`` tiling of pixel blocks (one block per input); each input
value is mapped linearly, ``s = (u - in_min) / (in_max - in_min)`` in ``[0, 1]``, to

* ``encoding="phase"``: a phase delay ``phase_range * s`` (radians), or
* ``encoding="amplitude"``: an amplitude transmission ``s``.

A fixed random phase plate (a diffuser, uniform phases in ``[0, 2 pi diffuser)`` per
pixel, drawn from ``seed``) sits on the SLM plane and scatters the light to all angles
the pixels resolve. The field is zero-padded by ``pad`` pixels on every side (the SLM
aperture clips the beam) and propagated over ``distances[0]`` with the angular-spectrum
method,

    E(z) = IFFT2[ FFT2[E(0)] * H_z ],   H_z(fx, fy) = exp(i 2 pi z (sqrt(1/lambda^2 -
    fx^2 - fy^2) - 1/lambda)),

where the unobservable global phase ``exp(i 2 pi z / lambda)`` is dropped, evanescent
components (``fx^2 + fy^2 > 1/lambda^2``) are cut (they decay within a wavelength or so)
and, with ``band_limit=True``, frequencies whose transfer-function chirp the grid
under-samples are cut too (Matsushima and Shimobaba, *Opt. Express* 17:19662, 2009).
The simulation window is periodic: the steepest rays the pixels resolve walk off
sideways by ``z lambda / (2 pitch^2)`` pixels over a distance ``z``, and light that walks
off by more than ``2 pad`` pixels in all re-enters the camera from the other side (the
defaults walk off at most 2 x 12 pixels with ``pad=16``).

The nonlinear layer then acts pixel by pixel on the field ``E`` with intensity
``I = |E|^2``:

* ``nonlinearity="saturable"``: a thin saturable absorber with small-signal optical
  depth ``optical_depth`` (intensity transmission ``exp(-optical_depth)`` for weak light,
  rising towards 1 as the absorption bleaches): ``E -> E exp(-(optical_depth / 2) /
  (1 + I))``;
* ``nonlinearity="shg"``: second-harmonic generation with an undepleted pump,
  ``E -> E^2``; the light that propagates on has half the wavelength;
* ``nonlinearity="none"``: nothing (a linear diffractive system up to the detector).

Physical parameter ``mask`` (``info.params``; :meth:`Optics.set`): the phase, in radians,
that the SLM adds to every pixel on top of the input it displays, ``(H, W)``. It holds the
diffuser by default (the fixed phase plate above), and training it turns the diffuser
into a learned phase mask, also across the pixels that carry no input block.

After a second propagation over ``distances[1]`` a camera behind the central ``H x W``
region records the intensity; the ``n_out`` outputs are the mean intensities over an
``n_out``-block tiling of that region (one detector region per block).

Units: lengths in metres. Intensities (illumination and outputs) are in units of a
reference intensity ``I_ref``: the absorber's saturation intensity, and for SHG the pump
intensity at which the normalised undepleted-pump conversion ``I_SH = I^2 / I_ref``
would reach 100 %. Fields are in units of ``sqrt(I_ref)``.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F

from phys.device import ParamSpec
from phys.simulators._checks import check_number
from phys.simulators.base import Simulator, simulator_info

__all__ = ["Optics", "propagate", "transfer_function"]

Encoding = Literal["phase", "amplitude"]
Nonlinearity = Literal["saturable", "shg", "none"]
_ENCODINGS = ("phase", "amplitude")
_NONLINEARITIES = ("saturable", "shg", "none")
_COMPLEX = {torch.float32: torch.complex64, torch.float64: torch.complex128}


def transfer_function(
    shape: tuple[int, int],
    pitch: float,
    wavelength: float,
    distance: float,
    *,
    band_limit: bool = True,
    dtype: torch.dtype = torch.complex64,
) -> torch.Tensor:
    """Angular-spectrum transfer function ``H_z`` on the FFT frequency grid.

    Args:
        shape: ``(M, N)`` grid size in pixels.
        pitch: Pixel pitch in metres.
        wavelength: Wavelength in metres.
        distance: Propagation distance ``z`` in metres (negative propagates backwards).
        band_limit: Also cut the frequencies where the grid under-samples the chirp of
            ``H_z`` (band-limited angular spectrum); the cut is symmetric in ``z``.
        dtype: ``torch.complex64`` or ``torch.complex128``.

    Returns:
        ``(M, N)`` complex tensor: ``exp(i 2 pi z (kz / 2 pi - 1 / lambda))`` on
        propagating frequencies, ``0`` on evanescent and band-limited ones. The phase is
        computed in float64 before the cast.

    Examples::

        >>> h = transfer_function((64, 64), 8e-6, 1.55e-6, 1e-3)
        >>> h.shape, h.dtype, bool((h.abs() - 1).abs().max() < 1e-6)
        (torch.Size([64, 64]), torch.complex64, True)
    """
    m, n = _check_grid(shape, "shape")
    check_number(">0", pitch=pitch, wavelength=wavelength)
    if not math.isfinite(distance):
        raise ValueError(f"distance must be a finite number of metres, got {distance!r}")
    if dtype not in _COMPLEX.values():
        raise ValueError(f"dtype must be torch.complex64 or torch.complex128, got {dtype}")
    fx = torch.fft.fftfreq(m, d=pitch, dtype=torch.float64)[:, None]
    fy = torch.fft.fftfreq(n, d=pitch, dtype=torch.float64)[None, :]
    f2 = fx.square() + fy.square()
    inv_lambda = 1.0 / wavelength
    keep = f2 < inv_lambda**2
    if band_limit:
        for f, size in ((fx, m), (fy, n)):
            df = 1.0 / (size * pitch)
            keep = keep & (f.abs() <= 1.0 / (wavelength * math.hypot(2 * df * distance, 1.0)))
    root = torch.sqrt((inv_lambda**2 - f2).clamp_min(0.0))
    # kz - k written without cancellation: -f^2 / (sqrt(1/lambda^2 - f^2) + 1/lambda)
    phase = -2 * math.pi * distance * f2 / (root + inv_lambda)
    h = torch.polar(keep.to(torch.float64), torch.where(keep, phase, torch.zeros_like(phase)))
    return h.to(dtype)


def propagate(field: torch.Tensor, transfer: torch.Tensor) -> torch.Tensor:
    """Propagate a complex field with a transfer function from :func:`transfer_function`.

    Args:
        field: Complex field sampled on the grid the transfer function was made for.
        transfer: ``H_z`` from :func:`transfer_function`.

    Shape:
        - field: ``(..., M, N)`` complex.
        - transfer: ``(M, N)`` complex.
        - Output: like ``field``.

    Examples::

        >>> h = transfer_function((16, 16), 8e-6, 1.55e-6, 1e-3)
        >>> e = torch.ones(2, 16, 16, dtype=torch.complex64)
        >>> bool(torch.allclose(propagate(e, h), e))  # a plane wave stays a plane wave
        True
    """
    return torch.fft.ifft2(torch.fft.fft2(field) * transfer)


def _block_index(shape: tuple[int, int], n_blocks: int, what: str) -> torch.Tensor:
    """Pixel -> block map tiling ``shape`` with ``n_blocks`` near-square blocks.

    The grid is cut into ``rows x cols >= n_blocks`` cells with cells as square as the
    grid allows; cell ``k`` (row ``k // cols``, column ``k % cols``, row-major) is block
    ``k``, and the cells past the last block get the index ``n_blocks`` (unused). Pixel
    row ``i`` lies in cell row ``floor(i * rows / H)`` (columns alike), so cell sizes
    differ by at most one pixel per axis.

    Args:
        shape: ``(H, W)`` pixels.
        n_blocks: Number of blocks.
        what: Names the blocks in the error message (e.g. ``"n_out=16 detector regions"``).

    Returns:
        ``(H, W)`` int64 tensor of block indices in ``0 .. n_blocks`` (``n_blocks``: unused).

    Raises:
        ValueError: the grid has fewer pixels than blocks.
    """
    h, w = shape
    if h * w < n_blocks:
        side = math.ceil(math.sqrt(n_blocks))
        raise ValueError(f"grid {shape} is too small for {what}: it needs at least "
                         f"{n_blocks} pixels, e.g. a grid of ({side}, {side})")
    rows = min(h, max(1, round(math.sqrt(n_blocks * h / w))))
    cols = math.ceil(n_blocks / rows)
    if cols > w:
        cols = w
        rows = math.ceil(n_blocks / cols)
    row = torch.arange(h) * rows // h
    col = torch.arange(w) * cols // w
    index = row[:, None] * cols + col[None, :]
    return index.clamp_max(n_blocks)


def default_grid(n_in: int, n_out: int, minimum: int = 32) -> tuple[int, int]:
    """A square grid with at least one pixel per input block and per detector region."""
    side = max(minimum, math.ceil(math.sqrt(max(n_in, n_out))))
    return side, side


def _check_options(pad: Any, encoding: Any, nonlinearity: Any,
                   distances: Any) -> tuple[float, float]:
    """``ValueError`` naming the option unless these are valid; the distances as a pair."""
    if isinstance(pad, bool) or not isinstance(pad, int) or pad < 0:
        raise ValueError(f"pad must be an int >= 0, got {pad!r}")
    if encoding not in _ENCODINGS:
        raise ValueError(f"encoding must be one of {_ENCODINGS}, got {encoding!r}")
    if nonlinearity not in _NONLINEARITIES:
        raise ValueError(f"nonlinearity must be one of {_NONLINEARITIES}, "
                         f"got {nonlinearity!r}")
    try:
        distances = tuple(distances)
    except TypeError:
        raise ValueError(f"distances must be (z1, z2) in metres, got {distances!r}") from None
    if len(distances) != 2:
        raise ValueError(f"distances must be (z1, z2) in metres, got {distances!r}")
    return distances


class Optics(Simulator):
    """Diffractive free-space optics: SLM, diffuser, nonlinear layer, camera regions.

    Args:
        n_in: Number of SLM input blocks (input vector length).
        n_out: Number of camera detector regions (output vector length).
        grid: ``(H, W)`` SLM and camera pixels; by default square, 32 or enough for one
            pixel per input block and per detector region (:func:`default_grid`).
        encoding: ``"phase"`` (phase SLM) or ``"amplitude"`` (amplitude SLM).
        nonlinearity: ``"saturable"`` (saturable absorber), ``"shg"`` (second-harmonic
            generation) or ``"none"``.
        pad: Zero pixels added on every side of the aperture for propagation.
        pitch: SLM and camera pixel pitch, metres.
        wavelength: Illumination wavelength, metres (the SHG light has half of it).
        distances: ``(SLM -> nonlinear layer, nonlinear layer -> camera)``, metres.
        intensity: Illumination intensity in units of ``I_ref`` (the absorber's
            saturation intensity); sets how nonlinear the layer is.
        optical_depth: Small-signal optical depth of the saturable absorber.
        phase_range: Phase delay in radians of an input at ``in_max`` (``in_min`` gives
            0), for ``encoding="phase"``.
        diffuser: Strength of the fixed random phase plate on the SLM plane: phases
            uniform in ``[0, 2 pi diffuser)``; ``0`` removes it.
        band_limit: Cut under-sampled frequencies of the transfer functions.
        noise: Standard deviation of additive Gaussian camera noise, in output units;
            ``0`` makes the device deterministic.
        seed: Seeds the diffuser and the noise.
        in_range: Inclusive input range ``(in_min, in_max)``.
        max_batch: Largest batch simulated at once.
        frame_rate: SLM refresh and camera frame rate in Hz: one sample per frame, so
            the lab time is ``1 / frame_rate`` seconds per sample.
        laser_power: Laser power in watts; the energy per sample is
            ``laser_power / frame_rate`` joules.
        dtype: ``torch.float32`` (complex64 fields, default) or ``torch.float64``
            (complex128).

    Shape:
        - Input: ``(B, n_in)`` SLM values in ``in_range``.
        - Output: ``(B, n_out)`` mean intensity per detector region, in units of ``I_ref``
          (``>= 0`` without noise).

    Parameters (``info.params``):
        mask: ``(H, W)`` phase the SLM adds to each pixel, radians, in
            ``[0, 2 pi max(1, diffuser)]``; default: the diffuser's phases.

    Examples::

        >>> import torch
        >>> from phys.simulators.optics import Optics
        >>> optics = Optics(n_in=4, n_out=9, grid=(12, 12), pad=4, seed=1)
        >>> optics.query(torch.rand(10, 4) * 2 - 1).shape
        torch.Size([10, 9])
        >>> Optics(n_in=4, n_out=16, grid=(3, 3))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: grid (3, 3) is too small for n_out=16 detector regions: ...
    """

    name = "optics"

    def __init__(
        self,
        n_in: int = 16,
        n_out: int = 16,
        grid: tuple[int, int] | None = None,
        *,
        encoding: Encoding = "phase",
        nonlinearity: Nonlinearity = "saturable",
        pad: int = 16,
        pitch: float = 8e-6,
        wavelength: float = 1.55e-6,
        distances: tuple[float, float] = (1e-3, 1e-3),
        intensity: float = 1.0,
        optical_depth: float = 2.0,
        phase_range: float = math.pi,
        diffuser: float = 1.0,
        band_limit: bool = True,
        noise: float = 0.0,
        seed: int = 0,
        in_range: tuple[float, float] = (-1.0, 1.0),
        max_batch: int = 1024,
        frame_rate: float = 60.0,
        laser_power: float = 1e-3,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        if grid is None and isinstance(n_in, int) and isinstance(n_out, int):
            grid = default_grid(n_in, n_out)
        grid = _check_grid(grid)
        distances = _check_options(pad, encoding, nonlinearity, distances)
        check_number(">0", pitch=pitch, wavelength=wavelength, distance_1=distances[0],
                      distance_2=distances[1], intensity=intensity, phase_range=phase_range,
                      frame_rate=frame_rate)
        check_number(">=0", optical_depth=optical_depth, diffuser=diffuser, noise=noise,
                      laser_power=laser_power)
        extra = {"grid": list(grid), "encoding": encoding, "nonlinearity": nonlinearity,
                 "pad": pad, "pitch": pitch, "wavelength": wavelength,
                 "distances": list(distances), "intensity": intensity,
                 "optical_depth": optical_depth, "phase_range": phase_range,
                 "diffuser": diffuser, "noise": noise, "seed": seed, "frame_rate": frame_rate,
                 "units": "lengths: m; input: SLM value (linear in phase or amplitude); "
                          "output: mean intensity per detector region / I_ref"}
        self.info = simulator_info(self.name, n_in, n_out, in_range=in_range,
                                   max_batch=max_batch, noise=noise, dtype=dtype, extra=extra)
        # DeviceInfo has checked n_in and n_out; now lay the blocks out on the grid
        self._input_index = _block_index(grid, n_in, f"n_in={n_in} SLM input blocks").flatten()
        detector = _block_index(grid, n_out, f"n_out={n_out} detector regions").flatten()
        self.grid, self.pad, self.encoding, self.nonlinearity = grid, pad, encoding, nonlinearity
        self.intensity, self.optical_depth, self.phase_range = intensity, optical_depth, phase_range
        self.noise, self.frame_rate, self.laser_power = noise, frame_rate, laser_power
        self.dtype, self.cdtype = dtype, _COMPLEX[dtype]
        self._build(seed, detector, pitch, wavelength, distances, diffuser, band_limit)
        top = max(2 * math.pi * max(1.0, diffuser), float(self.diffuser_phase.max()))
        mask = ParamSpec("mask", grid, 0.0, top, units="rad")  # (top: rounding to dtype)
        self._declare_params({"mask": (mask, self.diffuser_phase)}, dtype)

    # -- construction -----------------------------------------------------------------
    def _build(self, seed: int, detector: torch.Tensor, pitch: float, wavelength: float,
               distances: tuple[float, float], diffuser: float, band_limit: bool) -> None:
        (h, w), p, n_in = self.grid, self.pad, self.info.n_in
        window = (h + 2 * p, w + 2 * p)
        gen = torch.Generator().manual_seed(seed)
        phases = 2 * math.pi * diffuser * torch.rand(h, w, generator=gen, dtype=torch.float64)
        #: Fixed diffuser phase ``(H, W)`` in radians on the SLM plane.
        self.diffuser_phase = phases.to(self.dtype)
        # illumination times diffuser, zero outside the aperture: (M, N) complex
        carrier = torch.polar(torch.full_like(phases, math.sqrt(self.intensity)), phases)
        self._carrier = F.pad(carrier, (p, p, p, p)).to(self.cdtype)
        # window pixel -> SLM block; pixels outside the aperture read the extra index n_in
        self._pixel_block = F.pad(self._input_index.view(h, w), (p, p, p, p), value=n_in)
        out_wavelength = wavelength / 2 if self.nonlinearity == "shg" else wavelength
        #: Transfer functions ``(H + 2 pad, W + 2 pad)``: SLM -> layer, layer -> camera.
        self.transfer_in = transfer_function(window, pitch, wavelength, distances[0],
                                             band_limit=band_limit, dtype=self.cdtype)
        self.transfer_out = transfer_function(window, pitch, out_wavelength, distances[1],
                                              band_limit=band_limit, dtype=self.cdtype)
        # detector averaging over the whole window (M*N, n_out): column k averages the
        # pixels of region k; pixels outside the camera have weight 0
        one_hot = F.one_hot(detector, self.info.n_out + 1)[:, :-1].to(self.dtype)
        #: Pixels per detector region ``(n_out,)``.
        self.region_pixels = one_hot.sum(0).to(torch.int64)
        average = (one_hot / one_hot.sum(0)).view(h, w, -1).permute(2, 0, 1)
        self._detector = F.pad(average, (p, p, p, p)).flatten(1).T.contiguous()
        self._noise_gen = torch.Generator().manual_seed(seed + 1)

    def _illumination(self, phase: torch.Tensor) -> torch.Tensor:
        """Illumination times the mask ``exp(i phase)``, zero outside the aperture."""
        p = self.pad
        amplitude = torch.full_like(phase, math.sqrt(self.intensity))
        return F.pad(torch.polar(amplitude, phase), (p, p, p, p)).to(self.cdtype)

    def _params_changed(self, names: tuple[str, ...]) -> None:
        """The carrier from the set mask."""
        mask = self._param_values["mask"]
        self.diffuser_phase = mask.detach().to(self.dtype).clone()
        self._carrier = self._illumination(mask.double()).to(mask.device)

    # -- physics ----------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Field just after the SLM and the diffuser, zero outside the aperture.

        Shape: ``x (b, n_in)`` validated inputs -> ``(b, H + 2 pad, W + 2 pad)`` complex,
        in units of ``sqrt(I_ref)``.
        """
        lo, hi = self.info.in_min, self.info.in_max
        s = (x - lo) / (hi - lo)
        if self.encoding == "phase":
            block = torch.polar(torch.ones_like(s), self.phase_range * s)
        else:
            block = torch.complex(s, torch.zeros_like(s))
        block = F.pad(block, (0, 1))  # index n_in: dark pixels outside the aperture
        carrier = self._carrier
        if self._param_given("mask"):  # differentiably, from the given mask
            carrier = self._illumination(self._param("mask").to(self.dtype))
        return block[:, self._pixel_block] * carrier

    def nonlinear(self, field: torch.Tensor) -> torch.Tensor:
        """The nonlinear layer, pixel by pixel (see the module docstring); keeps the shape."""
        if self.nonlinearity == "saturable":
            re_im = torch.view_as_real(field)
            i = re_im.square().sum(-1, keepdim=True)
            return torch.view_as_complex(re_im * torch.exp(-0.5 * self.optical_depth / (1 + i)))
        if self.nonlinearity == "shg":
            return field * field
        return field

    def detect(self, field: torch.Tensor) -> torch.Tensor:
        """Mean intensity per detector region.

        Shape: ``field (b, H + 2 pad, W + 2 pad)`` complex at the camera plane ->
        ``(b, n_out)`` in units of ``I_ref``; light outside the central ``H x W`` is lost.
        """
        intensity = torch.view_as_real(field).square().sum(-1)
        return intensity.flatten(1) @ self._detector

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x.to(self.dtype)
        field = propagate(self.encode(u), self.transfer_in)
        field = propagate(self.nonlinear(field), self.transfer_out)
        y = self.detect(field)
        if self.noise > 0:
            # drawn on the host: the same noise for a seed on every torch device
            noise = torch.randn(y.shape, generator=self._noise_gen, dtype=y.dtype,
                                device=self._noise_gen.device)
            y = y + self.noise * noise.to(y.device)
        return y

    def _lab_cost(self, n_samples: int) -> tuple[float, float]:
        """One SLM frame and one camera exposure per sample at ``frame_rate``."""
        seconds = n_samples / self.frame_rate
        return seconds, seconds * self.laser_power


def _check_grid(grid: tuple[int, int], key: str = "grid") -> tuple[int, int]:
    try:
        h, w = grid
    except (TypeError, ValueError):
        raise ValueError(f"{key} must be (H, W) pixels, got {grid!r}") from None
    for value in (h, w):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{key} must be (H, W) positive ints, got {grid!r}")
    return h, w
