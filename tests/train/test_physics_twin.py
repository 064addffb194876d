"""Training a network's physical parameters by gradient (``train_physics="twin"``):
through the simulator in backprop, through a simulator twin in PAT. The gradients are
the simulator's, the loss falls with the physics alone, device and twin stay equal,
checkpoints carry the values, and what cannot be trained is refused before training."""

from __future__ import annotations

import json

import pytest
import torch

import phys
from phys.device import DeviceInfo
from phys.experiment import TrainSpec, build, prepare
from phys.nn import DeviceLayer
from phys.options import OptionError
from phys.simulators.base import Simulator
from phys.train.backprop import BackpropTrainer
from phys.train.base import TrainConfig
from phys.train.network import PhysicalClassifier
from phys.train.pat import PATTrainer
from phys.train.physics import GradientPhysics, PhysicsSetError
from phys.train.twin import SurrogateTwin


def cavity(seed=0, **options):
    return phys.open("cavity", n_in=6, n_out=8, n_scatterers=10, seed=seed, **options)


def small_digits(n=150):
    data = phys.data.load("digits")
    return data.x_train[:n], data.y_train[:n]


def classifier(device, seed=0):
    return PhysicalClassifier([phys.PhysicalLayer(device, 64, 16, seed=seed, skip=False)],
                              10, seed=seed)


def backprop(device, *, epochs=2, lr=1e-2, train_physics=True, physics_lr=0.02):
    return BackpropTrainer(classifier(device), TrainConfig(epochs=epochs, batch_size=50,
                                                           lr=lr, seed=0),
                           train_physics=train_physics, physics_lr=physics_lr)


def pat(device, twin, *, epochs=2, lr=1e-2):
    return PATTrainer(classifier(device), [twin], TrainConfig(epochs=epochs, batch_size=50,
                                                              lr=lr, seed=0),
                      train_physics=True)


def test_the_gradient_is_the_simulators_and_finite_differences_agree():
    dev = cavity(dtype=torch.float64, tol=1e-12, max_iter=2000)
    dev.set("phase", torch.linspace(-1.0, 1.0, 10))
    layer = DeviceLayer(dev, 9, grad="simulator", seed=1)
    layer.train_physics()
    x, g = torch.randn(5, 9, generator=torch.Generator().manual_seed(0)), torch.randn(5, 8)
    (layer(x) * g).sum().backward()
    grad = layer.physical["phase"].grad
    u = layer.encode(x).detach()
    assert torch.allclose(grad, dev.param_vjp(u, g)["phase"], rtol=1e-6, atol=1e-9)
    eps, phase = 1e-5, dev.get("phase")
    for k in (0, 4, 9):
        shifted = [phase.clone(), phase.clone()]
        shifted[0][k] += eps
        shifted[1][k] -= eps
        ups = [(dev.simulate(u, params={"phase": p}) * g).sum() for p in shifted]
        assert float(grad[k]) == pytest.approx(float(ups[0] - ups[1]) / (2 * eps), rel=1e-4,
                                               abs=1e-7)


def test_pat_differentiates_the_twin_at_the_devices_values():
    dev, twin = cavity(noise=0.05), cavity()
    layer = DeviceLayer(dev, 9, grad="twin", twin=twin, seed=1)
    layer.train_physics()
    with torch.no_grad():
        layer.physical["phase"].copy_(torch.linspace(-2.0, 2.0, 10))
    layer.push_physics()
    assert torch.equal(twin.get("phase"), dev.get("phase"))
    x, g = torch.randn(5, 9), torch.randn(5, 8)
    (layer(x) * g).sum().backward()
    expected = twin.param_vjp(layer.encode(x).detach(), g)["phase"]
    assert torch.allclose(layer.physical["phase"].grad, expected, atol=1e-6)


def test_the_loss_falls_with_the_physics_alone():
    x, y = small_digits()
    runs = {}
    for trains in (False, True):
        t = backprop(cavity(), epochs=4, train_physics=trains)
        t.optimizers[0].param_groups[0]["lr"] = 0.0  # the digital weights stay
        t.fit(x, y)
        runs[trains] = [row["loss"] for row in t.history]
    fixed, trained = runs[False], runs[True]
    assert max(fixed) - min(fixed) < 1e-6, fixed
    assert trained[-1] < fixed[-1] - 0.01, (trained, fixed)


