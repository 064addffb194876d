"""Where devices compute: ``Device.to`` and ``Simulator.to`` (placement on torch devices).

On the CPU, placement is checked on ``meta`` (every tensor a simulator holds must move)
and with ``meta`` as the default device (nothing made inside a simulation may land on
the default device instead of the input's). The CUDA tests compare a GPU simulation
with the CPU one and run only where a GPU is present.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

import pytest
import torch
from sim_helpers import rel_err, uniform

from phys.device import Device, DeviceInfo
from phys.devices.wrappers import Drifting, Noisy, StepChange
from phys.simulators.base import Simulator
from phys.simulators.cavity import Cavity
from phys.simulators.optics import Optics
from phys.simulators.oscillators import Oscillators
from phys.simulators.wave2d import Wave2D, _native_library, _NativeStepper, _Stepper

WAVE = dict(n_in=3, n_out=2, grid=(40, 40), n_steps=150, pml=8, seed=1)
F64 = torch.float64

#: Small simulators of every kind, float32 and float64, with and without noise.
CASES: dict[str, Callable[[], Simulator]] = {
    "cavity": lambda: Cavity(n_in=4, n_out=3, n_scatterers=8, noise=0.01, seed=1),
    "cavity-f64": lambda: Cavity(n_in=4, n_out=3, n_scatterers=8, seed=1, dtype=F64),
    "optics": lambda: Optics(n_in=4, n_out=4, grid=(12, 12), pad=4, noise=0.01, seed=1),
    "optics-f64": lambda: Optics(n_in=4, n_out=4, grid=(12, 12), pad=4, nonlinearity="shg",
                                 seed=1, dtype=F64),
    "oscillators": lambda: Oscillators(n_in=4, n_out=3, n_oscillators=8, noise=0.01, seed=1),
    "oscillators-f64": lambda: Oscillators(n_in=4, n_out=3, n_oscillators=8, periods=6,
                                           seed=1, dtype=F64),
    "wave2d": lambda: Wave2D(**WAVE),  # native kernels on the CPU when a compiler is found
    "wave2d-torch-linear": lambda: Wave2D(**WAVE, backend="torch", c_nl=0.0, dtype=F64),
    "wave2d-autograd": lambda: Wave2D(**WAVE, backend="torch", gradient="autograd"),
}
#: Largest relative difference of CPU and CUDA results: float32 rounding over a few
#: hundred steps (and the cavity's fixed point, solved to tol=1e-4), or float64's.
CUDA_TOLERANCE = {torch.float32: 1e-3, torch.float64: 1e-8}

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
needs_compiler = pytest.mark.skipif(_native_library() is None,
                                    reason="the native wave2d kernels need a C compiler")


def tensors(obj: Any, path: str = "dev", seen: set[int] | None = None,
            ) -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor reachable from ``obj``: through containers and the attributes of
    devices and of physnn's own objects (steppers, configs, ...), each with its path."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        yield path, obj
    elif isinstance(obj, tuple | list):
        for i, value in enumerate(obj):
            yield from tensors(value, f"{path}[{i}]", seen)
    elif isinstance(obj, Mapping):
        for key, value in obj.items():
            yield from tensors(value, f"{path}[{key!r}]", seen)
    elif isinstance(obj, Device) or (type(obj).__module__.startswith("phys.")
                                     and hasattr(obj, "__dict__")):
        for key, value in vars(obj).items():
            yield from tensors(value, f"{path}.{key}", seen)


def off(dev: Any, device_type: str) -> list[str]:
    """Paths of the tensors reachable from ``dev`` that are not on ``device_type``."""
    return [f"{p} on {t.device}" for p, t in tensors(dev) if t.device.type != device_type]


def inputs(dev: Device, rows: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs in range and an output gradient, float32."""
    g = torch.randn(rows, dev.info.n_out, generator=torch.Generator().manual_seed(5))
    return uniform(dev, rows, seed=2).float(), g


