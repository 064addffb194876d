"""A checkpoint's device state holds the devices' physical parameters, and loading it
sets them again (as a resumed run needs); one that does not fit is refused."""

from __future__ import annotations

import io

import pytest
import torch

import phys
from phys.devices.wrappers import Noisy
from phys.runs.layout import CheckpointError
from phys.runs.state import device_state, load_device_state

CAVITY = dict(n_in=4, n_out=3, n_scatterers=12, seed=1)


def saved_and_loaded(state: dict) -> dict:
    """Through ``torch.save`` and ``torch.load(weights_only=True)``, as a checkpoint."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def test_parameters_come_back_with_the_device_state() -> None:
    x = torch.rand(5, 4) * 2 - 1
    dev = phys.open("cavity", **CAVITY)
    dev.set("phase", torch.linspace(-2.0, 2.0, 12))
    want = dev.query(x)
    state = saved_and_loaded(device_state(dev))
    fresh = phys.open("cavity", **CAVITY)
    assert not torch.equal(fresh.query(x), want)
    load_device_state(fresh, state)
    assert torch.equal(fresh.get("phase"), dev.get("phase"))
    assert torch.equal(fresh.query(x), want)


def test_a_wrapped_device_saves_the_parameters_of_what_it_wraps() -> None:
    dev = Noisy(phys.open("cavity", **CAVITY), 0.01, seed=1)
    dev.set("phase", torch.full((12,), 0.5))
    fresh = Noisy(phys.open("cavity", **CAVITY), 0.01, seed=1)
    load_device_state(fresh, saved_and_loaded(device_state(dev)))
    assert torch.equal(fresh.get("phase"), torch.full((12,), 0.5))


def test_a_device_without_parameters_saves_none() -> None:
    dev = phys.open("pennylane:default.qubit", wires=2, layers=1, seed=0)
    assert "params" not in device_state(dev)


def test_parameters_that_do_not_fit_the_device_are_refused() -> None:
    state = device_state(phys.open("cavity", **CAVITY))
    other = phys.open("cavity", **{**CAVITY, "n_scatterers": 8})
    with pytest.raises(CheckpointError, match="device settings: .*'phase' takes shape"):
        load_device_state(other, state)
