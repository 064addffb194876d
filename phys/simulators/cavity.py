"""Chaotic multiple-scattering cavity with saturable nonlinear scatterers.

A microwave or acoustic cavity (as in PhyLL, Momeni et al. 2023) in numbers. ``n_in``
sources with real amplitudes ``u`` drive the cavity; ``K`` small scatterers see the
field ``e`` that solves the self-consistent multiple-scattering equation

    e = A u + G (alpha(|e|^2) * e),      alpha(I) = alpha0 / (1 + I / I_sat),

and ``n_out`` detectors read the intensity ``|B u + C (alpha(|e|^2) * e)|^2``. ``A``,
``G``, ``B`` and ``C`` are fixed random complex matrices drawn from ``seed``. Intensities
are in units of ``I_sat`` (so ``I_sat = 1``) and ``alpha0 = 1``: the scatterers'
strength and phase live in ``G``. ``G`` has zero diagonal and spectral norm
``coupling < 1``; since ``|d(alpha(|e|^2) e)/de| <= 1`` for every field, the map is a
contraction for every input and the fixed-point iteration converges over the whole
input range.

Physical parameter ``phase`` (``info.params``; :meth:`Cavity.set`): each scatterer's
response phase ``phi_k`` in radians, ``alpha_k(I) = exp(i phi_k) / (1 + I)``, as tuning a
resonant scatterer's detuning turns the phase of what it re-radiates. A phase leaves
``|d(alpha(|e|^2) e)/de|`` as it is, so the cavity converges for every setting. The
default ``phi = 0`` is the fixed cavity above.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import torch

from phys.device import ParamSpec
from phys.simulators._checks import check_int, check_number
from phys.simulators.base import Simulator, simulator_info

__all__ = ["Cavity"]

#: Rows solved together; larger blocks fall out of the CPU caches.
SOLVE_BLOCK_ROWS = 512


@lru_cache(maxsize=1)
def _fast_bf16() -> bool:
    """True when this CPU has native bf16 matrix products (else bf16 is slow)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _complex_as_real(m: torch.Tensor) -> torch.Tensor:
    """Real block matrix R with ``[Re v, Im v] @ R == [Re(v @ M^T), Im(v @ M^T)]``.

    Shape: ``m (p, q)`` complex -> ``(2q, 2p)`` real.
    """
    mt = m.T
    top = torch.cat([mt.real, mt.imag], dim=1)
    bottom = torch.cat([-mt.imag, mt.real], dim=1)
    return torch.cat([top, bottom], dim=0).contiguous()


