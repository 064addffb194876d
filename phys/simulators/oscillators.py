"""Network of coupled Duffing oscillators: a vibrating mechanical plate in numbers.

The mechanical plate of physics-aware training (Wright et al., *Nature* 601:549, 2022)
is a set of coupled, weakly damped, nonlinear vibrational modes driven by a speaker.
Here ``N`` oscillators with displacements ``x_i`` obey

    x_i'' + gamma x_i' + omega_i^2 x_i + beta x_i^3 + sum_j K_ij (x_i - x_j) = F_i cos(Omega t),

with fixed random natural frequencies ``omega_i`` (uniform in ``omega_range``) and a
fixed random symmetric coupling ``K`` (``K_ij >= 0``, zero diagonal, scaled so that the
coupling Laplacian ``L = diag(K 1) - K`` has spectral norm ``coupling``). Both are drawn
from ``seed``. The input vector ``u`` sets the drive amplitudes through a fixed random
drive matrix ``D``: ``F = D u``. The plate starts at rest, is driven for ``periods``
periods of the drive and integrated with classical fourth-order Runge-Kutta
(``steps_per_period`` steps per period). The outputs are the response amplitudes at the
drive frequency of ``n_out`` readout oscillators, as a lock-in amplifier measures them
over the last ``readout_periods`` periods:

    A_i = (2 / T) |integral x_i(t) exp(-i Omega t) dt|       (T: whole drive periods),

with the integral taken by the trapezoid rule on the RK4 samples.

Units: time is measured in units of ``1 / omega_0`` with ``omega_0 = 2 pi frequency_hz``
the plate's reference angular frequency, so ``omega_i``, ``Omega``, ``gamma`` are in
units of ``omega_0`` and ``K`` in units of ``omega_0^2``. Displacements are in units of
the plate's length scale ``x_0`` (``beta`` is in units of ``omega_0^2 / x_0^2``; with
the default ``beta = 1`` the cubic force equals the linear one at ``|x| = 1``). Forces
are in units of ``omega_0^2 x_0`` (per unit mass).

Physical parameter ``frequency`` (``info.params``; :meth:`Oscillators.set`): the natural
angular frequencies ``omega_i`` in units of ``omega_0``, tunable within ``omega_range``
(capped where RK4 would no longer be stable), as a bias voltage or a tension tunes a
mode; the default is the seeded draw above.

Stability: with the stiffness matrix ``S = diag(omega^2) + L`` the fastest linear rate is
``rho = max(sqrt(lambda_max(S)), gamma)``; RK4 is stable for ``rho dt < 2.83``, and the
constructor asks ``rho dt <= 2`` to leave room for the Duffing stiffening ``3 beta x^2``.
"""

from __future__ import annotations

import math

import torch

from phys.device import ParamSpec
from phys.simulators._checks import check_int, check_number
from phys.simulators.base import Simulator, simulator_info

__all__ = ["Oscillators"]

#: Largest ``rho * dt`` accepted; RK4's stability limit on the imaginary axis is 2 sqrt(2).
MAX_STEP_RATE = 2.0
#: Fewest RK4 steps per drive period: the readout then separates harmonics up to the 7th.
MIN_STEPS_PER_PERIOD = 8
#: The ring-down after a measurement lasts until the motion decays by this factor.
RING_DOWN_FACTOR = 1e3


