"""The 2-D scalar wave simulator (phys.simulators.wave2d)."""

from __future__ import annotations

import dataclasses
import math
import pathlib
from functools import partial

import pytest
import torch
from sim_helpers import rel_err, uniform

import phys
import phys.simulators.wave2d as wave2d_module
import phys.simulators.wave2d.native as native_module
from phys.simulators.wave2d import Wave2D, Wave2DConfig, _native_library
from phys.testing import check_device

needs_compiler = pytest.mark.skipif(_native_library() is None, reason="no C compiler")
BACKENDS = [pytest.param("native", marks=needs_compiler), "torch"]

# small, fast configurations: 40 x 40 cells, an 8-cell absorbing layer, short pulses
PULSE = dict(n_in=3, n_out=2, grid=(40, 40), n_steps=150, pml=8, pulse_cycles=1.5, seed=1)
WAVEFORM = dict(n_out=3, input_mode="waveform", grid=(40, 40), n_steps=120, pml=8, seed=2)
# tiny float64 configurations for gradient checks: 16 x 16 cells, 40 steps, strong Kerr term
TINY = dict(grid=(16, 16), pml=3, n_steps=40, f0=343.0 / (6 * 5e-3), pulse_cycles=1.0,
            c_nl=0.5 * 343.0, n_scatterers=3, scatterer_radius=(1.0, 2.0),
            dtype=torch.float64)




# -- contract -------------------------------------------------------------------------------

