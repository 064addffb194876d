"""Training a network's physical parameters by perturbation inside PhyLL: the loss falls
with the physics alone, the queries are counted apart, checkpoints carry the settings,
and what cannot be trained is refused before training."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import phys
from phys.device import Device, DeviceInfo, ParamSpec
from phys.train.perturb import PerturbOptions
from phys.train.phyll import PhyLLConfig, PhyLLNetwork, PhyLLTrainer
from phys.train.physics import PhysicalParameters, PhysicsSetError


class Biased(Device):
    """tanh(x W + bias): a fixed random mixing with a settable bias per output."""

    def __init__(self, n_in: int, n_out: int, seed: int = 0, refuse_after: int | None = None):
        super().__init__()
        self.info = DeviceInfo("biased", n_in, n_out, -10.0, 10.0, max_batch=1 << 16,
                               params=(ParamSpec("bias", (n_out,), -2.0, 2.0, "V"),))
        g = torch.Generator().manual_seed(seed)
        self.w = torch.randn(n_in, n_out, generator=g) / n_in ** 0.5
        self.bias = torch.zeros(n_out)
        self.sets, self.refuse_after = 0, refuse_after

    def set(self, name, values):
        spec = self.info.param(name)
        v = torch.as_tensor(values, dtype=torch.float32).reshape(spec.shape)
        if not ((v >= spec.min) & (v <= spec.max)).all():
            raise ValueError(f"{name} out of range")
        self.sets += 1
        if self.refuse_after is not None and self.sets > self.refuse_after:
            raise RuntimeError("ERROR 9: the rig refused the setting")
        self.bias = v.clone()

    def get(self, name):
        self.info.param(name)
        return self.bias.clone()

    def _query(self, x):
        return torch.tanh(x @ self.w + self.bias)


def small_digits(n=200):
    data = phys.data.load("digits")
    return data.x_train[:n], data.y_train[:n]


def network(device, seed=0):
    block = phys.PhysicalLayer(device, 74, 16, seed=seed)
    return PhyLLNetwork([block], n_classes=10, seed=seed)


def trainer(device, *, lr=1e-12, every=1, directions=2, epochs=2, seed=0):
    physics = PhysicalParameters([device], PerturbOptions(directions=directions, lr=0.3,
                                                          perturbation=0.1), every=every)
    return PhyLLTrainer(network(device, seed), PhyLLConfig(epochs=epochs, lr=lr,
                                                           batch_size=50, seed=seed),
                        physics=physics)


def test_the_loss_falls_with_the_physics_alone():
    x, y = small_digits()
    fixed = trainer(Biased(74, 12), lr=1e-12, epochs=4)
    fixed.physics = None
    fixed.fit(x, y)
    dev = Biased(74, 12)
    t = trainer(dev, lr=1e-12, epochs=4)  # the digital weights stay (almost) as they are
    t.fit(x, y)
    flat = [row["loss"] for row in fixed.history]
    losses = [row["loss"] for row in t.history]
    assert max(flat) - min(flat) < 1e-5, flat
    assert losses[-1] < flat[-1] - 0.004, (losses, flat)
    assert not torch.equal(dev.bias, torch.zeros(12))
    assert float(dev.bias.abs().max()) <= 2.0


def test_its_queries_are_counted_apart():
    x, y = small_digits(100)
    dev = Biased(74, 12)
    t = trainer(dev, directions=3, epochs=1)
    t.fit(x, y)
    rows = 100 * 10  # each sample with its label and its 9 wrong ones
    steps = 2  # batches of 50
    assert t.physics.samples == [steps * 2 * 3 * rows // steps]  # 2 per direction
    assert t.physics.steps == [steps]
    usage = t.device_usage()
    assert usage["physics_device_samples"] == t.physics.samples[0]
    assert usage["device_samples"] == rows + t.physics.samples[0]  # + the digital steps'
    assert dev.stats.samples == usage["device_samples"] + usage["eval_device_samples"]


def test_every_skips_batches():
    x, y = small_digits(200)
    t = trainer(Biased(74, 12), every=2, epochs=1)
    t.fit(x, y)
    assert t.physics.steps == [2]  # batches 0 and 2 of 4


def test_a_checkpoint_carries_the_settings_and_resumes_identically():
    x, y = small_digits(150)
    full = trainer(Biased(74, 12), lr=1e-3, epochs=2)
    full.fit(x, y)
    first = trainer(Biased(74, 12), lr=1e-3, epochs=1)
    first.fit(x, y)
    state = first.state_dict()
    dev = Biased(74, 12)  # a fresh device at its power-up setting
    second = trainer(dev, lr=1e-3, epochs=2)
    second.load_state_dict(state)
    assert torch.equal(dev.bias, first.physics.values[0]["bias"])
    second.fit(x, y)
    assert torch.equal(second.physics.values[0]["bias"], full.physics.values[0]["bias"])
    assert [r["loss"] for r in second.history] == [r["loss"] for r in full.history]


def test_a_refused_setting_names_layer_parameter_and_value():
    x, y = small_digits(100)
    t = trainer(Biased(74, 12, refuse_after=3), epochs=1)
    with pytest.raises(PhysicsSetError, match=r"layer 0: device 'biased' refused parameter "
                                              r"'bias' = \[.*\]: ERROR 9"):
        t.fit(x, y)


def test_what_cannot_be_trained_is_refused_before_training():
    fixed = Biased(74, 12)
    fixed.info = dataclasses.replace(fixed.info, name="fixed", params=())
    with pytest.raises(ValueError, match="'fixed' declares none"):
        PhysicalParameters([fixed])
    with pytest.raises(ValueError, match="no device declares the physical parameter"):
        PhysicalParameters([Biased(74, 12)], names=["mask"])
    with pytest.raises(ValueError, match="every must be an int >= 1"):
        PhysicalParameters([Biased(74, 12)], every=0)

    class NoGet(Biased):
        get = None

    with pytest.raises(ValueError, match="cannot report the current value of 'bias'"):
        PhysicalParameters([NoGet(74, 12)])


def test_batch_measures_the_perturbed_losses_on_part_of_the_batch():
    x, y = small_digits(100)
    dev = Biased(74, 12)
    t = trainer(dev, directions=3, epochs=1)
    t.physics.batch = 10
    t.fit(x, y)
    # 2 steps (batches of 50), 3 directions, 2 losses each, on 10 samples x 10 labels
    assert t.physics.samples == [2 * 3 * 2 * 10 * 10]
    with pytest.raises(ValueError, match="batch must be an int >= 1"):
        PhysicalParameters([Biased(74, 12)], batch=0)