# -- the contract: every simulator moves, every tensor with it ------------------------------
@pytest.mark.parametrize("case", CASES)
def test_to_meta_moves_every_tensor(case: str) -> None:
    dev = CASES[case]()
    before = dict(tensors(dev))
    assert before and not off(dev, "cpu")
    assert dev.to("meta") is dev
    assert dev.torch_device == torch.device("meta")
    after = dict(tensors(dev))
    assert after and off(dev, "meta") == []
    changed = {p: (before[p].dtype, t.dtype) for p, t in after.items()
               if p in before and before[p].dtype != t.dtype}
    assert changed == {}  # float32 / float64 / int64 / bool / bfloat16 all kept


def test_cavity_keeps_its_bfloat16_copy() -> None:
    cav = Cavity(n_in=4, n_out=3, n_scatterers=8).to("meta")
    assert cav._g_bf16.dtype == torch.bfloat16 and cav._g_bf16.device.type == "meta"
    assert Cavity(n_in=4, n_out=3, n_scatterers=8, dtype=F64).to("meta")._g_bf16 is None


@pytest.mark.parametrize("case", CASES)
def test_nothing_is_made_on_the_default_device(case: str) -> None:
    """With ``meta`` as the default device, a simulation on the CPU still works only if
    every tensor made inside it follows the input's device (or is made on the host on
    purpose, like the noise)."""
    dev, ref = CASES[case](), CASES[case]()
    x, g = inputs(dev)
    want_y, want_g = ref.query(x), ref.vjp(x, g)
    with torch.device("meta"):
        y, grad = dev.query(x), dev.vjp(x, g)
    assert y.device.type == grad.device.type == "cpu"
    assert torch.equal(y, want_y) and torch.equal(grad, want_g)


def _targets() -> list[str]:
    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


@pytest.mark.parametrize("target", _targets())
@pytest.mark.parametrize("case", CASES)
def test_there_and_back_matches_a_fresh_device(case: str, target: str) -> None:
    dev, fresh = CASES[case]().to(target).to(torch.device("cpu")), CASES[case]()
    assert dev.torch_device == torch.device("cpu") and off(dev, "cpu") == []
    x, g = inputs(dev)
    assert torch.equal(dev.query(x), fresh.query(x))
    assert torch.equal(dev.vjp(x, g), fresh.vjp(x, g))


def test_moving_off_meta_is_refused_and_changes_nothing() -> None:
    dev = CASES["wave2d"]().to("meta")
    with pytest.raises(ValueError, match=r"cannot move 'wave2d' from meta to cpu"):
        dev.to("cpu")
    assert dev.torch_device == torch.device("meta") and off(dev, "meta") == []


class _Held(NamedTuple):
    a: torch.Tensor
    b: float


class _Containers(Simulator):
    """A simulator that keeps its tensors in every container the mechanism walks."""

    def __init__(self) -> None:
        super().__init__()
        self.info = DeviceInfo(name="containers", n_in=2, n_out=2, in_min=-1.0, in_max=1.0,
                               max_batch=8)
        one = torch.ones(2)
        self.in_list = [one, (one.double(), {"deep": [one.long()]})]
        self.in_dict = {"w": torch.eye(2), "n": 3}
        self.named = _Held(torch.zeros(2), 0.5)
        self.plain = "text"

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.in_dict["w"] + self.named.a


def test_to_walks_tuples_lists_dicts_and_named_tuples() -> None:
    dev = _Containers().to("meta")
    assert off(dev, "meta") == []
    assert isinstance(dev.in_list, list) and isinstance(dev.in_list[1], tuple)
    assert dev.in_list[1][1]["deep"][0].dtype == torch.int64
    assert isinstance(dev.named, _Held) and dev.named.b == 0.5
    assert dev.in_dict["n"] == 3 and dev.plain == "text"