@pytest.mark.parametrize("kw", [
    dict(PULSE, max_batch=4),
    dict(WAVEFORM, max_batch=4),
    dict(PULSE, medium="lens", placement="random", dtype=torch.float64, max_batch=3),
    dict(PULSE, medium="homogeneous", c_nl=0.0, normalize=True, in_range=(0.0, 2.0),
         max_batch=4),
], ids=["pulse", "waveform", "lens-random-float64", "linear-normalized"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_conformance(kw: dict, backend: str) -> None:
    kw = dict(kw, backend=backend)
    passed = check_device(Wave2D(**kw), reopen=partial(Wave2D, **kw))
    assert "seeded" in passed and "batch-independence" in passed


def test_info() -> None:
    dev = Wave2D(**PULSE)
    i = dev.info
    assert (i.name, i.n_in, i.n_out, i.in_min, i.in_max) == ("wave2d", 3, 2, -1.0, 1.0)
    assert i.differentiable and not i.stochastic
    assert i.extra["grid"] == [40, 40] and i.extra["input_mode"] == "pulse"
    assert Wave2D(**WAVEFORM).info.n_in == 120
    assert Wave2D(**WAVEFORM, n_in=120).info.n_in == 120


# -- physics ----------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-9), (torch.float32, 1e-3)])
def test_energy_is_conserved_without_damping(dtype: torch.dtype, tol: float) -> None:
    # scatterers make c vary in space; sigma = 0 makes the edge a hard wall
    dev = Wave2D(**dict(PULSE, pml_sigma=0.0, c_nl=0.0, dtype=dtype))
    x = torch.arange(40.0)
    bump = torch.exp(-((x[:, None] - 22) ** 2 + (x[None, :] - 17) ** 2) / 8.0)
    u_prev, u = dev.propagate(bump.to(dtype))  # one step from rest
    e0 = dev.energy(u_prev, u)
    assert e0 > 0
    energies = []
    for _ in range(6):
        u_prev, u = dev.propagate(u, u_prev, n_steps=100)
        energies.append(float(dev.energy(u_prev, u)))
    assert max(abs(e / float(e0) - 1) for e in energies) < tol
    assert float(u.abs().max()) > 0.01  # the field is still there: energy moved around


def test_absorbing_layer_removes_energy() -> None:
    dev = Wave2D(**dict(PULSE, c_nl=0.0))
    x = torch.arange(40.0)
    bump = torch.exp(-((x[:, None] - 20) ** 2 + (x[None, :] - 20) ** 2) / 8.0)
    u_prev, u = dev.propagate(bump)
    e0 = float(dev.energy(u_prev, u))
    energies = [e0]
    for _ in range(4):
        u_prev, u = dev.propagate(u, u_prev, n_steps=50)
        energies.append(float(dev.energy(u_prev, u)))
    assert all(b < a for a, b in zip(energies, energies[1:], strict=False))
    assert energies[-1] < 0.05 * e0


def _envelope(signal: torch.Tensor) -> torch.Tensor:
    """Magnitude of the analytic signal (Hilbert transform via FFT)."""
    n = signal.numel()
    weights = torch.zeros(n, dtype=torch.float64)
    weights[0] = 1
    weights[1:(n + 1) // 2] = 2
    if n % 2 == 0:
        weights[n // 2] = 1
    return torch.fft.ifft(torch.fft.fft(signal.double()) * weights).abs()


def _peak(env: torch.Tensor) -> float:
    """Position of the maximum, refined by a parabola through its neighbours."""
    k = int(env.argmax())
    a, b, c = (float(v) for v in env[k - 1:k + 2])
    return k + 0.5 * (a - c) / (a - 2 * b + c)


def test_pulse_arrives_after_distance_over_c() -> None:
    dev = Wave2D(n_in=1, n_out=1, grid=(90, 50), pml=15, n_steps=260, medium="homogeneous",
                 c_nl=0.0, pulse_cycles=1.5, dtype=torch.float64)
    signal = dev.probe_signals(torch.ones(1, 1, dtype=torch.float64))[0, :, 0]
    emitted = _peak(_envelope(torch.nn.functional.pad(dev._waveform, (0, 260))[:260]))
    received = _peak(_envelope(signal))
    distance = float((dev.probes[0] - dev.sources[0]).double().norm()) * dev.h
    expected = distance / dev.c0 / dev.dt
    assert expected > 50  # a real distance: about 86 steps
    assert abs(received - emitted - expected) < 2.0


def test_linear_field_is_bounded_by_one() -> None:
    dev = Wave2D(**dict(PULSE, c_nl=0.0))
    st = dev._stepper
    corners = torch.tensor([[1.0, 1.0, 1.0], [1.0, -1.0, 1.0], [-1.0, 1.0, -1.0]])
    peak = torch.zeros(3)

    def monitor(u: torch.Tensor) -> None:
        torch.maximum(peak, u.abs().amax(1), out=peak)

    st.march(st.zeros(3), st.zeros(3), 0, dev.n_steps, drive=dev._drive(corners).unbind(0),
             monitor=monitor)
    assert float(peak.max()) <= 1 + 1e-5
    assert float(peak.max()) > 0.5  # the bound is nearly reached


def test_response_is_nonlinear_only_with_kerr_term() -> None:
    x = uniform(Wave2D(**PULSE), 8, shrink=0.5)
    linear = Wave2D(**dict(PULSE, c_nl=0.0))
    torch.testing.assert_close(linear.query(2 * x), 4 * linear.query(x), rtol=1e-5, atol=1e-9)
    kerr = Wave2D(**PULSE)
    assert rel_err(kerr.query(2 * x), 4 * kerr.query(x)) > 0.02


@pytest.mark.parametrize("backend", BACKENDS)
def test_fast_stepper_matches_plain_reference(backend: str) -> None:
    for kw in (PULSE, WAVEFORM):
        dev = Wave2D(**kw, backend=backend)
        assert dev.backend == backend
        ref = Wave2D(**dict(kw, dtype=torch.float64, gradient="autograd"))
        x = uniform(dev, 4).requires_grad_(True)
        assert rel_err(dev.query(x), ref.simulate(x).detach()) < 1e-5


@needs_compiler
@pytest.mark.parametrize("c_nl", [0.0, 0.3 * 343.0])
@pytest.mark.parametrize("threads", [1, 2])
def test_native_matches_torch(c_nl: float, threads: int) -> None:
    kw = dict(PULSE, c_nl=c_nl, dtype=torch.float64, checkpoint_every=9)
    native, plain = Wave2D(**kw, backend="native"), Wave2D(**kw, backend="torch")
    x = uniform(native, 5)
    g = torch.randn(5, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)  # the native kernels split the batch over threads
    try:
        torch.testing.assert_close(native.query(x), plain.query(x), rtol=1e-6, atol=1e-9)
        torch.testing.assert_close(native.vjp(x, g), plain.vjp(x, g), rtol=1e-9, atol=1e-12)
    finally:
        torch.set_num_threads(before)


def test_backend_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(native_module, "_native_library", lambda: None)
    assert Wave2D(**PULSE).backend == "torch"  # auto falls back
    with pytest.raises(RuntimeError, match="C compiler"):
        Wave2D(**PULSE, backend="native")
    assert Wave2D(**PULSE).info.extra["backend"] == "torch"


def test_seed_reproducible_and_distinct() -> None:
    x = uniform(Wave2D(**PULSE), 6)
    a, b = Wave2D(**PULSE).query(x), Wave2D(**PULSE).query(x)
    assert torch.equal(a, b)
    c = Wave2D(**dict(PULSE, seed=7)).query(x)
    assert rel_err(c, a) > 0.05


def test_media() -> None:
    lens = Wave2D(**dict(PULSE, medium="lens"))
    homogeneous = Wave2D(**dict(PULSE, medium="homogeneous"))
    scatter = Wave2D(**PULSE)
    assert (homogeneous.c_lin == homogeneous.c0).all()
    for dev in (lens, scatter):
        inside = dev.c_lin == dev.c1
        assert 10 < int(inside.sum()) < 40 * 40 / 2
        assert not inside[:8].any() and not inside[-8:].any()  # nothing in the layer
        cells = torch.cat([dev.sources, dev.probes])
        assert (dev.c_lin[cells[:, 0], cells[:, 1]] == dev.c0).all()


def test_outputs_are_time_averaged_probe_intensities() -> None:
    dev = Wave2D(**PULSE)
    x = uniform(dev, 4)
    signals = dev.probe_signals(x)
    assert signals.shape == (4, 150, 2)
    torch.testing.assert_close(dev.query(x), signals.square().mean(1).float())
    assert (dev.query(x) >= 0).all()
    assert torch.equal(dev.query(torch.zeros(2, 3)), torch.zeros(2, 2))


def test_normalize() -> None:
    dev = Wave2D(**dict(PULSE, normalize=True))
    y = dev.query(uniform(dev, 4))
    torch.testing.assert_close(y.sum(1), torch.ones(4))
    assert torch.equal(dev.query(torch.zeros(1, 3)), torch.zeros(1, 2))


# -- gradients ------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["pulse", "waveform"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck(mode: str, backend: str) -> None:
    kw = dict(TINY, n_in=2, n_out=2) if mode == "pulse" else dict(TINY, n_out=2,
                                                                   input_mode="waveform")
    dev = Wave2D(**kw, checkpoint_every=7, backend=backend)
    x = uniform(dev, 2 if mode == "pulse" else 1, shrink=0.9).requires_grad_(True)
    assert torch.autograd.gradcheck(dev.simulate, (x,), check_undefined_grad=False)


@pytest.mark.parametrize("every", [1, 7, 40, 100])
@pytest.mark.parametrize("c_nl", [0.0, 0.5 * 343.0])
@pytest.mark.parametrize("backend", BACKENDS)
def test_checkpointed_adjoint_matches_plain_autograd(every: int, c_nl: float,
                                                     backend: str) -> None:
    kw = dict(TINY, n_in=3, n_out=2, c_nl=c_nl)
    dev = Wave2D(**kw, checkpoint_every=every, backend=backend)
    ref = Wave2D(**kw, gradient="autograd")
    x = uniform(dev, 3).requires_grad_(True)
    g = torch.randn(3, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    (expected,) = torch.autograd.grad(ref.simulate(x), x, g)
    torch.testing.assert_close(dev.vjp(x, g), expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_float32_gradient_matches_float64(backend: str) -> None:
    dev = Wave2D(**PULSE, backend=backend)
    ref = Wave2D(**dict(PULSE, dtype=torch.float64, backend="torch"))
    x = uniform(dev, 4)
    g = torch.randn(4, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert rel_err(dev.vjp(x.float(), g.float()), ref.vjp(x, g)) < 1e-3


@pytest.mark.parametrize("backend", BACKENDS)
def test_query_keeps_no_checkpoints(backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    stepper = wave2d_module._NativeStepper if backend == "native" else wave2d_module._Stepper
    forward = stepper.forward

    def spy(self, drive, n_steps, every=0):
        calls.append(every)
        return forward(self, drive, n_steps, every)

    monkeypatch.setattr(stepper, "forward", spy)
    dev = Wave2D(**PULSE, backend=backend)
    x = uniform(dev, 3).float().requires_grad_(True)
    y = dev.query(x)
    assert not y.requires_grad and calls == [0]
    dev.simulate(x).sum().backward()
    assert calls == [0, dev.checkpoint_every]


def test_simulate_keeps_graph_and_matches_query() -> None:
    dev = Wave2D(**PULSE)
    x = uniform(dev, 3).float().requires_grad_(True)
    y = dev.simulate(x)
    assert y.requires_grad
    torch.testing.assert_close(y.detach(), dev.query(x))
    assert dev.simulate(x[0]).shape == (2,)
    with pytest.raises(ValueError, match="outside"):
        dev.simulate(torch.full((3,), 2.0))
    with pytest.raises(ValueError, match="outside"):
        dev.probe_signals(torch.full((1, 3), 2.0))


# -- construction and bookkeeping ------------------------------------------------------------

def test_cfl_violation_names_the_fix() -> None:
    limit = 5e-3 / (343.0 * math.sqrt(2))
    Wave2D(**dict(PULSE, c_nl=0.0, medium="homogeneous", dt=limit))  # at the limit: fine
    with pytest.raises(ValueError, match=r"CFL.*reduce dt"):
        Wave2D(**dict(PULSE, c_nl=0.0, medium="homogeneous", dt=1.01 * limit))
    with pytest.raises(ValueError, match="c_nl"):  # the Kerr term raises c_max
        Wave2D(**dict(PULSE, c_nl=50.0, medium="homogeneous", dt=limit))
    with pytest.raises(ValueError, match="CFL"):  # fast scatterers raise c_max too
        Wave2D(**dict(PULSE, c_nl=0.0, c1=400.0, dt=limit))


@pytest.mark.parametrize("kw,match", [
    (dict(pml=20), r"grid Nx=40 .*absorbing layer.*need Nx >= 47"),
    (dict(grid=(40, 22)), r"grid Ny=22 .*sources"),
    (dict(n_out=30), r"grid Ny=40 .*probes"),
    (dict(n_steps=40), "shorter than the pulse"),
    (dict(grid=(120, 40), n_steps=95), "travel time"),
], ids=["nx", "ny-sources", "ny-probes", "pulse-window", "travel"])
def test_too_small_raises(kw: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Wave2D(**dict(PULSE, **kw))


@pytest.mark.parametrize("bad", [
    {"input_mode": "audio"}, {"medium": "glass"}, {"placement": "grid"},
    {"gradient": "numeric"}, {"grid": (40,)}, {"grid": (40.0, 40)}, {"n_steps": 0},
    {"h": 0.0}, {"c0": -1.0}, {"c1": float("nan")}, {"c_nl": float("inf")},
    {"c_nl": -400.0}, {"dt": 0.0}, {"f0": 1e9}, {"pml": -1}, {"pml_sigma": -1.0},
    {"pml_order": 0.0}, {"scatterer_radius": (3.0, 1.0)}, {"checkpoint_every": 0},
    {"settle_seconds": -1.0}, {"dtype": torch.float16}, {"n_in": 0}, {"max_batch": 0},
    {"in_range": (1.0, -1.0)}, {"n_sources": 0},
])
def test_bad_arguments(bad: dict) -> None:
    with pytest.raises(ValueError):
        Wave2D(**{**PULSE, **bad})


def test_waveform_length_must_match() -> None:
    with pytest.raises(ValueError, match="n_in must be None or n_steps=120"):
        Wave2D(**dict(WAVEFORM, n_in=64))


def test_propagate_validates_shapes() -> None:
    dev = Wave2D(**PULSE)
    with pytest.raises(ValueError, match="u must have shape"):
        dev.propagate(torch.zeros(30, 40))
    with pytest.raises(ValueError, match="u_prev"):
        dev.propagate(torch.zeros(2, 40, 40), torch.zeros(40, 40))
    u_prev, u = dev.propagate(torch.zeros(40, 40), n_steps=3)
    assert u.shape == u_prev.shape == (40, 40)


def test_lab_cost() -> None:
    dev = Wave2D(**dict(PULSE, max_batch=4, settle_seconds=0.25))
    dev.query(uniform(dev, 6))
    assert dev.stats.samples == 6 and dev.stats.queries == 2
    window = dev.n_steps * dev.dt
    assert dev.stats.lab_seconds == pytest.approx(6 * (window + 0.25))
    assert dev.stats.joules is None
    default = Wave2D(**PULSE)
    default.query(uniform(default, 1))
    assert default.stats.lab_seconds == pytest.approx(2 * window)


# -- the configuration -------------------------------------------------------------------------

def test_config_is_frozen_and_holds_derived_defaults() -> None:
    cfg = Wave2DConfig(**PULSE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.n_steps = 10  # type: ignore[misc]
    dev = Wave2D(**PULSE)
    assert dev.config == cfg
    assert (cfg.dt, cfg.f0, cfg.c1, cfg.c_nl) == (dev.dt, dev.f0, dev.c1, dev.c_nl)
    assert cfg.checkpoint_every == math.ceil(math.sqrt(150)) and cfg.n_in == 3
    assert Wave2DConfig(**dataclasses.asdict(cfg)) == cfg  # derived values check again
    longer = dataclasses.replace(cfg, n_steps=400, checkpoint_every=None)
    assert longer.checkpoint_every == 20 and longer.dt == cfg.dt
    assert Wave2DConfig(**WAVEFORM).n_in == 120


@pytest.mark.parametrize("option,value", [
    ("n_steps", 0), ("h", 0.0), ("medium", "glass"), ("dtype", torch.float16),
    ("max_batch", 0), ("in_range", (1.0, -1.0)), ("scatterer_radius", (3.0, 1.0)),
    ("checkpoint_every", 0), ("pml_sigma", -1.0), ("c_nl", float("inf")),
    ("settle_seconds", -1.0), ("grid", (40,)),
])
def test_config_error_names_the_option(option: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"\b{option}\b"):
        Wave2DConfig(**{**PULSE, option: value})


def test_config_is_checked_once(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = Wave2DConfig(**PULSE)
    calls = []
    check = Wave2DConfig.__post_init__

    def counted(self: Wave2DConfig) -> None:
        calls.append(self)
        check(self)

    monkeypatch.setattr(Wave2DConfig, "__post_init__", counted)
    dev = Wave2D(config=cfg)  # a checked config is used as it is
    assert calls == [] and dev.config is cfg
    Wave2D(**PULSE)
    assert len(calls) == 1


def test_config_and_keywords_build_the_same_device() -> None:
    x = uniform(Wave2D(**PULSE), 4)
    by_config = Wave2D(config=Wave2DConfig(**PULSE))
    assert torch.equal(by_config.query(x), Wave2D(**PULSE).query(x))
    assert by_config.info == Wave2D(**PULSE).info
    with pytest.raises(TypeError, match="not both.*n_out"):
        Wave2D(config=Wave2DConfig(**PULSE), n_out=3)
    with pytest.raises(TypeError, match="Wave2DConfig"):
        Wave2D(config=PULSE)  # type: ignore[arg-type]


def test_keyword_options_are_the_config_fields() -> None:
    spec = phys.DeviceSpec.parse("wave2d")
    assert spec.accepted_options == tuple(f.name for f in dataclasses.fields(Wave2DConfig))
    with pytest.raises(ValueError, match="'wave2d' has no option 'bogus'; it accepts: n_in"):
        spec.with_options(bogus=1).open()


# -- the native kernels --------------------------------------------------------------------------

def test_kernel_source_is_package_data() -> None:
    source = native_module.kernel_source()
    assert source.is_file() and source.name == "kernels.c"
    assert pathlib.Path(str(source)).parent == pathlib.Path(wave2d_module.__file__).parent
    assert "wave2d_march" in source.read_text()
    tomllib = pytest.importorskip("tomllib")
    pyproject = pathlib.Path(__file__).parents[2] / "pyproject.toml"
    package_data = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["package-data"]
    assert "*.c" in package_data["phys.simulators.wave2d"]


@needs_compiler
def test_native_backend_compiles_from_the_kernel_source(
        monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    libraries = _native_library()
    assert set(libraries) == {torch.float32, torch.float64}
    for lib in libraries.values():
        assert all(hasattr(lib, f"wave2d_{name}") for name in ("march", "tape", "adjoint"))
    # without the source there is nothing to compile (uncached call)
    monkeypatch.setattr(native_module, "kernel_source", lambda: tmp_path / "missing.c")
    assert native_module._native_library.__wrapped__() is None