def _check_sizes(omega_range: tuple[float, float], n_out: int, n_oscillators: int,
                 periods: int, readout_periods: int,
                 steps_per_period: int) -> tuple[float, float]:
    """``ValueError`` naming the option unless these agree; the frequency range."""
    lo_w, hi_w = (float(w) for w in omega_range)
    if not (math.isfinite(lo_w) and math.isfinite(hi_w) and 0 < lo_w <= hi_w):
        raise ValueError(f"omega_range must be (low, high) with 0 < low <= high, "
                         f"got {omega_range}")
    if isinstance(n_out, int) and n_out > n_oscillators:
        raise ValueError(f"n_out={n_out} readout oscillators need n_oscillators >= "
                         f"{n_out}, got n_oscillators={n_oscillators}")
    if readout_periods > periods:
        raise ValueError(f"readout_periods={readout_periods} must be <= periods={periods}")
    if steps_per_period < MIN_STEPS_PER_PERIOD:
        raise ValueError(f"steps_per_period must be >= {MIN_STEPS_PER_PERIOD} so the "
                         f"readout separates the drive harmonics, got {steps_per_period}")
    return lo_w, hi_w


class Oscillators(Simulator):
    """Coupled Duffing oscillators driven at one frequency, read out by a lock-in.

    Args:
        n_in: Number of drive inputs (input vector length).
        n_out: Number of readout oscillators (output vector length), ``<= n_oscillators``.
        n_oscillators: ``N``, number of coupled oscillators (plate modes); by default
            ``max(32, n_out)``.
        omega_range: ``(low, high)`` range of the natural angular frequencies
            ``omega_i``, in units of ``omega_0``.
        drive_frequency: ``Omega``, angular frequency of the drive, in units of ``omega_0``.
        damping: ``gamma > 0``, velocity damping rate in units of ``omega_0`` (quality
            factor ``omega_i / gamma``); transients decay as ``exp(-gamma t / 2)``.
        beta: Duffing (cubic, hardening) stiffness, ``>= 0``; ``0`` makes the plate linear.
        coupling: Spectral norm of the coupling Laplacian, in units of ``omega_0^2``;
            ``0`` leaves the oscillators independent.
        drive: Force scale: the drive matrix ``D`` has entries
            ``drive * N(0, 1) / sqrt(n_in)``, so the defaults give response amplitudes of
            order 1 (where the Duffing term matters).
        periods: Drive duration in drive periods (plate starts at rest).
        readout_periods: Trailing periods over which the amplitude is measured.
        steps_per_period: RK4 steps per drive period; sets ``dt = 2 pi / (Omega *
            steps_per_period)``.
        noise: Standard deviation of additive Gaussian readout noise, in output units;
            ``0`` makes the device deterministic.
        seed: Seeds the frequencies, couplings, drive matrix, readout choice and noise.
        in_range: Inclusive input range ``(in_min, in_max)``, in drive-amplitude units.
        max_batch: Largest batch simulated at once.
        frequency_hz: ``omega_0 / 2 pi`` in Hz; only sets the lab-time estimate.
        dtype: ``torch.float32`` (default) or ``torch.float64`` for the arithmetic.

    Shape:
        - Input: ``(B, n_in)`` drive amplitudes in ``in_range``.
        - Output: ``(B, n_out)`` response amplitudes at the drive frequency, in units of
          ``x_0`` (``>= 0`` without noise).

    Parameters (``info.params``):
        frequency: ``(n_oscillators,)`` natural angular frequencies ``omega_i``, units of
            ``omega_0``, in ``omega_range`` (the top capped so that RK4 stays stable
            with every frequency at it); default: the seeded draw.

    Examples::

        >>> import torch
        >>> from phys.simulators.oscillators import Oscillators
        >>> plate = Oscillators(n_in=4, n_out=3, n_oscillators=8, seed=1)
        >>> plate.query(torch.rand(10, 4) * 2 - 1).shape
        torch.Size([10, 3])
        >>> plate.query(torch.zeros(4)).abs().max().item()
        0.0
    """

    name = "oscillators"

    def __init__(
        self,
        n_in: int = 16,
        n_out: int = 16,
        n_oscillators: int | None = None,
        *,
        omega_range: tuple[float, float] = (0.7, 1.3),
        drive_frequency: float = 1.0,
        damping: float = 0.2,
        beta: float = 1.0,
        coupling: float = 0.2,
        drive: float = 0.5,
        periods: int = 12,
        readout_periods: int = 2,
        steps_per_period: int = 16,
        noise: float = 0.0,
        seed: int = 0,
        in_range: tuple[float, float] = (-1.0, 1.0),
        max_batch: int = 4096,
        frequency_hz: float = 1e3,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        if n_oscillators is None and isinstance(n_out, int):
            n_oscillators = max(32, n_out)
        check_int(1, n_oscillators=n_oscillators, periods=periods,
                            readout_periods=readout_periods, steps_per_period=steps_per_period)
        check_number(">0", drive_frequency=drive_frequency, damping=damping, drive=drive,
                      frequency_hz=frequency_hz)
        check_number(">=0", beta=beta, coupling=coupling, noise=noise)
        lo_w, hi_w = _check_sizes(omega_range, n_out, n_oscillators, periods,
                                  readout_periods, steps_per_period)
        extra = {"n_oscillators": n_oscillators, "omega_range": [lo_w, hi_w],
                 "drive_frequency": drive_frequency, "damping": damping, "beta": beta,
                 "coupling": coupling, "drive": drive, "periods": periods,
                 "readout_periods": readout_periods, "steps_per_period": steps_per_period,
                 "noise": noise, "seed": seed, "frequency_hz": frequency_hz,
                 "units": "time 1/omega_0 (omega_0 = 2 pi frequency_hz); input: drive "
                          "amplitude; output: displacement amplitude at the drive frequency"}
        self.info = simulator_info(self.name, n_in, n_out, in_range=in_range,
                                   max_batch=max_batch, noise=noise, dtype=dtype, extra=extra)
        self.n_oscillators = n_oscillators
        self.drive_frequency, self.damping, self.beta = drive_frequency, damping, beta
        self.periods, self.readout_periods = periods, readout_periods
        self.steps_per_period, self.noise, self.frequency_hz = steps_per_period, noise, frequency_hz
        self.dtype = dtype
        #: RK4 time step, in units of ``1 / omega_0``.
        self.dt = 2 * math.pi / (drive_frequency * steps_per_period)
        self._build(seed, (lo_w, hi_w), coupling, drive)
        self._check_step()
        # the default draw passed the exact check above, so it stays inside the range
        top = max(self._stable_frequency(hi_w), float(self.omega.max()))
        low = min(lo_w, float(self.omega.min()))  # (rounded to dtype, it may sit just below)
        spec = ParamSpec("frequency", (n_oscillators,), low, top, units="omega_0")
        self._declare_params({"frequency": (spec, self.omega)}, dtype)

    # -- construction -----------------------------------------------------------------
    def _build(self, seed: int, omega_range: tuple[float, float], coupling: float,
               drive: float) -> None:
        n, n_in, n_out = self.n_oscillators, self.info.n_in, self.info.n_out
        gen = torch.Generator().manual_seed(seed)
        f64 = torch.float64
        lo_w, hi_w = omega_range
        omega = lo_w + (hi_w - lo_w) * torch.rand(n, generator=gen, dtype=f64)
        k = torch.rand(n, n, generator=gen, dtype=f64).triu(1)
        k = k + k.T
        laplacian = torch.diag(k.sum(1)) - k
        norm = torch.linalg.eigvalsh(laplacian)[-1] if n > 1 else torch.tensor(0.0, dtype=f64)
        scale = coupling / float(norm) if coupling > 0 and norm > 0 else 0.0
        d = torch.randn(n, n_in, generator=gen, dtype=f64) * (drive / math.sqrt(n_in))
        readout = torch.randperm(n, generator=gen)[:n_out].sort().values
        rdt = self.dtype
        #: Natural angular frequencies ``omega_i`` ``(N,)``, units of ``omega_0``.
        self.omega = omega.to(rdt)
        #: Symmetric coupling ``K`` ``(N, N)``, units of ``omega_0^2``.
        self.coupling_matrix = (k * scale).to(rdt)
        #: Drive matrix ``D`` ``(N, n_in)``: force amplitudes ``F = D u``.
        self.drive_matrix = d.to(rdt).contiguous()
        #: Indices of the readout oscillators ``(n_out,)``.
        self.readout = readout
        self._laplacian64 = laplacian * scale
        self._laplacian = self._laplacian64.to(rdt)
        # stiffness S = diag(omega^2) + L (symmetric, positive definite)
        self._stiffness64 = torch.diag(omega.square()) + self._laplacian64
        self._stiffness = self._stiffness64.to(rdt).contiguous()
        self._drive_t = self.drive_matrix.T.contiguous()  # (n_in, N)
        self._noise_gen = torch.Generator().manual_seed(seed + 1)

    def _stable_frequency(self, high: float) -> float:
        """The largest frequency up to ``high`` at which every oscillator may sit with
        RK4 stable: ``sqrt(omega^2 + ||L||) dt <= MAX_STEP_RATE``."""
        norm = float(torch.linalg.eigvalsh(self._laplacian64)[-1]) if self.n_oscillators > 1 \
            else 0.0
        limit = (MAX_STEP_RATE / self.dt) ** 2 - max(norm, 0.0)
        top = math.sqrt(limit) if limit > 0 else 0.0
        return min(high, top)

    def _params_changed(self, names: tuple[str, ...]) -> None:
        """Rebuild the stiffness ``S = diag(omega^2) + L`` from the set frequencies."""
        omega = self._param_values["frequency"]
        self.omega = omega.detach().clone()
        lap = self._laplacian64.to(omega.device)
        self._stiffness64 = torch.diag(omega.double().square()) + lap
        self._stiffness = self._stiffness64.to(self.dtype).contiguous()

    def _check_step(self) -> None:
        omega_max = math.sqrt(float(torch.linalg.eigvalsh(self._stiffness64)[-1]))
        rate = max(omega_max, self.damping)
        if rate * self.dt > MAX_STEP_RATE:
            need = math.ceil(2 * math.pi * rate / (self.drive_frequency * MAX_STEP_RATE))
            raise ValueError(
                f"RK4 step too long for the fastest mode: steps_per_period="
                f"{self.steps_per_period} gives dt={self.dt:.3g} and rate*dt="
                f"{rate * self.dt:.3g} > {MAX_STEP_RATE} (fastest rate {rate:.3g} from "
                f"omega_range, coupling and damping); use steps_per_period >= "
                f"{max(need, MIN_STEPS_PER_PERIOD)}"
            )

    # -- physics ----------------------------------------------------------------------
    @property
    def duration(self) -> float:
        """Drive duration in units of ``1 / omega_0``."""
        return self.periods * self.steps_per_period * self.dt

    def _accel(self, x: torch.Tensor, v: torch.Tensor, force: torch.Tensor,
               stiffness: torch.Tensor) -> torch.Tensor:
        """``x''`` for displacements ``x``, velocities ``v`` and drive ``force`` ``(b, N)``."""
        rest = force - self.damping * v - self.beta * x.pow(3)
        return torch.addmm(rest, x, stiffness, alpha=-1.0)

    def _rk4_step(self, x: torch.Tensor, v: torch.Tensor, amp: torch.Tensor,
                  c0: float, c_half: float, c1: float,
                  stiffness: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One RK4 step; ``c0, c_half, c1`` are ``cos(Omega t)`` at ``t, t + dt/2, t + dt``."""
        h, s = self.dt, stiffness
        a1 = self._accel(x, v, amp * c0, s)
        v2 = v + (h / 2) * a1
        a2 = self._accel(x + (h / 2) * v, v2, amp * c_half, s)
        v3 = v + (h / 2) * a2
        a3 = self._accel(x + (h / 2) * v2, v3, amp * c_half, s)
        v4 = v + h * a3
        a4 = self._accel(x + h * v3, v4, amp * c1, s)
        x_new = x + (h / 6) * (v + 2 * (v2 + v3) + v4)
        v_new = v + (h / 6) * (a1 + 2 * (a2 + a3) + a4)
        return x_new, v_new

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x.to(self.dtype)
        amp = u @ self._drive_t  # (b, N) force amplitudes F = D u
        stiffness = self._stiffness
        if self._param_given("frequency"):  # differentiably, from the given frequencies
            omega = self._param("frequency").to(self.dtype)
            stiffness = torch.diag(omega.square()) + self._laplacian.to(omega.device)
        spp = self.steps_per_period
        total, n_read = self.periods * spp, self.readout_periods * spp
        # cos(Omega t) at half steps: Omega dt = 2 pi / spp, so the table repeats per period
        cos = [math.cos(math.pi * j / spp) for j in range(2 * spp + 1)]
        pos = torch.zeros_like(amp)
        vel = torch.zeros_like(amp)
        samples = []
        for n in range(total):
            if n >= total - n_read:  # the lock-in window: x(t_n) for n = total - M .. total
                samples.append(pos[:, self.readout])
            j = 2 * (n % spp)
            pos, vel = self._rk4_step(pos, vel, amp, cos[j], cos[j + 1], cos[j + 2],
                                      stiffness)
        samples.append(pos[:, self.readout])
        quadratures = self._lock_in(torch.stack(samples, dim=-1), total - n_read)
        if not torch.isfinite(quadratures).all():
            raise RuntimeError(
                "oscillators diverged: the Duffing stiffening made the RK4 step unstable; "
                "increase steps_per_period or reduce drive / beta"
            )
        y = _safe_norm(quadratures)
        if self.noise > 0:
            # drawn on the host: the same noise for a seed on every torch device
            noise = torch.randn(y.shape, generator=self._noise_gen, dtype=y.dtype,
                                device=self._noise_gen.device)
            y = y + self.noise * noise.to(y.device)
        return y

    def _lock_in(self, samples: torch.Tensor, first: int) -> torch.Tensor:
        """In-phase and quadrature amplitudes at ``Omega``: ``(b, n_out, M + 1)`` samples
        ``x(t_k)``, ``k = first .. first + M``, to ``(b, n_out, 2)``.

        The window spans whole drive periods and is integrated with the trapezoid rule:
        exact for every harmonic of the drive below ``steps_per_period / 2`` (the
        periodic steady state), second order in ``dt`` for what is left of the transient.
        """
        m = samples.shape[-1] - 1
        host = torch.device("cpu")
        phase = (2 * math.pi / self.steps_per_period) * torch.arange(
            first, first + m + 1, dtype=torch.float64, device=host)
        weight = torch.full((m + 1,), 2.0 / m, dtype=torch.float64, device=host)
        weight[[0, -1]] = 1.0 / m
        basis = torch.stack([phase.cos(), phase.sin()], dim=1) * weight[:, None]
        # made on the host (tiny), so every torch device reads the same weights
        return samples @ basis.to(device=samples.device, dtype=samples.dtype)

    def _lab_cost(self, n_samples: int) -> tuple[float, None]:
        """Drive window plus ring-down to ``1 / RING_DOWN_FACTOR``, per sample."""
        omega0 = 2 * math.pi * self.frequency_hz
        ring_down = 2 * math.log(RING_DOWN_FACTOR) / self.damping
        return n_samples * (self.duration + ring_down) / omega0, None


def _safe_norm(z: torch.Tensor) -> torch.Tensor:
    """Euclidean norm over the last axis with gradient 0 (not NaN) at the origin."""
    sq = z.square().sum(-1)
    positive = sq > 0
    return torch.where(positive, torch.where(positive, sq, torch.ones_like(sq)).sqrt(),
                       torch.zeros_like(sq))
