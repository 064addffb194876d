"""The coupled Duffing oscillator simulator (phys.simulators.oscillators)."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch
from sim_helpers import rel_err, uniform

from phys.simulators.oscillators import Oscillators
from phys.testing import check_device

SMALL = dict(n_in=4, n_out=3, n_oscillators=6, periods=6, seed=2)
# settles fully: strong damping, long window; float64 so only the physics is tested
SETTLED = dict(n_in=3, n_out=8, n_oscillators=8, damping=0.3, periods=30, readout_periods=4,
               dtype=torch.float64)




# -- contract -------------------------------------------------------------------------------

@pytest.mark.parametrize("kw", [
    dict(n_in=1, n_out=1, n_oscillators=1, periods=3, readout_periods=1),
    dict(SMALL, coupling=0.0, beta=0.0, in_range=(0.0, 2.0), max_batch=5),
    dict(SMALL, dtype=torch.float64, max_batch=64),
    dict(max_batch=256),
], ids=["tiny", "linear", "float64", "default"])
def test_conformance(kw: dict) -> None:
    passed = check_device(Oscillators(**kw), reopen=partial(Oscillators, **kw))
    assert "seeded" in passed and "batch-independence" in passed


def test_conformance_noisy() -> None:
    passed = check_device(Oscillators(**SMALL, noise=0.01, max_batch=8))
    assert "deterministic" not in passed and "batch-split" in passed


def test_info() -> None:
    dev = Oscillators(**SMALL, in_range=(-2.0, 3.0))
    i = dev.info
    assert (i.name, i.n_in, i.n_out, i.in_min, i.in_max) == ("oscillators", 4, 3, -2.0, 3.0)
    assert i.differentiable and not i.stochastic
    assert i.extra["n_oscillators"] == 6 and i.extra["seed"] == 2


def test_fixed_physics() -> None:
    dev = Oscillators(**SMALL, omega_range=(0.9, 1.1), coupling=0.3)
    assert ((dev.omega >= 0.9) & (dev.omega <= 1.1)).all()
    k = dev.coupling_matrix
    assert torch.equal(k, k.T) and (k >= 0).all() and (k.diagonal() == 0).all()
    laplacian = torch.diag(k.sum(1)) - k
    assert float(torch.linalg.eigvalsh(laplacian.double())[-1]) == pytest.approx(0.3, rel=1e-5)
    assert dev.drive_matrix.shape == (6, 4)
    assert dev.readout.shape == (3,) and len(set(dev.readout.tolist())) == 3


# -- physics ----------------------------------------------------------------------------------

def test_linear_limit_matches_driven_damped_oscillator() -> None:
    dev = Oscillators(**SETTLED, beta=0.0, coupling=0.0)
    u = uniform(dev, 4, shrink=0.9)
    y = dev.query(u).double()
    force = (u @ dev.drive_matrix.T.double())[:, dev.readout].abs()
    w, big_w, g = dev.omega[dev.readout].double(), dev.drive_frequency, dev.damping
    expected = force / torch.sqrt((w**2 - big_w**2) ** 2 + (g * big_w) ** 2)
    assert rel_err(y, expected) < 0.01


def test_lock_in_reads_the_drive_harmonic_only() -> None:
    dev = Oscillators(**SMALL)
    spp = dev.steps_per_period
    t = (2 * math.pi / spp) * torch.arange(5, 5 + 3 * spp + 1, dtype=torch.float64)
    # amplitude 0.7 at Omega, plus a DC offset and the 3rd harmonic the Duffing term makes
    x = 0.7 * torch.cos(t - 0.4) + 0.2 + 0.5 * torch.cos(3 * t + 1.0)
    quadratures = dev._lock_in(x.view(1, 1, -1), first=5).view(2)
    torch.testing.assert_close(quadratures, 0.7 * torch.tensor([math.cos(0.4), math.sin(0.4)],
                                                               dtype=torch.float64))


@pytest.mark.parametrize("beta", [0.0, 1.0])
def test_duffing_term_makes_the_response_nonlinear(beta: float) -> None:
    dev = Oscillators(**SMALL, beta=beta, dtype=torch.float64)
    x = uniform(dev, 16, shrink=0.5)
    y1, y2 = dev.query(x), dev.query(2 * x)
    if beta == 0:  # linear in the drive: amplitudes scale exactly
        assert rel_err(y2, 2 * y1) < 1e-5
    else:  # hardening detunes the modes: doubling the drive does not double the response
        assert rel_err(y2, 2 * y1) > 0.1


def test_default_plate_is_nonlinear_over_its_input_range() -> None:
    dev = Oscillators()
    x = uniform(dev, 64, shrink=0.5)
    ratio = dev.query(2 * x).sum() / dev.query(x).sum()
    assert float(ratio) < 1.9  # a linear plate gives exactly 2


def test_rk4_converges_at_fourth_order() -> None:
    outputs = {}
    for spp in (16, 32, 64):
        dev = Oscillators(**{**SMALL, "periods": 12}, steps_per_period=spp, dtype=torch.float64)
        outputs[spp] = dev.query(uniform(dev, 8))
    coarse, fine = rel_err(outputs[16], outputs[64]), rel_err(outputs[32], outputs[64])
    assert coarse < 0.01  # the default step is already accurate
    assert coarse / fine > 8  # 4th order: 16 from halving, minus the spp=64 error


def test_unstable_step_is_refused_with_the_fix() -> None:
    kw = dict(omega_range=(1.0, 5.0), steps_per_period=8)
    with pytest.raises(ValueError, match=r"steps_per_period >= (\d+)") as err:
        Oscillators(**kw)
    need = int(err.value.args[0].rsplit(">= ", 1)[1])
    dev = Oscillators(**{**kw, "steps_per_period": need})  # the suggested fix works
    assert dev.dt * 5.0 <= 2.0
    assert torch.isfinite(dev.query(torch.ones(2, 16))).all()


def test_divergence_raises() -> None:
    dev = Oscillators(**SMALL, beta=1e3, drive=1e3)
    with pytest.raises(RuntimeError, match="diverged"):
        dev.query(torch.ones(2, 4))


def test_zero_input_gives_zero_output_and_finite_gradient() -> None:
    dev = Oscillators(**SMALL)
    assert torch.equal(dev.query(torch.zeros(3, 4)), torch.zeros(3, 3))
    g = dev.vjp(torch.zeros(2, 4), torch.ones(2, 3))
    assert torch.isfinite(g).all()


def test_seed_reproducible_and_distinct() -> None:
    x = uniform(Oscillators(**SMALL), 8)
    a = Oscillators(**SMALL).query(x)
    b = Oscillators(**SMALL).query(x)
    c = Oscillators(**{**SMALL, "seed": 3}).query(x)
    assert torch.equal(a, b)
    assert rel_err(c, a) > 0.1


def test_noise() -> None:
    clean = Oscillators(**SMALL)
    noisy = Oscillators(**SMALL, noise=0.05)
    assert noisy.info.stochastic and not clean.info.stochastic
    x = uniform(clean, 4)
    assert not torch.equal(noisy.query(x), noisy.query(x))
    y = noisy.query(x.repeat(200, 1)).view(200, 4, -1)
    assert float((y - clean.query(x)).std()) == pytest.approx(0.05, rel=0.15)
    # seeded: a fresh device draws the same noise
    assert torch.equal(Oscillators(**SMALL, noise=0.05).query(x), Oscillators(
        **SMALL, noise=0.05).query(x))


# -- gradients ------------------------------------------------------------------------------

GRAD = dict(n_in=2, n_out=2, n_oscillators=3, periods=3, readout_periods=1,
            steps_per_period=8, dtype=torch.float64, seed=4)


def test_gradcheck() -> None:
    dev = Oscillators(**GRAD)
    x = uniform(dev, 2, shrink=0.9).requires_grad_(True)
    assert torch.autograd.gradcheck(dev.simulate, (x,), check_undefined_grad=False)


def test_vjp_matches_autograd_of_simulate() -> None:
    dev = Oscillators(**SMALL)
    x = uniform(dev, 4).float()
    g = torch.randn(4, 3, generator=torch.Generator().manual_seed(1))
    xg = x.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(dev.simulate(xg), xg, g)
    got = dev.vjp(x, g)
    assert got.shape == (4, 4)
    torch.testing.assert_close(got, expected)
    reference = Oscillators(**SMALL, dtype=torch.float64).vjp(x.double(), g.double())
    assert rel_err(got, reference) < 1e-3


# -- construction and bookkeeping ------------------------------------------------------------

@pytest.mark.parametrize("bad", [
    {"n_oscillators": 0}, {"n_oscillators": 2.5}, {"n_out": 40, "n_oscillators": 32},
    {"periods": 0},
    {"readout_periods": 13}, {"steps_per_period": 4}, {"omega_range": (0.0, 1.0)},
    {"omega_range": (1.2, 1.0)}, {"damping": 0.0}, {"beta": -1.0}, {"coupling": -0.1},
    {"drive": 0.0}, {"drive_frequency": float("nan")}, {"noise": -0.01},
    {"frequency_hz": 0.0}, {"dtype": torch.float16}, {"n_in": 0}, {"max_batch": 0},
    {"in_range": (1.0, -1.0)},
])
def test_bad_arguments(bad: dict) -> None:
    with pytest.raises(ValueError):
        Oscillators(**bad)


def test_lab_cost() -> None:
    dev = Oscillators(**SMALL, max_batch=5, frequency_hz=2e3)
    dev.query(uniform(dev, 12))
    omega0 = 2 * math.pi * 2e3
    drive_window = 6 * 2 * math.pi / omega0  # 6 periods of a drive at omega_0
    ring_down = 2 * math.log(1e3) / (0.2 * omega0)
    assert dev.stats.lab_seconds == pytest.approx(12 * (drive_window + ring_down))
    assert dev.stats.joules is None
