"""Model-free gradients of physical parameters: the loss measured at perturbed settings.

A physical parameter (an SLM mask, a scatterer's detuning) cannot be differentiated, but
the loss can be measured with it set a little up and a little down. Along ``K`` random
directions ``d`` (in each parameter's range scaled to ``[0, 1]``)::

    g ~ mean_d  (L(u + c d) - L(u - c d)) / (2 c) * d

``method="spsa"`` draws ``d`` with elements +-1 (simultaneous perturbation, Spall 1992);
``"gaussian"`` draws them from N(0, I) (antithetic Gaussian smoothing, as evolution
strategies and forward-only training do). Each direction costs two loss evaluations,
each one a set of the parameters and a measurement. Perturbed points are clipped to the
range; the estimate then uses the step actually taken (``(L+ - L-) (u+ - u-) / (2c)^2``,
the formula above inside the range), so a parameter at a bound is not pushed through it.
Steps follow Spall's gains ``a_k = lr / (k + 1 + A)^alpha``, ``c_k = c / (k + 1)^gamma``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

from phys.device import ParamSpec
from phys.options import Options, option

__all__ = ["METHODS", "PerturbOptions", "Perturbation"]

METHODS = ("spsa", "gaussian")


@dataclass
class PerturbOptions(Options):
    """How physical parameters are trained from perturbed measurements."""

    method: str = option("spsa", choices=METHODS,
                         help="spsa: directions of +-1 elements; gaussian: N(0, I) directions")
    directions: int = option(4, min=1, max=4096,
                             help="random directions per step (two loss measurements each)")
    lr: float = option(0.05, min=0.0, help="step size, in units of each parameter's range")
    perturbation: float = option(0.05, min=1e-9, max=0.5,
                                 help="perturbation size, as a fraction of each range")
    alpha: float = option(0.602, min=0.0, max=2.0, help="decay exponent of the step size")
    gamma: float = option(0.101, min=0.0, max=2.0,
                          help="decay exponent of the perturbation size")
    stability: float = option(0.0, min=0.0, help="A in lr / (k + 1 + A)^alpha")
    seed: int = option(0, min=0, help="seeds the directions")


class Perturbation:
    """Estimates gradients of a measured loss with respect to physical parameters and
    steps them, keeping every value inside its declared range.

    Args:
        specs: The parameters (from ``info.params``); values are tensors of their shapes.
        options: :class:`PerturbOptions`.

    Examples::

        >>> import torch
        >>> from phys.device import ParamSpec
        >>> p = Perturbation([ParamSpec("mask", (3,), -1.0, 1.0)],
        ...                  PerturbOptions(directions=8))
        >>> values = {"mask": torch.zeros(3)}
        >>> loss = lambda v: float(((v["mask"] - 0.5) ** 2).sum())
        >>> for k in range(200):
        ...     grad, spent = p.gradient(loss, values, k)
        ...     values = p.step(values, grad, k)
        >>> bool(torch.allclose(values["mask"], torch.full((3,), 0.5), atol=0.05)), spent
        (True, 16)
    """

    def __init__(self, specs: Sequence[ParamSpec], options: PerturbOptions | None = None
                 ) -> None:
        if not specs:
            raise ValueError("no physical parameters to train: the device declares none")
        self.specs = {s.name: s for s in specs}
        self.options = options or PerturbOptions()
        self.generator = torch.Generator().manual_seed(self.options.seed)

    # -- scaled coordinates ---------------------------------------------------------------
    def _scaled(self, values: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {}
        for name, spec in self.specs.items():
            if name not in values:
                raise ValueError(f"no value for physical parameter {name!r}")
            v = torch.as_tensor(values[name], dtype=torch.float64)
            if tuple(v.shape) != spec.shape:
                raise ValueError(f"physical parameter {name!r} has shape {tuple(v.shape)}, "
                                 f"declared {spec.shape}")
            width = spec.max - spec.min
            out[name] = (v - spec.min) / width if width > 0 else torch.zeros_like(v)
        return out

    def _values(self, scaled: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {name: (spec.min + scaled[name].clamp(0, 1) * (spec.max - spec.min))
                .to(torch.float32) for name, spec in self.specs.items()}

    def _direction(self) -> dict[str, torch.Tensor]:
        out = {}
        for name, spec in self.specs.items():
            if self.options.method == "spsa":
                d = torch.randint(0, 2, spec.shape, generator=self.generator) * 2.0 - 1.0
            else:
                d = torch.randn(spec.shape, generator=self.generator)
            out[name] = d.to(torch.float64)
        return out

    # -- the estimate and the step ----------------------------------------------------
    def gradient(self, loss: Callable[[dict[str, torch.Tensor]], float],
                 values: Mapping[str, torch.Tensor], step: int
                 ) -> tuple[dict[str, torch.Tensor], int]:
        """The estimated gradient at ``values`` (per parameter, in units of the loss per
        range) and the number of loss measurements it spent (``2 * directions``).

        Args:
            loss: Sets the given values on the physics, measures, returns the loss.
            values: The current values, by name.
            step: The step number ``k`` (sets the perturbation size).

        Raises:
            ValueError: a value is missing or has the wrong shape; a measured loss is not
                finite.
        """
        u = self._scaled(values)
        c = self.options.perturbation / (step + 1) ** self.options.gamma
        grad = {name: torch.zeros_like(v) for name, v in u.items()}
        for _ in range(self.options.directions):
            d = self._direction()
            up = {n: (u[n] + c * d[n]).clamp(0, 1) for n in u}
            down = {n: (u[n] - c * d[n]).clamp(0, 1) for n in u}
            diff = _finite(loss(self._values(up)), "up") - _finite(loss(self._values(down)),
                                                                  "down")
            for n in u:
                grad[n] += diff * (up[n] - down[n]) / (2 * c) ** 2
        k = self.options.directions
        return {n: (g / k).to(torch.float32) for n, g in grad.items()}, 2 * k

    def step(self, values: Mapping[str, torch.Tensor], grad: Mapping[str, torch.Tensor],
             step: int) -> dict[str, torch.Tensor]:
        """``values`` moved against ``grad`` by step ``k``'s size, clipped to the ranges."""
        o = self.options
        a = o.lr / (step + 1 + o.stability) ** o.alpha
        u = self._scaled(values)
        return self._values({n: u[n] - a * grad[n].to(torch.float64) for n in u})


def _finite(value: float, where: str) -> float:
    value = float(value)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"the loss measured with the parameters perturbed {where} is "
                         f"{value}; a perturbation gradient needs finite losses")
    return value
