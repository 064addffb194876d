"""The diffractive free-space optics simulator (phys.simulators.optics)."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch
from sim_helpers import rel_err, uniform

from phys.simulators.optics import Optics, _block_index, propagate, transfer_function
from phys.testing import check_device

SMALL = dict(n_in=4, n_out=6, grid=(12, 12), pad=4, seed=2)
# a plane wave on a periodic window: nothing diffracts, so the answers are analytic
PLANE = dict(n_in=4, n_out=4, grid=(8, 8), pad=0, diffuser=0.0, in_range=(0.0, 1.0),
             encoding="amplitude", dtype=torch.float64)




def random_field(shape: tuple[int, ...], seed: int = 0,
                 dtype: torch.dtype = torch.complex128) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=gen, dtype=dtype)


def energy(field: torch.Tensor) -> torch.Tensor:
    return field.abs().square().sum((-2, -1))


# -- contract -------------------------------------------------------------------------------

@pytest.mark.parametrize("kw", [
    dict(n_in=1, n_out=1, grid=(1, 1), pad=0),
    dict(SMALL, encoding="amplitude", nonlinearity="shg", in_range=(0.0, 2.0), max_batch=5),
    dict(SMALL, nonlinearity="none", dtype=torch.float64, max_batch=64),
    dict(max_batch=64),
], ids=["tiny", "amplitude-shg", "linear-float64", "default"])
def test_conformance(kw: dict) -> None:
    passed = check_device(Optics(**kw), reopen=partial(Optics, **kw))
    assert "seeded" in passed and "batch-independence" in passed


def test_conformance_noisy() -> None:
    passed = check_device(Optics(**SMALL, noise=0.01, max_batch=8))
    assert "deterministic" not in passed and "batch-split" in passed


def test_info() -> None:
    dev = Optics(**SMALL, in_range=(-2.0, 3.0))
    i = dev.info
    assert (i.name, i.n_in, i.n_out, i.in_min, i.in_max) == ("optics", 4, 6, -2.0, 3.0)
    assert i.differentiable and not i.stochastic
    assert i.extra["grid"] == [12, 12] and i.extra["seed"] == 2


@pytest.mark.parametrize(("shape", "n", "layout"), [
    ((32, 32), 16, (4, 4)), ((12, 18), 6, (2, 3)), ((5, 40), 8, (1, 8)), ((40, 5), 8, (8, 1)),
])
def test_blocks_tile_the_grid(shape: tuple[int, int], n: int, layout: tuple[int, int]) -> None:
    index = _block_index(shape, n, "blocks")
    assert index.shape == shape and set(index.flatten().tolist()) == set(range(n))
    rows, cols = layout
    for k in range(n):  # block k: row-major position, a near-equal rectangle
        r, c = (index == k).nonzero().unbind(1)
        height, width = int(r.max() - r.min()) + 1, int(c.max() - c.min()) + 1
        assert height * width == len(r)
        assert shape[0] // rows <= height <= -(-shape[0] // rows)
        assert shape[1] // cols <= width <= -(-shape[1] // cols)
        assert (int(r.min()) * rows // shape[0], int(c.min()) * cols // shape[1]) == divmod(k, cols)


# -- angular-spectrum propagation ----------------------------------------------------------

def test_propagation_conserves_energy() -> None:
    h = transfer_function((64, 48), 8e-6, 1.55e-6, 1e-3, dtype=torch.complex64)
    assert torch.allclose(h.abs(), torch.ones_like(h.abs()), atol=1e-6)  # nothing cut here
    field = random_field((3, 64, 48), dtype=torch.complex64)
    out = propagate(field, h)
    assert rel_err(energy(out), energy(field)) < 1e-4  # Parseval
    assert rel_err(out, field) > 0.5  # and it did propagate


def test_forward_then_backward_returns_the_field() -> None:
    args = ((40, 40), 4e-6, 0.532e-6)
    field = random_field((2, 40, 40))
    there = propagate(field, transfer_function(*args, 5e-4, dtype=torch.complex128))
    back = propagate(there, transfer_function(*args, -5e-4, dtype=torch.complex128))
    assert rel_err(there, field) > 0.5
    torch.testing.assert_close(back, field)


def test_evanescent_components_are_cut() -> None:
    pitch, wavelength = 0.5e-6, 1.55e-6  # Nyquist 1 / (2 pitch) > 1 / wavelength
    h = transfer_function((32, 32), pitch, wavelength, 1e-5, band_limit=False)
    f = torch.fft.fftfreq(32, d=pitch, dtype=torch.float64)
    f2 = f[:, None] ** 2 + f[None, :] ** 2
    propagating = f2 < 1 / wavelength**2
    assert (~propagating).any() and propagating.any()
    assert (h[~propagating] == 0).all()
    torch.testing.assert_close(h[propagating].abs(), torch.ones(int(propagating.sum())))


def test_band_limit_cuts_undersampled_frequencies_symmetrically() -> None:
    args = ((32, 32), 8e-6, 1.55e-6)
    far = transfer_function(*args, 0.2)
    kept = far.abs() > 0
    assert 0 < int(kept.sum()) < 32 * 32
    assert torch.equal(kept, transfer_function(*args, -0.2).abs() > 0)
    assert (transfer_function(*args, 0.2, band_limit=False).abs() > 0).all()


def test_gaussian_beam_spreads_and_tilted_beam_walks_off() -> None:
    n, pitch, wavelength, w0 = 256, 2e-6, 1e-6, 30e-6
    z_r = math.pi * w0**2 / wavelength  # Rayleigh range
    x = (torch.arange(n, dtype=torch.float64) - n / 2) * pitch
    r2 = x[:, None] ** 2 + x[None, :] ** 2
    tilt = 0.02 / wavelength  # spatial frequency of a beam tilted by ~0.02 rad along x
    beam = torch.polar(torch.exp(-r2 / w0**2), 2 * math.pi * tilt * x[:, None].expand(n, n))
    out = propagate(beam, transfer_function((n, n), pitch, wavelength, z_r, dtype=torch.complex128))
    intensity = out.abs().square()
    p = intensity / intensity.sum()
    centre_x = float((p.sum(1) * x).sum())
    width_y2 = float((p.sum(0) * x**2).sum())  # <y^2> = w^2 / 4 for a Gaussian beam
    assert 4 * width_y2 / w0**2 == pytest.approx(2.0, rel=1e-3)  # w(z_R) = sqrt(2) w0
    walk_off = z_r * wavelength * tilt / math.sqrt(1 - (wavelength * tilt) ** 2)
    assert centre_x == pytest.approx(walk_off, rel=1e-3)  # towards +x: the sign of H_z


# -- the device's physics -------------------------------------------------------------------

def test_linear_device_conserves_energy() -> None:
    # a periodic window (pad=0) without the band limit: every plane wave propagates
    dev = Optics(n_in=4, n_out=6, grid=(12, 16), pad=0, nonlinearity="none", intensity=2.5,
                 band_limit=False)
    y = dev.query(uniform(dev, 5))
    total = (y.double() * dev.region_pixels).sum(1)
    torch.testing.assert_close(total, torch.full((5,), 2.5 * 12 * 16, dtype=torch.float64),
                               rtol=1e-4, atol=0)


@pytest.mark.parametrize("encoding", ["phase", "amplitude"])
def test_uniform_input_without_diffuser_gives_a_uniform_pattern(encoding: str) -> None:
    dev = Optics(**{**PLANE, "encoding": encoding}, nonlinearity="none")
    y = dev.query(torch.full((4,), 0.5)).double()
    expected = 0.25 if encoding == "amplitude" else 1.0  # amplitude s = 0.5 -> intensity s^2
    torch.testing.assert_close(y, torch.full((4,), expected, dtype=torch.float64))
    # a padded aperture diffracts at its edges, but the pattern stays roughly uniform
    padded = Optics(**{**PLANE, "encoding": encoding, "pad": 8, "n_out": 16, "grid": (32, 32)},
                    nonlinearity="none")
    y = padded.query(torch.full((4,), 0.5)).view(4, 4)
    centre = y[1:3, 1:3]
    assert float(centre.std() / centre.mean()) < 0.1
    assert 0.8 * expected < float(y.mean()) < 1.05 * expected


def test_saturable_absorber_transmission() -> None:
    dev = Optics(**PLANE, intensity=3.0, optical_depth=2.0)
    s = torch.tensor([0.1, 0.5, 0.8, 1.0], dtype=torch.float64)
    y = dev.query(s.view(-1, 1).expand(4, 4)).double()  # uniform plane waves
    i = 3.0 * s**2
    expected = i * torch.exp(-2.0 / (1 + i))  # T(I) = exp(-OD / (1 + I))
    torch.testing.assert_close(y, expected.view(-1, 1).expand(4, 4), rtol=1e-5, atol=0)


def test_saturable_absorber_is_nonlinear() -> None:
    kw = dict(SMALL, encoding="amplitude", in_range=(0.0, 1.0), dtype=torch.float64)
    x = 0.5 * uniform(Optics(**kw), 8)
    linear = Optics(**kw, nonlinearity="none")
    torch.testing.assert_close(linear.query(2 * x), 4 * linear.query(x), rtol=1e-5, atol=1e-7)
    dev = Optics(**kw)
    # bleaching: twice the field is transmitted better, so more than 4x the intensity
    assert float(dev.query(2 * x).sum() / dev.query(x).sum()) > 4.4


def test_shg() -> None:
    dev = Optics(**PLANE, nonlinearity="shg", intensity=2.0)
    s = torch.tensor([0.25, 0.5, 1.0], dtype=torch.float64)
    y = dev.query(s.view(-1, 1).expand(3, 4)).double()
    torch.testing.assert_close(y, ((2.0 * s**2) ** 2).view(-1, 1).expand(3, 4))  # I_SH = I^2
    kw = dict(SMALL, encoding="amplitude", in_range=(0.0, 1.0), nonlinearity="shg",
              dtype=torch.float64)
    dev = Optics(**kw)
    x = 0.5 * uniform(dev, 8)
    torch.testing.assert_close(dev.query(2 * x), 16 * dev.query(x), rtol=1e-5, atol=1e-7)
    window = (20, 20)  # grid (12, 12) + 2 * pad 4
    torch.testing.assert_close(dev.transfer_out, transfer_function(
        window, 8e-6, 1.55e-6 / 2, 1e-3, dtype=torch.complex128))  # half the wavelength


def test_phase_encoding_changes_the_pattern() -> None:
    dev = Optics(**SMALL)
    x = uniform(dev, 8)
    y = dev.query(x)
    assert rel_err(dev.query(x.flip(0)), y) > 0.05
    assert (y >= 0).all()


def test_seed_reproducible_and_distinct() -> None:
    x = uniform(Optics(**SMALL), 8)
    a = Optics(**SMALL).query(x)
    b = Optics(**SMALL).query(x)
    c = Optics(**{**SMALL, "seed": 3}).query(x)
    assert torch.equal(a, b)
    assert rel_err(c, a) > 0.1


def test_noise() -> None:
    clean = Optics(**SMALL)
    noisy = Optics(**SMALL, noise=0.02)
    assert noisy.info.stochastic and not clean.info.stochastic
    x = uniform(clean, 4)
    assert not torch.equal(noisy.query(x), noisy.query(x))
    y = noisy.query(x.repeat(200, 1)).view(200, 4, -1)
    assert float((y - clean.query(x)).std()) == pytest.approx(0.02, rel=0.15)
    assert torch.equal(Optics(**SMALL, noise=0.02).query(x), Optics(**SMALL, noise=0.02).query(x))


# -- gradients ------------------------------------------------------------------------------

@pytest.mark.parametrize(("encoding", "nonlinearity"), [
    ("phase", "saturable"), ("amplitude", "saturable"), ("phase", "shg"), ("amplitude", "none"),
])
def test_gradcheck(encoding: str, nonlinearity: str) -> None:
    dev = Optics(n_in=3, n_out=4, grid=(6, 6), pad=2, encoding=encoding,
                 nonlinearity=nonlinearity, dtype=torch.float64, seed=4)
    x = uniform(dev, 2, shrink=0.9).requires_grad_(True)
    assert torch.autograd.gradcheck(dev.simulate, (x,), check_undefined_grad=False)


def test_vjp_matches_autograd_of_simulate() -> None:
    dev = Optics(**SMALL)
    x = uniform(dev, 4).float()
    g = torch.randn(4, 6, generator=torch.Generator().manual_seed(1))
    xg = x.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(dev.simulate(xg), xg, g)
    got = dev.vjp(x, g)
    assert got.shape == (4, 4)
    torch.testing.assert_close(got, expected)
    reference = Optics(**SMALL, dtype=torch.float64).vjp(x.double(), g.double())
    assert rel_err(got, reference) < 1e-3


# -- construction and bookkeeping ------------------------------------------------------------

def test_grid_too_small_names_the_fix() -> None:
    with pytest.raises(ValueError, match=r"too small for n_out=16 detector regions.*\(4, 4\)"):
        Optics(n_in=4, n_out=16, grid=(3, 3))
    with pytest.raises(ValueError, match=r"too small for n_in=20 SLM input blocks.*\(5, 5\)"):
        Optics(n_in=20, n_out=1, grid=(4, 4))


@pytest.mark.parametrize("n_in", [5, 37, 74, 794])
def test_any_block_count_fits_a_grid_with_enough_pixels(n_in: int) -> None:
    optics = Optics(n_in=n_in, n_out=10)  # prime and awkward counts included
    blocks = optics._input_index
    assert set(blocks.unique().tolist()) <= set(range(n_in + 1))
    assert set(range(n_in)) <= set(blocks.unique().tolist())  # every input has pixels
    assert int((optics.region_pixels > 0).sum()) == 10


@pytest.mark.parametrize("bad", [
    {"grid": (0, 4)}, {"grid": (4,)}, {"grid": 4}, {"grid": (4.0, 4)}, {"pad": -1},
    {"pad": 1.5}, {"encoding": "polarisation"}, {"nonlinearity": "kerr"}, {"pitch": 0.0},
    {"wavelength": -1e-6}, {"distances": (1e-3,)}, {"distances": 1e-3}, {"distances": (1e-3, 0.0)},
    {"distances": (float("inf"), 1e-3)}, {"intensity": 0.0}, {"optical_depth": -1.0},
    {"phase_range": 0.0}, {"diffuser": -0.5}, {"noise": float("nan")}, {"frame_rate": 0.0},
    {"laser_power": -1.0}, {"dtype": torch.complex64}, {"n_in": 0}, {"max_batch": 0},
    {"in_range": (1.0, -1.0)},
])
def test_bad_arguments(bad: dict) -> None:
    with pytest.raises(ValueError):
        Optics(**bad)


def test_lab_cost() -> None:
    dev = Optics(**SMALL, max_batch=5, frame_rate=50.0, laser_power=2e-3)
    dev.query(uniform(dev, 12))
    assert dev.stats.lab_seconds == pytest.approx(12 / 50.0)
    assert dev.stats.joules == pytest.approx(12 / 50.0 * 2e-3)


@pytest.mark.parametrize("bad", [
    dict(shape=(0, 8)), dict(pitch=0.0), dict(wavelength=float("nan")),
    dict(distance=float("inf")), dict(dtype=torch.float32),
])
def test_transfer_function_bad_arguments(bad: dict) -> None:
    kw = dict(shape=(8, 8), pitch=8e-6, wavelength=1.55e-6, distance=1e-3)
    with pytest.raises(ValueError):
        transfer_function(**{**kw, **bad})
