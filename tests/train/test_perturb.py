"""The perturbation gradient: agrees with the exact gradient, keeps parameters in range,
counts its measurements, refuses what it cannot use."""

from __future__ import annotations

import pytest
import torch

from phys.device import ParamSpec
from phys.options import OptionError
from phys.train.perturb import Perturbation, PerturbOptions

SPECS = [ParamSpec("mask", (4, 3), -1.0, 1.0), ParamSpec("detuning", (8,), 0.0, 2.0, "GHz")]


def smooth_loss(values):
    """A smooth loss with a known gradient (in the parameters' own units)."""
    m, t = values["mask"].double(), values["detuning"].double()
    return (torch.sin(3 * m) * torch.arange(12.0).reshape(4, 3) / 12).sum() + \
        ((t - 0.7) ** 2 * torch.linspace(0.5, 2, 8)).sum()


def exact_scaled_gradient(values):
    v = {n: x.detach().double().requires_grad_(True) for n, x in values.items()}
    smooth_loss(v).backward()
    # d/du = d/dtheta * (max - min) for u the range scaled to [0, 1]
    return torch.cat([v[s.name].grad.flatten() * (s.max - s.min) for s in SPECS])


@pytest.mark.parametrize("method", ["spsa", "gaussian"])
def test_the_estimate_points_along_the_exact_gradient(method):
    values = {"mask": torch.full((4, 3), 0.1), "detuning": torch.full((8,), 1.3)}
    p = Perturbation(SPECS, PerturbOptions(method=method, directions=512,
                                           perturbation=0.01))
    grad, spent = p.gradient(lambda v: float(smooth_loss(v)), values, 0)
    est = torch.cat([grad["mask"].flatten(), grad["detuning"].flatten()]).double()
    exact = exact_scaled_gradient(values)
    cos = float(est @ exact / (est.norm() * exact.norm()))
    assert cos > 0.9, cos
    assert spent == 1024


def test_few_directions_point_worse_than_many():
    values = {"mask": torch.zeros(4, 3), "detuning": torch.ones(8)}
    exact = exact_scaled_gradient(values)

    def cosine(k, seed):
        p = Perturbation(SPECS, PerturbOptions(directions=k, seed=seed, perturbation=0.01))
        g, _ = p.gradient(lambda v: float(smooth_loss(v)), values, 0)
        est = torch.cat([g["mask"].flatten(), g["detuning"].flatten()]).double()
        return float(est @ exact / (est.norm() * exact.norm()))

    few = sum(cosine(1, s) for s in range(20)) / 20
    many = sum(cosine(256, s) for s in range(3)) / 3
    assert many > few + 0.3, (few, many)


def bowl(values):
    """A convex loss, least at mask 0.3 and detuning 0.7 (inside the ranges)."""
    return float(((values["mask"] - 0.3) ** 2).sum()
                 + ((values["detuning"] - 0.7) ** 2 * torch.linspace(0.5, 2, 8)).sum())


@pytest.mark.parametrize("seed", [0, 1])
def test_steps_minimise_and_stay_inside_the_ranges(seed):
    p = Perturbation(SPECS, PerturbOptions(directions=4, lr=0.05, seed=seed))
    values = {"mask": torch.full((4, 3), -0.9), "detuning": torch.full((8,), 1.9)}
    seen = []

    def loss(v):
        for s in SPECS:
            seen.append(bool((v[s.name] >= s.min).all() and (v[s.name] <= s.max).all()))
        return bowl(v)

    for k in range(400):
        grad, _ = p.gradient(loss, values, k)
        values = p.step(values, grad, k)
    assert all(seen) and len(seen) == 2 * 400 * 8
    assert torch.allclose(values["mask"], torch.full((4, 3), 0.3), atol=0.05)
    assert torch.allclose(values["detuning"], torch.full((8,), 0.7), atol=0.05)


def test_a_parameter_at_its_bound_is_not_pushed_through_it():
    spec = ParamSpec("bias", (2,), 0.0, 1.0)
    p = Perturbation([spec], PerturbOptions(directions=8, lr=1.0))
    values = {"bias": torch.tensor([1.0, 0.5])}
    for k in range(50):  # the loss falls as bias rises: it ends at the upper bound
        grad, _ = p.gradient(lambda v: -float(v["bias"].sum()), values, k)
        values = p.step(values, grad, k)
        assert float(values["bias"].max()) <= 1.0
    assert torch.allclose(values["bias"], torch.ones(2))


def test_the_same_seed_gives_the_same_steps():
    def run():
        p = Perturbation(SPECS, PerturbOptions(seed=3))
        v = {"mask": torch.zeros(4, 3), "detuning": torch.ones(8)}
        for k in range(5):
            g, _ = p.gradient(lambda x: float(smooth_loss(x)), v, k)
            v = p.step(v, g, k)
        return v

    a, b = run(), run()
    assert all(torch.equal(a[n], b[n]) for n in a)


def test_what_it_refuses():
    with pytest.raises(ValueError, match="declares none"):
        Perturbation([])
    with pytest.raises(OptionError, match="method"):
        PerturbOptions(method="adam")
    with pytest.raises(OptionError, match="directions"):
        PerturbOptions(directions=0)
    p = Perturbation(SPECS)
    with pytest.raises(ValueError, match="no value for physical parameter 'detuning'"):
        p.gradient(lambda v: 0.0, {"mask": torch.zeros(4, 3)}, 0)
    with pytest.raises(ValueError, match=r"'mask' has shape \(3,\), declared \(4, 3\)"):
        p.gradient(lambda v: 0.0, {"mask": torch.zeros(3), "detuning": torch.ones(8)}, 0)
    with pytest.raises(ValueError, match="perturbed up is nan"):
        p.gradient(lambda v: float("nan"), {"mask": torch.zeros(4, 3),
                                            "detuning": torch.ones(8)}, 0)
