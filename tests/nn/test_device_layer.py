import pytest
import torch

import phys
from phys.devices.wrappers import Noisy
from phys.nn import GRAD_ROUTES, DeviceLayer, PhysicsAware, device_layers, physics_aware
from phys.train.twin import SurrogateTwin


class LinearToy(phys.Device):
    """Linear device ``u @ W`` on inputs in [0, 2]; records what reaches it."""

    def __init__(self, n_in=4, n_out=3):
        super().__init__()
        self.info = phys.DeviceInfo("toy", n_in, n_out, 0.0, 2.0, max_batch=100)
        self.weight = torch.arange(n_in * n_out, dtype=torch.float32).view(n_in, n_out) / 10
        self.seen = []

    def _query(self, x):
        self.seen.append(x.clone())
        return x @ self.weight


class KnownTwin:
    """A twin whose Jacobian is a known matrix ``J (n_out, n_in)``, whatever the device."""

    def __init__(self, jacobian):
        self.jacobian, self.calls = jacobian, 0

    def vjp(self, u, grad_out):
        self.calls += 1
        return grad_out @ self.jacobian


def test_out_of_range_inputs_are_mapped_into_range_while_query_refuses_them():
    dev = LinearToy()
    layer = DeviceLayer(dev, gain=3.0)
    x = torch.tensor([[1e6, -1e6, 0.0, 3.0], [0.0, 0.0, 0.0, 0.0], [-5.0, 9.0, 2.5, -0.1]])
    with pytest.raises(ValueError, match="outside the device range"):
        dev.query(x)
    y = layer(x)
    u = dev.seen[-1]
    assert ((u >= 0) & (u <= 2)).all() and u.shape == (3, 4)
    assert torch.allclose(y, u @ dev.weight)
    assert not torch.allclose(u[0], u[2])  # the map keeps inputs apart


def test_projection_is_a_fixed_seeded_buffer_when_widths_differ():
    dev = LinearToy(n_in=4)
    layer = DeviceLayer(dev, 10, seed=2)
    assert layer.projection.shape == (10, 4)
    assert dict(layer.named_buffers()).keys() == {"projection", "in_min", "in_max"}
    assert list(layer.parameters()) == []
    assert torch.equal(layer.projection, DeviceLayer(LinearToy(), 10, seed=2).projection)
    assert not torch.equal(layer.projection, DeviceLayer(LinearToy(), 10, seed=3).projection)
    assert layer(torch.randn(5, 10)).shape == (5, 3)
    assert DeviceLayer(LinearToy()).projection is None  # equal widths: no projection


def test_grad_none_gives_no_gradient_to_the_input():
    layer = DeviceLayer(LinearToy())
    x = torch.randn(6, 4, requires_grad=True)
    y = layer(x)
    assert not y.requires_grad
    with pytest.raises(RuntimeError):
        y.sum().backward()
    assert x.grad is None


def test_grad_twin_measures_the_device_and_differentiates_through_the_twin():
    dev = LinearToy()
    jacobian = torch.randn(3, 4)
    twin = KnownTwin(jacobian)
    layer = DeviceLayer(dev, grad="twin", twin=twin)
    x = torch.randn(5, 4, requires_grad=True)
    y = layer(x)
    u = layer.encode(x.detach())
    assert torch.allclose(y.detach(), u @ dev.weight) and dev.stats.samples == 5
    g = torch.randn(5, 3)
    (grad_x,) = torch.autograd.grad(y, x, g)
    # chain rule: the twin's vjp, then the encoder's own Jacobian
    u_x = layer.encode(x)
    (expected,) = torch.autograd.grad(u_x, x, g @ jacobian, retain_graph=True)
    assert twin.calls == 1
    assert torch.allclose(grad_x, expected, atol=1e-6)
    (exact,) = torch.autograd.grad(u_x, x, g @ dev.weight.T)  # the device's own Jacobian
    assert not torch.allclose(grad_x, exact)


