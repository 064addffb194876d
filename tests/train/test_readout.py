"""The readout trainer: cross-entropy through the digital maps alone (the devices pass no
gradient), with the physical parameters trained by perturbation on the same loss."""

from __future__ import annotations

import pytest
import torch
from test_physics import Biased, small_digits

import phys
from phys.experiment import TrainSpec, build
from phys.options import OptionError
from phys.train.base import TrainConfig
from phys.train.network import PhysicalClassifier
from phys.train.perturb import PerturbOptions
from phys.train.physics import PhysicalParameters
from phys.train.readout import ReadoutTrainer


def readout(device, *, physics=True, lr=1e-3, epochs=2, directions=2, batch=None, seed=0):
    layer = phys.PhysicalLayer(device, 64, 16, skip=False, seed=seed)
    params = None if not physics else PhysicalParameters(
        [device], PerturbOptions(directions=directions, lr=0.3, perturbation=0.1,
                                 seed=seed), batch=batch)
    return ReadoutTrainer(PhysicalClassifier([layer], 10, seed=seed),
                          TrainConfig(epochs=epochs, lr=lr, batch_size=50, seed=seed),
                          physics=params)


def test_no_gradient_reaches_the_device_and_the_readout_learns():
    x, y = small_digits(400)
    t = readout(Biased(64, 12), physics=False, lr=1e-2, epochs=5)
    assert t.device_layers[0].grad == "none"
    t.fit(x, y)
    losses = [row["loss"] for row in t.history]
    assert losses[-1] < 0.8 * losses[0], losses
    assert t.evaluate(x, y) > 0.3  # 10 classes: chance is 0.1


def test_the_loss_falls_with_the_physics_alone():
    x, y = small_digits(200)
    fixed = readout(Biased(64, 12), physics=False, lr=1e-12, epochs=4)
    fixed.fit(x, y)
    dev = Biased(64, 12)
    t = readout(dev, lr=1e-12, epochs=4)  # the digital weights stay (almost) as they are
    t.fit(x, y)
    flat = [row["loss"] for row in fixed.history]
    losses = [row["loss"] for row in t.history]
    assert max(flat) - min(flat) < 1e-5, flat
    assert losses[-1] < flat[-1] - 0.001, (losses, flat)
    assert not torch.equal(dev.bias, torch.zeros(12))


def test_its_queries_are_counted_apart():
    x, y = small_digits(100)
    dev = Biased(64, 12)
    t = readout(dev, epochs=1, directions=3, batch=20)
    t.fit(x, y)
    # 2 batches of 50, each a step: 3 directions, 2 losses each, on 20 samples
    assert t.physics.samples == [2 * 3 * 2 * 20]
    usage = t.device_usage()
    assert usage["physics_device_samples"] == t.physics.samples[0]
    assert usage["device_samples"] == 100 + t.physics.samples[0]  # one query a sample


def test_a_checkpoint_carries_the_settings_and_resumes_identically():
    x, y = small_digits(150)
    full = readout(Biased(64, 12), epochs=2)
    full.fit(x, y)
    first = readout(Biased(64, 12), epochs=1)
    first.fit(x, y)
    state = first.state_dict()
    dev = Biased(64, 12)
    second = readout(dev, epochs=2)
    second.load_state_dict(state)
    assert torch.equal(dev.bias, first.physics.values[0]["bias"])
    second.fit(x, y)
    assert torch.equal(second.physics.values[0]["bias"], full.physics.values[0]["bias"])
    assert [r["loss"] for r in second.history] == [r["loss"] for r in full.history]
    with pytest.raises(ValueError, match="checkpoint trains the physical parameters"):
        readout(Biased(64, 12), physics=False).load_state_dict(state)


def test_the_spec_builds_it_with_spsa_and_refuses_the_twin_route():
    spec = TrainSpec(device="cavity", data="digits", trainer="readout", skip=False, layers=1,
                     hidden=16, measurements=8, train_physics="spsa", physics_directions=3,
                     physics_batch=8)
    trainer, _ = build(spec, 64, 10, [])
    assert isinstance(trainer, ReadoutTrainer)
    assert trainer.physics.batch == 8 and trainer.physics.estimators[0].options.directions == 3
    with pytest.raises(OptionError, match="readout passes no gradient"):
        build(TrainSpec(device="cavity", data="digits", trainer="readout",
                        train_physics="twin"), 64, 10, [])
    with pytest.raises(OptionError, match="needs trainer='phyll'.*or 'readout'"):
        build(TrainSpec(device="cavity", data="digits", trainer="pat",
                        train_physics="spsa"), 64, 10, [])
