"""Physical parameters trained over a serial link (``phys emulate``) follow the same path
as on the simulator directly, and a checkpoint of a serial device keeps its settings."""

from __future__ import annotations

import torch

import phys
from phys.devices.emulator import Emulator
from phys.devices.serial import SerialDevice
from phys.train.perturb import PerturbOptions
from phys.train.phyll import PhyLLConfig, PhyLLNetwork, PhyLLTrainer
from phys.train.physics import PhysicalParameters

CAVITY = dict(n_in=74, n_out=12, n_scatterers=16, seed=3)


def train(device):
    data = phys.data.load("digits")
    x, y = data.x_train[:100], data.y_train[:100]
    network = PhyLLNetwork([phys.PhysicalLayer(device, 74, 16)], n_classes=10)
    physics = PhysicalParameters([device], PerturbOptions(directions=2, lr=0.3),
                                 names=["phase"])
    trainer = PhyLLTrainer(network, PhyLLConfig(epochs=1, batch_size=50), physics=physics)
    trainer.fit(x, y)
    return physics.values[0]["phase"], [r["loss"] for r in trainer.history]


def test_serial_training_equals_the_simulator_directly():
    with Emulator.serving("cavity", baudrate=1_000_000, **CAVITY) as lab, \
            SerialDevice(lab.port, baudrate=1_000_000) as dev:
        assert torch.equal(dev.get("phase"), torch.zeros(16))  # reported in INFO
        serial, serial_loss = train(dev)
        assert torch.equal(lab.responder.device.get("phase"), serial)
        rows = dev.info.max_batch  # the cavity's solver converges per batch: split alike
    direct, direct_loss = train(phys.open("cavity", max_batch=rows, **CAVITY))
    assert not torch.equal(direct, torch.zeros(16))
    assert torch.equal(serial, direct)
    assert serial_loss == direct_loss


def test_a_serial_device_reports_and_restores_its_settings():
    with Emulator.serving("cavity", baudrate=1_000_000, **CAVITY) as lab, \
            SerialDevice(lab.port, baudrate=1_000_000) as dev:
        dev.set("phase", torch.full((16,), 0.5))
        state = dev.params_state()
        assert torch.equal(state["phase"], torch.full((16,), 0.5))
        assert torch.equal(state["gain"], torch.ones(12))  # power-up value from INFO
        dev.reset()
        assert torch.equal(dev.get("phase"), torch.zeros(16))
        dev.load_params_state(state)
        assert torch.equal(lab.responder.device.get("phase"), torch.full((16,), 0.5))