def test_physics_aware_function_is_public_and_uses_the_twin():
    dev, twin = LinearToy(), KnownTwin(torch.randn(3, 4))
    u = torch.rand(2, 4, requires_grad=True)
    y = PhysicsAware.apply(u, dev, twin)
    g = torch.randn(2, 3)
    y.backward(g)
    assert torch.allclose(u.grad, g @ twin.jacobian)
    assert torch.allclose(physics_aware(dev, twin, u.detach()), u.detach() @ dev.weight)


def test_grad_simulator_matches_autograd_through_simulate():
    dev = phys.open("cavity", n_in=5, n_out=4, n_scatterers=8)
    layer = DeviceLayer(dev, 7, grad="simulator", seed=1)
    x = torch.randn(3, 7, requires_grad=True)
    g = torch.randn(3, 4)
    (grad_x,) = torch.autograd.grad(layer(x), x, g)
    x2 = x.detach().clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(dev.simulate(layer.encode(x2)), x2, g)
    assert torch.allclose(grad_x, expected)
    assert grad_x.abs().sum() > 0
    assert dev.stats.samples == 0  # in silico: nothing measured
    with torch.no_grad():  # evaluation measures the device, whatever the route
        layer(x)
    assert dev.stats.samples == 3


def test_every_route_gives_the_same_forward_values_without_noise():
    dev = phys.open("cavity", n_in=5, n_out=4, n_scatterers=8)
    twin = phys.open("cavity", n_in=5, n_out=4, n_scatterers=8, seed=9)
    x = torch.randn(4, 5)
    outs = [DeviceLayer(dev, grad=g, twin=twin if g == "twin" else None)(x) for g in GRAD_ROUTES]
    for out in outs[1:]:
        assert torch.allclose(out.detach(), outs[0], atol=1e-5)


def test_bad_arguments_are_refused_with_their_names():
    dev = LinearToy()
    cases = [
        (dict(grad="adjoint"), "grad must be one of none, twin, simulator"),
        (dict(grad="twin"), "grad='twin' needs a twin with vjp"),
        (dict(grad="twin", twin=object()), "grad='twin' needs a twin with vjp"),
        (dict(twin=KnownTwin(torch.eye(4))), "twin is only used with grad='twin'"),
        (dict(grad="simulator"), "grad='simulator' needs a differentiable simulator.*'toy'"),
        (dict(gain=0.0), "gain must be a positive number"),
        (dict(gain=float("nan")), "gain"),
        (dict(in_features=0), "in_features must be a positive int"),
    ]
    for kwargs, match in cases:
        with pytest.raises(ValueError, match=match):
            DeviceLayer(dev, **kwargs)
    with pytest.raises(ValueError, match="device must be a phys.Device"):
        DeviceLayer("cavity")
    noisy = Noisy(phys.open("cavity", n_in=4, n_out=3, n_scatterers=8), 0.01)
    with pytest.raises(ValueError, match="grad='simulator'.*can only be queried"):
        DeviceLayer(noisy, grad="simulator")
    small = phys.open("cavity", n_in=2, n_out=3, n_scatterers=8)
    with pytest.raises(ValueError, match="twin takes 2 inputs and gives 3"):
        DeviceLayer(dev, grad="twin", twin=small)
    with pytest.raises(ValueError, match=r"input must have shape \(B, 4\)"):
        DeviceLayer(dev)(torch.randn(2, 5))
    assert dev.stats.queries == 0


def test_the_twin_is_not_a_submodule_and_device_layers_are_found():
    twin = SurrogateTwin(LinearToy().info, hidden=8)
    layer = DeviceLayer(LinearToy(), grad="twin", twin=twin)
    assert list(layer.parameters()) == [] and "twin" not in dict(layer.named_modules())
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), layer, DeviceLayer(LinearToy(3, 2), 3))
    assert device_layers(model) == [model[1], model[2]]
    assert "grad='twin'" in repr(layer)
    assert phys.DeviceLayer is DeviceLayer and phys.nn.DeviceLayer is DeviceLayer
