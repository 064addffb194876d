"""The saturable multiple-scattering cavity simulator (phys.simulators.cavity)."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from sim_helpers import rel_err, uniform

import phys.simulators.cavity as cavity_module
from phys.simulators.cavity import Cavity
from phys.testing import check_device

SMALL = dict(n_in=8, n_out=6, n_scatterers=24, seed=2)
BIG = dict(n_in=64, n_out=128, n_scatterers=256)



def reference(cav_kw: dict) -> Cavity:
    """The same cavity in float64, solved to (nearly) machine precision."""
    return Cavity(**{**cav_kw, "dtype": torch.float64, "tol": 1e-12})



# -- contract -------------------------------------------------------------------------------

@pytest.mark.parametrize("kw", [
    dict(n_in=1, n_out=1, n_scatterers=2),
    dict(n_in=3, n_out=7, n_scatterers=5, coupling=0.0, in_range=(0.0, 2.0), max_batch=5),
    dict(n_in=4, n_out=3, n_scatterers=10, coupling=0.95, dtype=torch.float64, seed=5,
         max_batch=64),
    dict(**BIG, max_batch=256),
], ids=["tiny", "uncoupled", "float64", "big"])
def test_conformance(kw: dict) -> None:
    passed = check_device(Cavity(**kw), reopen=partial(Cavity, **kw))
    assert "seeded" in passed and "batch-independence" in passed


def test_info() -> None:
    cav = Cavity(**SMALL, in_range=(-2.0, 3.0))
    i = cav.info
    assert (i.name, i.n_in, i.n_out, i.in_min, i.in_max) == ("cavity", 8, 6, -2.0, 3.0)
    assert i.differentiable and not i.stochastic
    assert i.extra["n_scatterers"] == 24 and i.extra["seed"] == 2


# -- physics ----------------------------------------------------------------------------------

@pytest.mark.parametrize("kw", [SMALL, BIG], ids=["small", "big"])
@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16-warmup"])
def test_float32_matches_float64_reference(kw: dict, bf16: bool,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # batches of >= 64 rows take bf16 early iterations where the CPU supports it; force
    # both paths so the result does not depend on the machine running the tests
    monkeypatch.setattr(cavity_module, "_fast_bf16", lambda: bf16)
    cav = Cavity(**kw)
    x = uniform(cav, 64)
    y = cav.query(x)
    assert rel_err(y, reference(kw).query(x)) < 1e-3
    assert cav.last_iterations > 1


def test_solution_is_a_fixed_point() -> None:
    cav = reference(BIG)
    k = cav.n_scatterers
    x = uniform(cav, 64, seed=1)
    e_in = x @ cav._a  # (B, 2K): [Re, Im] of the incident field A u
    s = cav._solve(e_in)
    e = e_in + s @ cav._g  # e = A u + G s
    e_c = torch.complex(e[:, :k], e[:, k:])
    s_expected = e_c / (1 + e_c.abs() ** 2)  # alpha(|e|^2) e with alpha(I) = 1 / (1 + I)
    s_c = torch.complex(s[:, :k], s[:, k:])
    assert float((s_c - s_expected).abs().max() / s_c.abs().max()) < 1e-9
    # detectors read |B u + C s|^2
    field = x @ cav._bc_in + s @ cav._bc_s
    n = cav.info.n_out
    detected = field[:, :n] ** 2 + field[:, n:] ** 2
    torch.testing.assert_close(cav.simulate(x), detected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kw", [dict(SMALL, coupling=0.95), dict(BIG, coupling=0.95)],
                         ids=["small", "big"])
def test_converges_at_range_corners(kw: dict) -> None:
    cav = Cavity(**kw)
    n, i = cav.info.n_in, cav.info
    alternating = torch.tensor([i.in_min if j % 2 else i.in_max for j in range(n)])
    corners = torch.stack([torch.full((n,), i.in_min), torch.full((n,), i.in_max),
                           alternating, -alternating, torch.zeros(n)])
    corners = corners.repeat(16, 1)  # >= 64 rows: bf16 warm-up included where available
    y = cav.query(corners)
    assert torch.isfinite(y).all()
    assert rel_err(y, reference(kw).query(corners)) < 1e-3


def test_response_is_nonlinear_at_default_drive() -> None:
    cav = Cavity(**SMALL)
    x = uniform(cav, 32, shrink=0.5)
    y1, y2 = cav.query(x), cav.query(2 * x)
    # a linear cavity gives intensities that scale by exactly 4
    assert rel_err(y2, 4 * y1) > 0.1


def test_weak_drive_is_nearly_linear() -> None:
    cav = Cavity(**SMALL, drive=1e-4)
    x = uniform(cav, 32, shrink=0.5)
    y1, y2 = cav.query(x), cav.query(2 * x)
    assert rel_err(y2, 4 * y1) < 1e-2
    ratio = y2.sum() / y1.sum()
    assert ratio == pytest.approx(4.0, rel=1e-2)


def test_zero_input_gives_zero_output() -> None:
    cav = Cavity(**SMALL)
    assert torch.equal(cav.query(torch.zeros(3, 8)), torch.zeros(3, 6))


def test_outputs_are_intensities() -> None:
    cav = Cavity(**SMALL)
    y = cav.query(uniform(cav, 256))
    assert (y >= 0).all()
    assert 0.2 < float(y.mean()) < 5.0  # documented: mean noise-free output is about 1


def test_seed_reproducible_and_distinct() -> None:
    x = uniform(Cavity(**SMALL), 16)
    a = Cavity(**SMALL).query(x)
    b = Cavity(**SMALL).query(x)
    c = Cavity(**{**SMALL, "seed": 3}).query(x)
    assert torch.equal(a, b)
    assert rel_err(c, a) > 0.1


def test_noise() -> None:
    clean = Cavity(**SMALL)
    noisy = Cavity(**SMALL, noise=0.05)
    assert noisy.info.stochastic and not clean.info.stochastic
    x = uniform(clean, 4)
    first, second = noisy.query(x), noisy.query(x)
    assert not torch.equal(first, second)
    repeats = 400
    y = noisy.query(x.repeat(repeats, 1)).view(repeats, 4, -1)
    assert float((y - clean.query(x)).std()) == pytest.approx(0.05, rel=0.1)
    # standard error of the mean: 0.05 / sqrt(400) = 0.0025
    torch.testing.assert_close(y.mean(0), clean.query(x), rtol=0, atol=0.0125)


def test_noise_is_seeded() -> None:
    x = uniform(Cavity(**SMALL), 4)
    a = Cavity(**SMALL, noise=0.05).query(x)
    b = Cavity(**SMALL, noise=0.05).query(x)
    assert torch.equal(a, b)


def test_iteration_cap_raises() -> None:
    cav = Cavity(**SMALL, tol=1e-7, max_iter=2)
    with pytest.raises(RuntimeError, match="did not converge"):
        cav.query(uniform(cav, 4))


def test_single_scatterer_works_or_is_rejected() -> None:
    try:
        cav = Cavity(n_in=2, n_out=2, n_scatterers=1)
    except ValueError:
        return
    assert torch.isfinite(cav.query(torch.full((2,), 0.5))).all()


# -- gradients ------------------------------------------------------------------------------

GRAD = dict(n_in=5, n_out=3, n_scatterers=12, coupling=0.9, seed=4)


def test_gradcheck() -> None:
    cav = reference(GRAD)
    # keep finite-difference steps inside the input range
    x = uniform(cav, 3, shrink=0.9).requires_grad_(True)
    assert torch.autograd.gradcheck(cav.simulate, (x,), check_undefined_grad=False)


def test_implicit_gradient_matches_unrolled_iteration() -> None:
    cav = reference(GRAD)
    x = uniform(cav, 4, seed=3).requires_grad_(True)
    g = torch.randn(4, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    # differentiate straight through many plain fixed-point steps (no implicit function
    # theorem): converges to the same gradient because the step is a contraction
    e_in = x @ cav._a
    s = torch.zeros_like(e_in)
    for _ in range(400):
        s = cav._step(s, e_in)
    field = (x @ cav._bc_in + s @ cav._bc_s).view(-1, 2, 3)
    (unrolled,) = torch.autograd.grad(field.square().sum(1), x, g)
    torch.testing.assert_close(cav.vjp(x, g), unrolled, rtol=1e-6, atol=1e-9)


def test_vjp_matches_autograd_of_simulate() -> None:
    cav = Cavity(**GRAD)
    x = uniform(cav, 4).float()
    g = torch.randn(4, 3, generator=torch.Generator().manual_seed(1))
    xg = x.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(cav.simulate(xg), xg, g)
    got = cav.vjp(x, g)
    assert got.shape == (4, 5)
    torch.testing.assert_close(got, expected)
    # and the float32 gradient agrees with the float64 reference
    assert rel_err(got, reference(GRAD).vjp(x.double(), g.double())) < 1e-3


def test_simulate_keeps_graph_and_matches_query() -> None:
    cav = Cavity(**SMALL)
    x = uniform(cav, 5).float().requires_grad_(True)
    y = cav.simulate(x)
    assert y.requires_grad
    torch.testing.assert_close(y.detach(), cav.query(x), rtol=1e-3, atol=1e-4)
    assert cav.simulate(x[0]).shape == (6,)
    with pytest.raises(ValueError, match="outside"):
        cav.simulate(torch.full((8,), 2.0))


# -- construction and bookkeeping ------------------------------------------------------------

@pytest.mark.parametrize("bad", [
    {"coupling": 1.0}, {"coupling": 1.5}, {"coupling": -0.1}, {"noise": -0.01},
    {"noise": float("nan")}, {"n_scatterers": 0}, {"n_scatterers": 2.5}, {"drive": 0.0},
    {"drive": -1.0}, {"drive": float("inf")}, {"tol": 0.0}, {"dtype": torch.float16},
    {"dtype": torch.bfloat16}, {"n_in": 0}, {"max_batch": 0}, {"in_range": (1.0, -1.0)},
])
def test_bad_arguments(bad: dict) -> None:
    with pytest.raises(ValueError):
        Cavity(**bad)


def test_lab_cost() -> None:
    cav = Cavity(**SMALL, max_batch=5, sample_seconds=0.25, sample_joules=2e-3)
    cav.query(uniform(cav, 12))
    cav.query(uniform(cav, 1)[0])
    assert cav.stats.samples == 13 and cav.stats.queries == 4
    assert cav.stats.lab_seconds == pytest.approx(13 * 0.25)
    assert cav.stats.joules == pytest.approx(13 * 2e-3)