def test_training_with_the_physics_beats_fixed_physics():
    x, y = small_digits()
    fixed = backprop(cavity(), epochs=3, train_physics=False)
    fixed.fit(x, y)
    dev = cavity()
    trained = backprop(dev, epochs=3)
    trained.fit(x, y)
    assert trained.history[-1]["loss"] < fixed.history[-1]["loss"] - 0.01
    phase = dev.get("phase")
    assert not torch.equal(phase, torch.zeros(10)) and float(phase.abs().max()) <= torch.pi
    result = trained.physics.as_dict()
    assert result["samples"] == 0 and result["steps"] == [9]
    assert result["values"][0]["phase"] == pytest.approx(phase.tolist())
    assert trained.device_usage()["physics_device_samples"] == 0


def test_pat_trains_and_keeps_device_and_twin_equal():
    x, y = small_digits()
    dev, twin = cavity(noise=0.02), cavity()
    t = pat(dev, twin, epochs=2)
    seen = []
    original = t.physics.after_step

    def after_step():
        original()
        seen.append(torch.equal(dev.get("phase"), twin.get("phase")))

    t.physics.after_step = after_step
    t.fit(x, y)
    assert seen == [True] * 6
    assert not torch.equal(dev.get("phase"), torch.zeros(10))
    assert t.history[-1]["loss"] < t.history[0]["loss"]


def test_values_are_clamped_into_range_after_each_step():
    dev = cavity()
    t = backprop(dev, epochs=1, physics_lr=5.0)  # huge steps leave the range
    t.fit(*small_digits(100))
    phase = t.physics.values[0]["phase"]
    assert float(phase.abs().max()) == pytest.approx(torch.pi)
    assert torch.equal(dev.get("phase"), phase.to(dev.get("phase").dtype))


def test_a_checkpoint_carries_the_values_and_resumes_identically(tmp_path):
    x, y = small_digits()
    full = backprop(cavity(), epochs=2)
    full.fit(x, y)
    first = backprop(cavity(), epochs=1)
    first.fit(x, y)
    torch.save(first.state_dict(), tmp_path / "state.pt")
    dev = cavity()  # a fresh device at its power-up setting
    second = backprop(dev, epochs=2)
    second.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    assert torch.equal(dev.get("phase"), first.physics.values[0]["phase"])
    assert second.physics.steps == 3
    other = cavity()  # the network's state dict alone sets the device too
    backprop(other).network.load_state_dict(first.network.state_dict())
    assert torch.equal(other.get("phase"), first.physics.values[0]["phase"])
    second.fit(x, y)
    assert torch.equal(second.physics.values[0]["phase"], full.physics.values[0]["phase"])
    assert [r["loss"] for r in second.history] == [r["loss"] for r in full.history]
    with pytest.raises(ValueError, match="checkpoint trains the physical parameters"):
        backprop(cavity(), train_physics=False).load_state_dict(first.state_dict())


def test_a_run_reports_the_physics_and_no_extra_samples(tmp_path):
    from phys.runs import train

    spec = TrainSpec(device="cavity", device_options={"n_scatterers": 8}, measurements=8,
                     layers=1, hidden=16, subset=100, epochs=1, batch_size=50,
                     trainer="pat", twin="simulator", train_physics="twin", skip=False)
    results = train(spec, out=tmp_path / "run", tensorboard=False)
    assert results["physics_device_samples"] == 0
    assert results["physics"]["samples"] == 0 and results["physics"]["steps"] == [2]
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert len(saved["physics"]["values"][0]["phase"]) == 8
    from phys.load import load_run

    with load_run(tmp_path / "run") as model:  # the trained run is a model, physics too
        phase = model.network.layers[0].device.get("phase")
    assert phase.tolist() == pytest.approx(saved["physics"]["values"][0]["phase"])
    assert not torch.equal(phase, torch.zeros(8))


class Plain(Simulator):
    """A differentiable device without physical parameters."""

    def __init__(self, n_in=6, n_out=8):
        super().__init__()
        self.info = DeviceInfo("plain", n_in, n_out, -1.0, 1.0, max_batch=1024,
                               differentiable=True)
        self.w = torch.randn(n_in, n_out, generator=torch.Generator().manual_seed(0))

    def _forward(self, x):
        return torch.tanh(x @ self.w.to(x.dtype))


