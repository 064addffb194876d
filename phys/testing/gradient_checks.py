"""The check of :meth:`~phys.Device.vjp` against central finite differences."""

from __future__ import annotations

import torch

from phys.device import Device, DeviceInfo
from phys.testing.core import CheckContext, any_of, check, expect, unless_differentiable

__all__ = ["FD_NOISE_ULPS", "FD_STEP", "VJP_DIRECTIONS", "VJP_RTOL", "check_vjp"]

#: Central-difference step, as a fraction of the input range ``in_max - in_min``.
FD_STEP = 1e-3

#: Largest error of ``g . (J v)`` relative to its largest value: room for the truncation
#: error of the differences and for iterative solvers that stop at a tolerance.
VJP_RTOL = 1e-2

#: Arithmetic error of one float32 answer, in units in the last place of the largest
#: answer: the floor of the error allowed where the derivative is nearly zero.
FD_NOISE_ULPS = 32

#: Random directions ``v`` along which the derivative is compared.
VJP_DIRECTIONS = 3

_ROWS = 3


def _if_noisy(info: DeviceInfo, has_factory: bool) -> str | None:
    return ("info.stochastic: differences of noisy answers do not measure the derivative"
            if info.stochastic else None)


@check("vjp", skip=any_of(unless_differentiable, _if_noisy))
def check_vjp(device: Device, context: CheckContext) -> None:
    """``vjp(x, g)`` agrees with central differences of ``query``: for random directions
    ``v``, ``vjp(x, g) . v`` equals ``g . (query(x + h v) - query(x - h v)) / 2h``.

    The differences are taken in float64 over the steps actually applied (the inputs are
    float32 on the device), at points in the middle half of the range; the error allowed
    is :data:`VJP_RTOL` of the largest directional derivative plus :data:`FD_NOISE_ULPS`
    of float32 arithmetic error in the answers.
    """
    info = device.info
    gen = context.generator()
    span = info.in_max - info.in_min
    u = torch.rand(_ROWS, info.n_in, generator=gen, dtype=torch.float64)
    x = (info.in_min + span * (0.25 + 0.5 * u)).float()
    g = torch.randn(_ROWS, info.n_out, generator=gen, dtype=torch.float64)
    got = device.vjp(x, g.float())
    expect(isinstance(got, torch.Tensor) and tuple(got.shape) == (_ROWS, info.n_in),
           f"vjp of ({_ROWS}, {info.n_in}) inputs gave "
           f"{tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__}")
    got = got.detach().to("cpu", torch.float64)
    expect(bool(torch.isfinite(got).all()), "vjp has NaN or Inf")

    v = torch.randn(VJP_DIRECTIONS, _ROWS, info.n_in, generator=gen, dtype=torch.float64)
    v = v / v.norm(dim=-1, keepdim=True)
    plus = (x.double() + FD_STEP * span * v).clamp(info.in_min, info.in_max).float()
    minus = (x.double() - FD_STEP * span * v).clamp(info.in_min, info.in_max).float()
    answers = device.query(torch.cat([plus, minus]).reshape(-1, info.n_in)).double()
    y_plus, y_minus = answers.reshape(2, VJP_DIRECTIONS, _ROWS, info.n_out)
    numeric = (g * (y_plus - y_minus)).sum(-1)
    analytic = (got * (plus.double() - minus.double())).sum(-1)
    eps = torch.finfo(torch.float32).eps
    noise = 2 * FD_NOISE_ULPS * eps * float(answers.abs().max()) * float(g.abs().sum(-1).max())
    err, scale = float((numeric - analytic).abs().max()), float(analytic.abs().max())
    expect(err <= VJP_RTOL * scale + noise,
           f"vjp disagrees with central differences: largest error {err:.3g} of "
           f"{scale:.3g} (allowed {VJP_RTOL:g} of it plus {noise:.2g} of float32 noise)")