class _Stuck(torch.Tensor):
    """A tensor that refuses to move."""

    @classmethod
    def __torch_function__(cls, func: Any, types: Any, args: Any = (),
                           kwargs: Any = None) -> Any:
        if func is torch.Tensor.to:
            raise NotImplementedError("this tensor stays where it is")
        return super().__torch_function__(func, types, args, kwargs or {})


def test_a_failed_move_leaves_every_tensor_where_it_was() -> None:
    dev = _Containers()
    dev.stuck = torch.ones(2).as_subclass(_Stuck)  # walked last: the others move first
    with pytest.raises(ValueError, match=r"cannot move 'containers' from cpu to meta: this "
                                         r"tensor stays"):
        dev.to("meta")
    assert dev.torch_device == torch.device("cpu") and off(dev, "cpu") == []


# -- wave2d: the native kernels stay on the CPU ---------------------------------------------
@needs_compiler
def test_wave2d_auto_gives_way_to_torch_off_the_cpu() -> None:
    dev = Wave2D(**WAVE)
    assert dev.backend == "native" and isinstance(dev._stepper, _NativeStepper)
    dev.to("meta")
    assert dev.backend == dev.info.extra["backend"] == "torch"
    assert type(dev._stepper) is _Stepper
    assert "CPU only" in dev.info.extra["backend_note"]
    home = Wave2D(**WAVE).to("cpu")
    assert home.backend == home.info.extra["backend"] == "native"
    assert "backend_note" not in home.info.extra


@needs_compiler
def test_wave2d_native_refuses_to_leave_the_cpu() -> None:
    dev = Wave2D(**WAVE, backend="native")
    with pytest.raises(ValueError, match=r"backend='native'.*CPU only.*meta"):
        dev.to("meta")
    assert dev.backend == "native" and dev.torch_device == torch.device("cpu")
    assert off(dev, "cpu") == []
    assert dev.to("cpu") is dev


@needs_compiler
def test_native_stepper_refuses_maps_off_the_cpu() -> None:
    """Its kernels take raw pointers: maps elsewhere must never reach them."""
    field = torch.ones(6, 6, dtype=F64, device="meta")
    cells = torch.tensor([[1, 1]], device="meta")
    with pytest.raises(ValueError, match=r"CPU only, got maps on meta"):
        _NativeStepper(field, field, field, 0.0, cells, cells, torch.float32)


# -- bad values, and devices that compute on the host ---------------------------------------
class _Host(Device):
    """A query-only device computing on the host (like hardware on a port)."""

    def __init__(self) -> None:
        super().__init__()
        self.info = DeviceInfo(name="host", n_in=3, n_out=2, in_min=-1.0, in_max=1.0,
                               max_batch=4)
        self.w = torch.arange(6, dtype=torch.float32).reshape(3, 2) / 10

    def _query(self, x: torch.Tensor) -> torch.Tensor:
        assert x.device.type == "cpu"
        return x @ self.w


BAD = ["cuda:99", "gpu0", "", "cuda:-1", 3, None]


@pytest.mark.parametrize("bad", BAD)
@pytest.mark.parametrize("make", [CASES["cavity"], _Host, lambda: Noisy(CASES["optics"](), 0.1)],
                         ids=["simulator", "host", "wrapper"])
def test_bad_values_are_refused_naming_them(make: Callable[[], Device], bad: Any) -> None:
    dev = make()
    with pytest.raises(ValueError, match=repr(bad) if isinstance(bad, str) else str(bad)):
        dev.to(bad)
    assert dev.torch_device == torch.device("cpu") and off(dev, "cpu") == []


def test_host_device_stays_on_the_host() -> None:
    dev = _Host()
    x = uniform(dev, 5).float()
    want = dev.query(x)
    assert dev.to("meta") is dev and dev.to(torch.device("cpu")) is dev
    assert dev.torch_device == torch.device("cpu")
    assert torch.equal(dev.query(x), want)