def test_what_cannot_be_trained_is_refused_before_training():
    with pytest.raises(ValueError, match="'plain' declares none"):
        backprop(Plain())
    dev = cavity()
    with pytest.raises(ValueError, match="a simulator \\(twin='simulator'\\); SurrogateTwin"):
        pat(dev, SurrogateTwin(dev.info))
    with pytest.raises(ValueError, match="twin 'plain' must declare physical parameter "
                                         "'phase'"):
        pat(cavity(), Plain())
    with pytest.raises(ValueError, match="'cavity' declares no physical parameter 'mask'; "
                                         "it declares phase"):
        DeviceLayer(cavity(), 9, grad="simulator").train_physics(["mask"])
    with pytest.raises(ValueError, match="passes no gradient"):
        GradientPhysics([DeviceLayer(cavity(), 9)])
    with pytest.raises(ValueError, match="no device declares the physical parameter"):
        GradientPhysics([DeviceLayer(cavity(), 9, grad="simulator")], names=["mask"])
    with pytest.raises(OptionError, match="needs trainer='backprop' or 'pat'") as err:
        prepare(TrainSpec(train_physics="twin"))
    assert err.value.option == "train_physics"
    with pytest.raises(OptionError, match="needs twin='simulator'"):
        prepare(TrainSpec(train_physics="twin", trainer="pat"))
    spec = TrainSpec(train_physics="twin", trainer="backprop", layers=1, hidden=8)
    opened = []
    with pytest.raises(OptionError, match="'plain' declares none"):
        build(spec, 64, 10, opened, opener=lambda *args: Plain(64, 8))


def test_a_refused_setting_names_layer_parameter_and_value():
    dev = cavity()
    t = backprop(dev, epochs=1)

    def refuse(name, values):
        raise RuntimeError("ERROR 9: the rig refused the setting")

    dev.set = refuse
    with pytest.raises(PhysicsSetError, match=r"layer 0: device 'cavity' refused physical "
                                              r"parameter 'phase' = \[.*\]: ERROR 9"):
        t.fit(*small_digits(100))


class Crash(Exception):
    """Stands for the process dying mid-run."""


def test_a_run_killed_mid_epoch_and_resumed_equals_the_uninterrupted_one(tmp_path,
                                                                          monkeypatch):
    from phys.runs import train

    spec = TrainSpec(device="cavity", device_options={"n_scatterers": 8}, measurements=8,
                     layers=1, hidden=16, subset=100, epochs=2, batch_size=25,
                     trainer="pat", twin="simulator", train_physics="twin", skip=False,
                     physics_lr=0.02)
    whole = train(spec, out=tmp_path / "whole", tensorboard=False)
    original = GradientPhysics.after_step

    def dying(self):
        original(self)
        if self.steps == 6:
            raise Crash

    monkeypatch.setattr(GradientPhysics, "after_step", dying)
    with pytest.raises(Crash):
        train(spec, out=tmp_path / "cut", tensorboard=False, checkpoint_every=1)
    monkeypatch.setattr(GradientPhysics, "after_step", original)
    saved = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)
    assert saved["physics"] == {"steps": 5} and saved["epoch"] == 1  # within epoch 2
    resumed = train(spec, out=tmp_path / "cut", tensorboard=False, resume=True,
                    checkpoint_every=1)
    assert resumed["physics"] == whole["physics"]
    assert resumed["physics"]["steps"] == [8]
    assert resumed["test_accuracy"] == whole["test_accuracy"]


@pytest.mark.parametrize("route, option, value", [
    ("twin", "physics_every", 3), ("twin", "physics_directions", 8),
    ("none", "physics_lr", 0.01), ("none", "physics_method", "gaussian")])
def test_options_of_another_route_are_refused(route, option, value):
    from phys.experiment import TrainSpec, prepare
    from phys.options import OptionError

    trainer = "backprop" if route == "twin" else "phyll"
    with pytest.raises(OptionError, match=f"{option} is not used with train_physics="
                                          f"'{route}'") as caught:
        prepare(TrainSpec(trainer=trainer, train_physics=route, **{option: value}))
    assert caught.value.option == option
