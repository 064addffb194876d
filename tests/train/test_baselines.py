import pytest
import torch

import phys
from phys.data import load
from phys.devices.wrappers import Noisy
from phys.layers import PhysicalLayer
from phys.train.backprop import BackpropTrainer
from phys.train.base import TrainConfig
from phys.train.network import PhysicalClassifier
from phys.train.pat import PATTrainer, physics_aware
from phys.train.twin import SurrogateTwin


def network(n_features=64, n_classes=10, wrap=None, layers=1, hidden=64):
    stack, width = [], n_features
    for i in range(layers):
        dev = phys.open("cavity", n_in=width, n_out=32, n_scatterers=32, seed=i)
        stack.append(PhysicalLayer(wrap(dev) if wrap else dev, width, hidden, seed=i))
        width = hidden
    return PhysicalClassifier(stack, n_classes)


@pytest.fixture(scope="module")
def digits():
    return load("digits")


def test_backprop_learns_digits_without_device_queries(digits):
    net = network(layers=2)
    trainer = BackpropTrainer(net, TrainConfig(epochs=4, lr=3e-3, count_flops=True))
    history = trainer.fit(digits.x_train, digits.y_train, digits.x_test, digits.y_test)
    assert history[-1]["test_accuracy"] >= 0.9
    usage = trainer.device_usage()
    assert usage["device_samples"] == 0  # in silico: training never queries
    assert usage["eval_device_samples"] > 0
    assert usage["digital_flops"] > 0


def test_backprop_refuses_a_device_without_gradients():
    net = network(wrap=lambda d: Noisy(d, 0.01))
    with pytest.raises(ValueError, match="backprop needs a differentiable device.*phyll"):
        BackpropTrainer(net)


def test_physics_aware_forward_is_the_device_backward_is_the_twin():
    dev = phys.open("cavity", n_in=5, n_out=3, n_scatterers=8, noise=0.05)
    twin = phys.open("cavity", n_in=5, n_out=3, n_scatterers=8)
    u = (torch.rand(4, 5) * 2 - 1).requires_grad_(True)
    y = physics_aware(dev, twin, u)
    assert dev.stats.samples == 4 and not torch.equal(y.detach(), twin.query(u.detach()))
    g = torch.randn(4, 3)
    (grad,) = torch.autograd.grad(y, u, g)
    assert torch.allclose(grad, twin.vjp(u.detach(), g))


def test_pat_with_simulator_twin_trains_through_a_noisy_device(digits):
    net = network(wrap=lambda d: Noisy(d, 0.02))
    twins = [phys.open("cavity", n_in=64, n_out=32, n_scatterers=32, seed=0)]
    trainer = PATTrainer(net, twins, TrainConfig(epochs=3, lr=3e-3))
    history = trainer.fit(digits.x_train, digits.y_train, digits.x_test, digits.y_test)
    assert history[-1]["test_accuracy"] >= 0.9
    assert trainer.device_usage()["device_samples"] == 3 * len(digits.y_train)


def test_surrogate_twin_fits_and_its_queries_and_flops_count(digits):
    net = network()
    dev = net.layers[0].device
    twin = SurrogateTwin(dev.info, hidden=64)
    report = twin.fit(dev, n_samples=2048, epochs=10)
    assert report["device_samples"] == 2048 and report["rel_rmse"] < 1.0
    assert twin.flops.total > 0
    trainer = PATTrainer(net, [twin], TrainConfig(epochs=2, lr=3e-3, count_flops=True))
    trainer.fit(digits.x_train, digits.y_train)
    usage = trainer.device_usage()
    assert usage["device_samples"] == 2048 + 2 * len(digits.y_train)
    assert usage["digital_flops"] > twin.flops.total


def test_pat_validates_its_twins():
    net = network()
    with pytest.raises(ValueError, match="one twin per layer"):
        PATTrainer(net, [])
    with pytest.raises(ValueError, match="has no vjp"):
        PATTrainer(net, [object()])


def test_baseline_checkpoint_round_trip(tmp_path, digits):
    net = network()
    trainer = BackpropTrainer(net, TrainConfig(epochs=1))
    trainer.fit(digits.x_train[:200], digits.y_train[:200])
    torch.save(trainer.state_dict(), tmp_path / "c.pt")
    fresh = BackpropTrainer(network(), TrainConfig(epochs=1))
    fresh.load_state_dict(torch.load(tmp_path / "c.pt", weights_only=True))
    assert fresh.epoch == 1
    assert torch.equal(fresh.network.head.weight, net.head.weight)