class Cavity(Simulator):
    """Chaotic cavity with ``K`` saturable scatterers, ``n_in`` sources, ``n_out`` detectors.

    Args:
        n_in: Number of sources (input vector length).
        n_out: Number of detectors (output vector length).
        n_scatterers: ``K``, number of nonlinear scatterers inside the cavity.
        coupling: Spectral norm of the scatterer coupling ``G`` (0 < coupling < 1).
            Larger means stronger multiple scattering and more iterations.
        drive: Mean incident intensity at a scatterer, in units of ``I_sat``, for
            inputs drawn uniformly from the input range; sets how saturated (how
            nonlinear) the scatterers are.
        noise: Standard deviation of additive Gaussian detector noise, in output units
            (the mean noise-free output is about 1). ``0`` makes the device
            deterministic.
        seed: Seeds the random matrices (and the noise generator).
        in_range: Inclusive input range ``(in_min, in_max)``, source amplitude units.
        tol: Iterate until the largest change of the scattered field is below ``tol``
            times its largest value, for every sample.
        max_iter: Iteration cap; exceeding it raises ``RuntimeError``.
        max_batch: Largest batch simulated at once.
        sample_seconds: Estimated lab time per measured sample (settling and
            detection of a real cavity), reported in ``stats.lab_seconds``.
        sample_joules: Estimated source energy per measured sample.
        dtype: ``torch.float32`` (default) or ``torch.float64`` for the arithmetic.

    Shape:
        - Input: ``(B, n_in)`` source amplitudes in ``in_range``.
        - Output: ``(B, n_out)`` detector intensities (``>= 0`` without noise).

    Parameters (``info.params``):
        phase: ``(n_scatterers,)`` response phase of each scatterer, radians, in
            ``[-pi, pi]``; default 0.

    Examples::

        >>> import torch
        >>> from phys.simulators.cavity import Cavity
        >>> cav = Cavity(n_in=8, n_out=4, n_scatterers=32, seed=1)
        >>> cav.query(torch.rand(10, 8) * 2 - 1).shape
        torch.Size([10, 4])
        >>> cav.set("phase", torch.full((32,), 0.5))
        >>> cav.get("phase")[:2]
        tensor([0.5000, 0.5000])
    """

    name = "cavity"

    def __init__(
        self,
        n_in: int = 16,
        n_out: int = 32,
        n_scatterers: int = 64,
        *,
        coupling: float = 0.8,
        drive: float = 4.0,
        noise: float = 0.0,
        seed: int = 0,
        in_range: tuple[float, float] = (-1.0, 1.0),
        tol: float = 1e-4,
        max_iter: int = 200,
        max_batch: int = 4096,
        sample_seconds: float = 1e-3,
        sample_joules: float = 1e-5,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        check_int(1, n_scatterers=n_scatterers, max_iter=max_iter)
        if not 0.0 <= coupling < 1.0:
            raise ValueError(f"coupling must be in [0, 1) so the cavity converges, got {coupling}")
        check_number(">0", drive=drive, tol=tol)
        check_number(">=0", noise=noise, sample_seconds=sample_seconds,
                     sample_joules=sample_joules)
        self.info = simulator_info(
            self.name, n_in, n_out, in_range=in_range, max_batch=max_batch, noise=noise,
            dtype=dtype, extra={
                "n_scatterers": n_scatterers,
                "coupling": coupling,
                "drive": drive,
                "noise": noise,
                "seed": seed,
                "units": "input: source amplitude; output: intensity / I_sat",
            },
        )
        self.n_scatterers, self.tol, self.max_iter = n_scatterers, tol, max_iter
        self.noise, self.sample_seconds, self.sample_joules = noise, sample_seconds, sample_joules
        self.dtype = dtype
        self.last_iterations = 0
        self._build(seed, coupling, drive, self.info.in_min, self.info.in_max)
        phase = ParamSpec("phase", (n_scatterers,), -math.pi, math.pi, units="rad")
        self._declare_params({"phase": (phase, torch.zeros(n_scatterers))}, dtype)
        self._params_changed(("phase",))

    # -- construction -----------------------------------------------------------------
    def _build(self, seed: int, coupling: float, drive: float, lo: float, hi: float) -> None:
        k, n_in, n_out = self.n_scatterers, self.info.n_in, self.info.n_out
        gen = torch.Generator().manual_seed(seed)
        cdt = torch.complex128

        def randc(*shape: int) -> torch.Tensor:
            return torch.randn(*shape, dtype=cdt, generator=gen)

        # mean of u^2 for u uniform on [lo, hi]; sets the incident intensity scale
        mean_u2 = (hi**3 - lo**3) / (3 * (hi - lo))
        a = randc(k, n_in) * math.sqrt(drive / (n_in * mean_u2))
        g = randc(k, k)
        g.fill_diagonal_(0)
        norm = torch.linalg.matrix_norm(g, ord=2)
        g = g * (coupling / norm) if coupling > 0 and norm > 0 else torch.zeros_like(g)
        # detectors: direct path and scattered path, each contributing ~half the power
        b = randc(n_out, n_in) * math.sqrt(0.5 / (n_in * mean_u2))
        c = randc(n_out, k) * math.sqrt(0.5 / (k * drive / (1 + drive) ** 2 + 1e-12))
        rdt = self.dtype
        # real inputs only need the first half of the real block form: (n_in, 2K)
        self._a = torch.cat([a.T.real, a.T.imag], dim=1).to(rdt).contiguous()
        self._g = _complex_as_real(g).to(rdt)  # (2K, 2K)
        self._bc_in = torch.cat([b.T.real, b.T.imag], dim=1).to(rdt).contiguous()  # (n_in, 2n_out)
        self._bc_s = _complex_as_real(c).to(rdt)  # (2K, 2n_out)
        self._g_bf16 = self._g.to(torch.bfloat16) if rdt == torch.float32 else None
        self._noise_gen = torch.Generator().manual_seed(seed + 1)

    def _params_changed(self, names: tuple[str, ...]) -> None:
        """Keep ``(cos phi, sin phi)`` of the phases, or ``None`` while all are 0 (the
        fixed cavity: its arithmetic is then exactly as without phases)."""
        phase = self._param_values["phase"]
        self._rotation = None if not bool(phase.any()) else (phase.cos(), phase.sin())

    # -- physics ----------------------------------------------------------------------
    def _phase_rotation(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(cos phi, sin phi)`` for the pass running now, ``None`` for no rotation."""
        if self._param_given("phase"):
            phase = self._param("phase")
            return phase.cos(), phase.sin()
        return self._rotation

    def _scatter(self, e: torch.Tensor,
                 rotation: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """Scattered field ``alpha(|e|^2) * e`` on the real layout ``(b, 2K)``, turned by
        the scatterers' phases ``rotation = (cos phi, sin phi)`` when given."""
        k = self.n_scatterers
        ev = e.view(-1, 2, k)
        gain = ev.square().sum(1).add_(1.0).reciprocal_()  # alpha(I) = 1 / (1 + I)
        if rotation is None:
            return (ev * gain.unsqueeze(1)).view(-1, 2 * k)
        cos, sin = (r.to(e.dtype) * gain for r in rotation)
        re, im = ev[:, 0], ev[:, 1]
        return torch.cat([re * cos - im * sin, re * sin + im * cos], dim=1)

    def _step(self, s: torch.Tensor, e_in: torch.Tensor,
              rotation: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """One fixed-point step on the scattered field ``s``: ``s -> alpha(|e|^2) e``."""
        return self._scatter(torch.addmm(e_in, s, self._g), rotation)

    def _solve(self, e_in: torch.Tensor,
               rotation: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """Scattered field at the fixed point, without autograd. ``e_in (b, 2K)``.

        On CPUs with native bf16 products the iteration runs in three phases (elsewhere,
        a GPU included, only the third):

        1. plain iterations with bf16 products until the field changes by < 3e-2 (bf16
           rounding, ~4e-3, is all that is left then);
        2. refinement: ``G s`` is computed once in float32 and then updated with bf16
           products of the *change* ``s_new - s``, whose rounding error is ~4e-3 of a
           change that shrinks geometrically, until the change is below ``tol``;
        3. float32 iterations until the change is below ``tol``: the answer is always
           verified by an exact step, as without bf16.
        """
        s = self._scatter(e_in.clone(), rotation)
        iterations = 1
        if (self._g_bf16 is not None and s.shape[0] >= 64 and s.device.type == "cpu"
                and _fast_bf16()):
            g16 = self._g_bf16
            for _ in range(self.max_iter):
                s_new = self._scatter((s.to(torch.bfloat16) @ g16).float().add_(e_in), rotation)
                iterations += 1
                done = _converged(s_new, s, 3e-2)
                s = s_new
                if done:
                    break
            gs = s @ self._g
            s_new = self._scatter(gs + e_in, rotation)
            iterations += 1
            for _ in range(self.max_iter):
                gs += ((s_new - s).to(torch.bfloat16) @ g16).float()
                s = s_new
                s_new = self._scatter(gs + e_in, rotation)
                iterations += 1
                if _converged(s_new, s, self.tol):
                    break
            s = s_new
        for _ in range(self.max_iter):
            s_new = self._step(s, e_in, rotation)
            iterations += 1
            if _converged(s_new, s, self.tol):
                self.last_iterations = iterations
                return s_new
            s = s_new
        raise RuntimeError(
            f"cavity did not converge to tol={self.tol} in {self.max_iter} iterations"
        )

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x.to(self.dtype)
        e_in = u @ self._a
        rotation = self._phase_rotation()
        with torch.no_grad():
            # blocks of rows small enough to stay in cache: about 1.5x faster than one
            # big block on a 2-core CPU; the rows are independent anyway
            fixed = None if rotation is None else tuple(r.detach() for r in rotation)
            blocks, iterations = [], []
            for block in e_in.detach().split(SOLVE_BLOCK_ROWS):
                blocks.append(self._solve(block, fixed))
                iterations.append(self.last_iterations)
            s_star = torch.cat(blocks)
            self.last_iterations = max(iterations)
        tracked = u.requires_grad or (rotation is not None and rotation[0].requires_grad)
        if torch.is_grad_enabled() and tracked:
            s = _implicit_fixed_point(lambda s_: self._step(s_, e_in, rotation), s_star)
        else:
            s = s_star
        field = torch.addmm(u @ self._bc_in, s, self._bc_s).view(-1, 2, self.info.n_out)
        y = field.square().sum(1)
        if self.noise > 0:
            # drawn on the host: the same noise for a seed on every torch device
            noise = torch.randn(y.shape, generator=self._noise_gen, dtype=y.dtype,
                                device=self._noise_gen.device)
            y = y + self.noise * noise.to(y.device)
        return y

    def _lab_cost(self, n_samples: int) -> tuple[float, float]:
        return n_samples * self.sample_seconds, n_samples * self.sample_joules


def _converged(new: torch.Tensor, old: torch.Tensor, tol: float) -> bool:
    change = (new - old).abs_().amax(dim=1)
    scale = new.abs().amax(dim=1).mul_(tol).clamp_min_(1e-30)
    return bool(change.le_(scale).all())


def _implicit_fixed_point(step: Callable[[torch.Tensor], torch.Tensor], s_star: torch.Tensor,
                          iters: int = 200, tol: float = 1e-7) -> torch.Tensor:
    """Attach exact gradients to a fixed point ``s* = step(s*)`` (implicit function theorem).

    The forward value is ``step(s*)``; in backward, the incoming gradient ``g`` is
    replaced by the solution ``v`` of ``v = g + J^T v`` with ``J = d step / d s`` at
    ``s*``, found by the same contraction that makes the forward converge.
    """
    s = step(s_star)
    s0 = s_star.detach().requires_grad_(True)
    with torch.enable_grad():
        f0 = step(s0)

    def adjoint(grad: torch.Tensor) -> torch.Tensor:
        v = grad
        for _ in range(iters):
            (jtv,) = torch.autograd.grad(f0, s0, v, retain_graph=True)
            v_new = grad + jtv
            if (v_new - v).abs().max() <= tol * v_new.abs().max().clamp_min(1e-30):
                return v_new
            v = v_new
        return v

    if s.requires_grad:
        s.register_hook(adjoint)
    return s
