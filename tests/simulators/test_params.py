"""Physical parameters of every simulator: declared with units and ranges, set and read
back, refused when bad, the defaults the fixed physics of today, used by the forward
pass, differentiable (finite differences), saved and restored."""

from __future__ import annotations

import math

import pytest
import torch

from phys.simulators.cavity import Cavity
from phys.simulators.optics import Optics
from phys.simulators.oscillators import Oscillators
from phys.simulators.wave2d import Wave2D

WAVE = dict(n_in=3, n_out=2, grid=(16, 16), pml=3, n_steps=40, f0=343.0 / (6 * 5e-3),
            pulse_cycles=1.0, seed=1)

#: name -> (factory, parameter, units)
SIMULATORS = {
    "cavity": (lambda **kw: Cavity(n_in=4, n_out=3, n_scatterers=12, seed=1, **kw),
               "phase", "rad"),
    "optics": (lambda **kw: Optics(n_in=4, n_out=6, grid=(12, 12), pad=4, seed=2, **kw),
               "mask", "rad"),
    "oscillators": (lambda **kw: Oscillators(n_in=4, n_out=3, n_oscillators=6, periods=6,
                                             seed=2, **kw), "frequency", "omega_0"),
    "wave2d": (lambda **kw: Wave2D(**WAVE, **kw), "permittivity", ""),
}


def inputs(dev, rows: int = 5, seed: int = 0) -> torch.Tensor:
    u = torch.rand(rows, dev.info.n_in, generator=torch.Generator().manual_seed(seed))
    return dev.info.in_min + u * (dev.info.in_max - dev.info.in_min)


