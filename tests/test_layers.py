import pytest
import torch

import phys
from phys.layers import PhysicalLayer, rms_normalize


class CountingDevice(phys.Device):
    """Linear toy device that records what reaches it."""

    def __init__(self, n_in=4, n_out=3, lo=0.0, hi=2.0):
        super().__init__()
        self.info = phys.DeviceInfo("toy", n_in, n_out, lo, hi, max_batch=100)
        self.seen = []
        self.weight = torch.arange(n_in * n_out, dtype=torch.float32).view(n_in, n_out) / 10

    def _query(self, x):
        self.seen.append(x.clone())
        return x @ self.weight


def test_shapes_and_trainable_parts():
    layer = PhysicalLayer(CountingDevice(), 4, 5)
    y = layer(torch.randn(7, 4))
    assert y.shape == (7, 5)
    assert (y >= 0).all()  # relu
    names = {n for n, _ in layer.named_parameters()}
    assert names == {"linear.weight", "linear.bias"}
    # the fixed physics lives in the DeviceLayer; no projection at equal widths
    assert {n for n, _ in layer.named_buffers()} == {"physics.in_min", "physics.in_max"}
    assert layer.linear.in_features == 3 + 4  # measurement + skip


def test_encoding_stays_in_device_range_for_extreme_inputs():
    dev = CountingDevice(lo=0.0, hi=2.0)
    layer = PhysicalLayer(dev, 4, 5, gain=3.0)
    x = torch.tensor([[1e6, -1e6, 0.0, 3.0], [0.0, 0.0, 0.0, 0.0], [1e-9, 2e-9, -1e-9, 0]])
    layer(x)
    u = dev.seen[-1]
    assert ((u >= 0) & (u <= 2)).all()
    assert u.shape == (3, 4)


def test_projection_when_widths_differ():
    dev = CountingDevice(n_in=4)
    layer = PhysicalLayer(dev, 10, 6)
    assert layer.physics.projection.shape == (10, 4)
    assert layer(torch.randn(2, 10)).shape == (2, 6)
    assert dev.seen[-1].shape == (2, 4)


def test_no_gradient_reaches_the_device_but_digital_part_learns():
    dev = CountingDevice()
    layer = PhysicalLayer(dev, 4, 5)
    x = torch.randn(6, 4, requires_grad=True)
    layer(x).sum().backward()
    assert layer.linear.weight.grad is not None
    assert layer.linear.weight.grad[:, :3].abs().sum() > 0  # measured part has a weight gradient
    assert dev.stats.queries == 1


def test_abs_activation_and_bad_arguments():
    layer = PhysicalLayer(CountingDevice(), 4, 5, activation="abs")
    assert (layer(torch.randn(3, 4)) >= 0).all()
    with pytest.raises(ValueError, match="activation"):
        PhysicalLayer(CountingDevice(), 4, 5, activation="tanh")
    with pytest.raises(ValueError, match="gain"):
        PhysicalLayer(CountingDevice(), 4, 5, gain=0.0)


def test_seeded_initialisation_is_reproducible_and_leaves_global_rng_alone():
    state = torch.get_rng_state()
    a = PhysicalLayer(CountingDevice(), 4, 5, seed=3)
    assert torch.equal(state, torch.get_rng_state())
    b = PhysicalLayer(CountingDevice(), 4, 5, seed=3)
    c = PhysicalLayer(CountingDevice(), 4, 5, seed=4)
    assert torch.equal(a.linear.weight, b.linear.weight)
    assert not torch.equal(a.linear.weight, c.linear.weight)


def test_rms_normalize():
    x = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    y = rms_normalize(x)
    assert torch.allclose(y[0].square().mean(), torch.tensor(1.0))
    assert torch.isfinite(y).all()


def test_with_cavity():
    cav = phys.open("cavity", n_in=6, n_out=8, n_scatterers=16)
    layer = PhysicalLayer(cav, 6, 12)
    assert layer(torch.rand(5, 6)).shape == (5, 12)
    assert "cavity" in repr(layer)


def test_checkpoints_with_the_physics_buffers_at_the_layer_still_load():
    layer = PhysicalLayer(CountingDevice(), 10, 5, seed=1)
    old = {k.replace("physics.", ""): v.clone() for k, v in layer.state_dict().items()}
    assert set(old) == {"projection", "in_min", "in_max", "linear.weight", "linear.bias"}
    fresh = PhysicalLayer(CountingDevice(), 10, 5, seed=2)
    fresh.load_state_dict(old)
    assert torch.equal(fresh.physics.projection, layer.physics.projection)
    assert torch.equal(fresh.linear.weight, layer.linear.weight)
    net = torch.nn.Sequential(PhysicalLayer(CountingDevice(), 10, 5, seed=3))
    net.load_state_dict({f"0.{k}": v for k, v in old.items()})  # nested, strict
    assert torch.equal(net[0].physics.projection, layer.physics.projection)


def test_gradient_routes_reach_the_layer_physics():
    dev = phys.open("cavity", n_in=4, n_out=3, n_scatterers=8)
    layer = PhysicalLayer(dev, 4, 5, grad="simulator")
    x = torch.randn(6, 4, requires_grad=True)
    layer(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # through the simulator
    assert dev.stats.queries == 0
    with pytest.raises(ValueError, match="grad must be one of"):
        PhysicalLayer(dev, 4, 5, grad="exact")


def test_without_skip_the_digital_map_reads_the_measurement_only():
    dev = phys.open("cavity", n_in=8, n_out=6)
    layer = phys.PhysicalLayer(dev, 8, 5, skip=False)
    assert layer.linear.in_features == 6 and layer.skip_weight.shape == (5, 0)
    x = torch.randn(4, 8)
    measured = layer.measure(x)
    assert torch.equal(layer(x), layer.digital(measured, None, skip=torch.zeros(4, 5)))
    # the output depends on x only through the measurement
    assert torch.equal(layer.skip(x), torch.zeros(4, 5))
    assert "skip=False" in repr(layer)