def test_pennylane_circuit_stays_on_the_host() -> None:
    pytest.importorskip("pennylane")
    import phys

    with phys.open("pennylane:default.qubit", wires=2, layers=1) as dev:
        x = torch.full((3, 2), 0.3)
        want = dev.query(x)
        assert dev.to("meta") is dev and dev.torch_device == torch.device("cpu")
        assert torch.equal(dev.query(x), want)


def test_wrappers_move_the_device_they_wrap() -> None:
    noisy = Noisy(CASES["cavity"](), sigma=0.05, seed=3)
    assert noisy.to("meta") is noisy
    assert noisy.torch_device == noisy.device.torch_device == torch.device("meta")
    assert off(noisy, "meta") == []
    host = Noisy(_Host(), sigma=0.05).to("meta")  # a host device keeps its wrapper there
    assert host.torch_device == host.device.torch_device == torch.device("cpu")


@pytest.mark.parametrize("wrap", [lambda d: Noisy(d, sigma=0.05, seed=3),
                                  lambda d: Drifting(d, StepChange(at=4, spread=0.2))],
                         ids=["noisy", "drifting"])
def test_wrapper_there_and_back_matches_a_fresh_one(wrap: Callable[[Device], Device]) -> None:
    dev, fresh = wrap(CASES["optics"]()).to("cpu"), wrap(CASES["optics"]())
    x, _ = inputs(dev, 8)
    for _ in range(2):  # the drift steps after 4 samples
        assert torch.equal(dev.query(x), fresh.query(x))


# -- on a GPU ------------------------------------------------------------------------------
@needs_cuda
@pytest.mark.parametrize("case", CASES)
def test_cuda_matches_cpu(case: str) -> None:
    cpu, gpu = CASES[case](), CASES[case]().to("cuda")
    assert gpu.torch_device.type == "cuda" and off(gpu, "cuda") == []
    x, g = inputs(cpu, 16)
    tol = CUDA_TOLERANCE[cpu.dtype]
    want = cpu.query(x), cpu.query(x)  # the noisy ones draw new noise each time
    from_host, on_gpu = gpu.query(x), gpu.query(x.cuda())
    assert from_host.device.type == "cpu" and on_gpu.device.type == "cuda"
    assert rel_err(from_host, want[0]) < tol and rel_err(on_gpu.cpu(), want[1]) < tol
    grad = gpu.vjp(x.cuda(), g.cuda())
    assert grad.device.type == "cuda" and rel_err(grad.cpu(), cpu.vjp(x, g)) < tol


@needs_cuda
@needs_compiler
def test_cuda_wave2d_runs_torch_and_comes_back_native() -> None:
    dev = Wave2D(**WAVE).to("cuda")
    assert dev.backend == "torch" and "CPU only" in dev.info.extra["backend_note"]
    dev.to("cpu")
    assert dev.backend == "native" and "backend_note" not in dev.info.extra


@needs_cuda
def test_cuda_callers_get_answers_on_their_device() -> None:
    host = _Host().to("cuda")
    assert host.torch_device == torch.device("cpu")
    x = uniform(host, 5).float()
    y = host.query(x.cuda())
    assert y.device.type == "cuda" and torch.equal(y.cpu(), host.query(x))
    for wrap in (lambda d: Noisy(d, sigma=0.05, seed=3),
                 lambda d: Drifting(d, StepChange(at=4, spread=0.2))):
        cpu, gpu = wrap(CASES["optics"]()), wrap(CASES["optics"]()).to("cuda")
        assert gpu.torch_device.type == "cuda" and off(gpu, "cuda") == []
        x, _ = inputs(cpu, 8)
        for _ in range(2):
            y = gpu.query(x.cuda())
            assert y.device.type == "cuda" and rel_err(y.cpu(), cpu.query(x)) < 1e-3