def a_setting(dev, name: str, seed: int = 3) -> torch.Tensor:
    """A random in-range value of ``name`` (float64)."""
    p = dev.info.param(name)
    u = torch.rand(p.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return p.min + u * (p.max - p.min)


@pytest.fixture(params=list(SIMULATORS))
def case(request):
    make, name, units = SIMULATORS[request.param]
    return request.param, make, name, units


def test_declared_with_shape_range_and_units(case) -> None:
    _, make, name, units = case
    dev = make()
    p = dev.info.param(name)
    assert p.units == units and p.min < p.max
    value = dev.get(name)
    assert tuple(value.shape) == p.shape
    assert bool(((value >= p.min) & (value <= p.max)).all())


def test_defaults_are_the_fixed_physics() -> None:
    """The default values are what the seed drew (so today's results stand)."""
    make, *_ = SIMULATORS["cavity"]
    assert torch.equal(make().get("phase"), torch.zeros(12))
    make, *_ = SIMULATORS["optics"]
    optics = make()
    assert torch.equal(optics.get("mask"), optics.diffuser_phase)
    make, *_ = SIMULATORS["oscillators"]
    plate = make()
    assert torch.equal(plate.get("frequency"), plate.omega)
    wave = Wave2D(**WAVE)
    x_lo, x_hi, y_lo, y_hi = wave.design_box
    c = wave.c_lin[x_lo:x_hi + 1, y_lo:y_hi + 1]
    assert torch.allclose(wave.get("permittivity"), (wave.c0 / c) ** 2, rtol=1e-12)


def test_outputs_before_any_set_equal_those_of_the_defaults_set_again(case) -> None:
    """Setting the default value back changes nothing (up to rounding of the stored
    copy), and another seed's device is untouched by it."""
    _, make, name, _ = case
    dev = make()
    x = inputs(dev)
    y0 = dev.query(x)
    dev.set(name, dev.get(name))
    assert torch.allclose(dev.query(x), y0, rtol=1e-5, atol=1e-6 * float(y0.abs().max()))


def test_set_then_get_and_the_answer_changes(case) -> None:
    _, make, name, _ = case
    dev = make()
    x = inputs(dev)
    y0 = dev.query(x)
    v = a_setting(dev, name)
    dev.set(name, v)
    assert torch.allclose(dev.get(name).double(), v, rtol=1e-6, atol=1e-6)
    y1 = dev.query(x)
    assert (y1 - y0).abs().max() > 1e-3 * y0.abs().max(), "the parameter does not matter"
    # the same setting on a fresh device gives the same answer (the setting is the state)
    other = make()
    other.set(name, v.flatten())  # flat values are taken too (a serial SET carries them)
    assert torch.equal(other.query(x), y1)


def test_get_returns_a_copy(case) -> None:
    _, make, name, _ = case
    dev = make()
    v = dev.get(name)
    v += 0.01
    assert not torch.equal(dev.get(name), v)


@pytest.mark.parametrize("bad", ["above", "below", "nan", "inf", "shape", "unknown", "text"])
def test_bad_settings_are_refused_naming_device_and_parameter(case, bad: str) -> None:
    label, make, name, _ = case
    dev = make()
    p = dev.info.param(name)
    before = dev.get(name)
    value = a_setting(dev, name)
    target = name
    if bad == "above":
        value.view(-1)[1] = p.max + 0.5
        match = r"at \[.*outside"
    elif bad == "below":
        value.view(-1)[-1] = p.min - 0.5
        match = r"at \[.*outside"
    elif bad in ("nan", "inf"):
        value.view(-1)[0] = math.nan if bad == "nan" else math.inf
        match = "nan at|inf at"
    elif bad == "shape":
        value = torch.zeros(math.prod(p.shape) + 1)
        match = "takes shape"
    elif bad == "text":
        value = "loud"
        match = "takes real numbers"
    else:
        target, match = "volume", "has no parameter 'volume'; it has " + name
    with pytest.raises(ValueError, match=match) as err:
        dev.set(target, value)
    assert label in str(err.value) and (bad == "unknown" or repr(name) in str(err.value))
    assert torch.equal(dev.get(name), before)


def test_get_of_an_unknown_name_is_refused(case) -> None:
    _, make, name, _ = case
    with pytest.raises(ValueError, match="has no parameter 'volume'"):
        make().get("volume")


def test_params_state_round_trip(case) -> None:
    _, make, name, _ = case
    dev = make()
    x = inputs(dev)
    dev.set(name, a_setting(dev, name))
    state = dev.params_state()
    y = dev.query(x)
    fresh = make()
    fresh.load_params_state(state)
    assert torch.equal(fresh.get(name), dev.get(name))
    assert torch.equal(fresh.query(x), y)
    with pytest.raises(ValueError, match="missing .*unknown \\['volume'\\]"):
        fresh.load_params_state({"volume": torch.zeros(1)})


def test_simulate_with_params_keeps_the_current_values(case) -> None:
    _, make, name, _ = case
    dev = make()
    x = inputs(dev, 3)
    v = a_setting(dev, name)
    given = dev.simulate(x, params={name: v})
    assert torch.equal(dev.get(name), make().get(name))  # nothing set
    dev.set(name, v)
    assert torch.allclose(given, dev.query(x), rtol=1e-4, atol=1e-5 * float(given.abs().max()))
    with pytest.raises(ValueError, match="outside"):
        dev.simulate(x, params={name: torch.full(dev.info.param(name).shape, 1e9)})


def _objective_weights(dev) -> torch.Tensor:
    return torch.linspace(-1.0, 1.0, 3 * dev.info.n_out, dtype=torch.float64).view(3, -1)


def _objective(dev, x: torch.Tensor, name: str, value: torch.Tensor) -> float:
    return float((dev.simulate(x, params={name: value}) * _objective_weights(dev)).sum())


@pytest.mark.parametrize("label", list(SIMULATORS))
def test_param_vjp_matches_finite_differences(label: str) -> None:
    """d/dt objective(v + t d) at t = 0 from param_vjp equals the central difference, in
    float64, for a random direction ``d`` inside the range."""
    make, name, _ = SIMULATORS[label]
    dev = make(dtype=torch.float64)
    if label == "cavity":
        dev.tol = 1e-12
    x = inputs(dev, 3).double()
    p = dev.info.param(name)
    v = p.min + (p.max - p.min) * (0.3 + 0.4 * torch.rand(
        p.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64))
    d = torch.randn(p.shape, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    d *= 1e-3 * (p.max - p.min) / d.abs().max()
    dev.set(name, v)
    grad = dev.param_vjp(x, _objective_weights(dev))[name]
    assert grad.shape == torch.Size(p.shape)
    exact = float((grad * d).sum())
    numeric = (_objective(dev, x, name, v + d) - _objective(dev, x, name, v - d)) / 2
    assert abs(exact) > 0
    assert abs(exact - numeric) <= 1e-4 * abs(numeric) + 1e-12, (exact, numeric)


def test_param_vjp_refuses_unknown_names() -> None:
    dev = SIMULATORS["cavity"][0]()
    with pytest.raises(ValueError, match="has no parameter 'volume'"):
        dev.param_vjp(inputs(dev, 2), torch.ones(2, 3), names=("volume",))


def test_gradients_flow_through_simulate_into_a_leaf() -> None:
    """A trainer's route: a leaf tensor, an objective, backward()."""
    dev = SIMULATORS["oscillators"][0]()
    phase = dev.get("frequency").requires_grad_(True)
    dev.simulate(inputs(dev, 4), params={"frequency": phase}).square().sum().backward()
    assert phase.grad is not None and phase.grad.abs().max() > 0


def test_params_move_with_the_simulator() -> None:
    dev = SIMULATORS["cavity"][0]().to("meta")
    assert dev.get("phase").device.type == "meta"


def test_wave2d_parameter_gradients_do_not_depend_on_the_checkpoint_chunks() -> None:
    dev = Wave2D(**WAVE, dtype=torch.float64)
    x, w = inputs(dev, 2).double(), torch.ones(2, 2, dtype=torch.float64)
    grads = []
    for every in (dev.n_steps, 3, 7):
        dev.checkpoint_every = every
        grads.append(dev.param_vjp(x, w)["permittivity"])
    assert grads[0].abs().max() > 0
    for g in grads[1:]:
        assert torch.allclose(g, grads[0], rtol=1e-10, atol=1e-14)


@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
@pytest.mark.parametrize("label", list(SIMULATORS))
def test_cuda_parameters_match_cpu(label: str) -> None:
    make, name, _ = SIMULATORS[label]
    cpu, gpu = make(dtype=torch.float64), make(dtype=torch.float64).to("cuda")
    v = a_setting(cpu, name)
    cpu.set(name, v)
    gpu.set(name, v.cuda())
    assert gpu.get(name).device.type == "cuda"
    x = inputs(cpu, 3).double()
    want = cpu.query(x)
    assert torch.allclose(gpu.query(x), want, rtol=1e-8, atol=1e-10 * float(want.abs().max()))
    w = _objective_weights(cpu)
    g_cpu, g_gpu = cpu.param_vjp(x, w)[name], gpu.param_vjp(x.cuda(), w.cuda())[name]
    assert g_gpu.device.type == "cuda"
    scale = float(g_cpu.abs().max())
    assert torch.allclose(g_gpu.cpu(), g_cpu, rtol=1e-6, atol=1e-8 * scale)
