"""The PennyLane circuit device: opened by address, conforms to the device contract."""

from __future__ import annotations

import math

import pennylane as qml
import pytest
import torch

import phys
from phys.devices.quantum import PennyLaneCircuit
from phys.experiment import open_layer_device
from phys.quantum.circuits import pennylane_circuit
from phys.testing import check_device

SPEC = "pennylane:default.qubit"


def test_open_by_address_passes_check_device() -> None:
    dev = phys.open(SPEC, wires=4, layers=2, seed=3)
    assert isinstance(dev, PennyLaneCircuit)
    assert (dev.info.n_in, dev.info.n_out, dev.info.stochastic) == (4, 4, False)
    assert (dev.info.in_min, dev.info.in_max) == (-math.pi, math.pi)
    passed = check_device(dev, reopen=lambda: phys.open(SPEC, wires=4, layers=2, seed=3))
    assert "seeded" in passed and "batch-independence" in passed


def test_with_shots_is_stochastic_and_passes_check_device() -> None:
    dev = phys.open(SPEC, wires=3, layers=1, shots=50, seed=0, max_batch=4)
    assert dev.info.stochastic and dev.info.extra["shots"] == 50
    x = torch.zeros(2, 3)
    y = dev.query(x)
    assert torch.all(y.abs() <= 1)
    # 50 samples of a +-1 variable: every estimate is a multiple of 2/50
    assert torch.allclose(torch.round(y * 25), y * 25, atol=1e-5)
    check_device(dev)


def test_answers_equal_the_circuit_run_in_pennylane() -> None:
    dev = phys.open(SPEC, wires=3, layers=2, seed=5)
    x = torch.rand(6, 3, dtype=torch.float64) * 2 - 1
    qnode = qml.QNode(pennylane_circuit(3), qml.device("default.qubit", wires=3))
    expected = torch.stack([torch.stack(list(qnode(row, dev.weights))) for row in x])
    assert torch.allclose(dev.query(x), expected.float(), atol=1e-6)
    other = phys.open(SPEC, wires=3, layers=2, seed=6)
    assert not torch.allclose(other.query(x), dev.query(x), atol=1e-3)  # seed sets the circuit


def test_unknown_pennylane_device_lists_installed_ones() -> None:
    with pytest.raises(ValueError, match=r"'no.such' is not installed.*default\.qubit"):
        phys.open("pennylane:no.such")
    with pytest.raises(ValueError, match="pennylane:<PennyLane device name>"):
        phys.open("pennylane:")


def test_too_many_qubits_says_how_much_memory() -> None:
    with pytest.raises(ValueError, match=r"50 qubits .*: 16 PiB; this machine has"):
        phys.open(SPEC, wires=50)


@pytest.mark.parametrize("options", [{"wires": 0}, {"layers": 2.5}, {"shots": 0},
                                     {"seed": -1}, {"max_batch": 0}])
def test_bad_options_are_value_errors(options: dict) -> None:
    key = next(iter(options))
    with pytest.raises(ValueError, match=key):
        phys.open(SPEC, **options)


def test_open_layer_device_passes_the_seed_only() -> None:
    dev = open_layer_device(SPEC, 74, 64, 7, {"wires": 3})
    assert (dev.info.n_in, dev.info.n_out, dev.info.extra["seed"]) == (3, 3, 7)


def test_phys_train_accepts_the_address(tmp_path, one_thread) -> None:
    import json

    from phys.cli import main

    out = tmp_path / "run"
    status = main(["train", "--device", SPEC, "-o", "wires=4", "-o", "layers=1", "--layers",
                   "1", "--hidden", "16", "--epochs", "1", "--negatives", "random",
                   "--batch-size", "256", "--no-progress", "--out", str(out)])
    assert status == 0
    results = json.loads((out / "results.json").read_text())
    assert results["device_info"][0]["name"] == SPEC
    assert results["device_samples"] > 0
