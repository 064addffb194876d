"""Every conformance check on every built-in device, each as its own case
(``cavity-reject-nan``), at small sizes: the simulators, the PennyLane circuit, the wrappers
and a serial device talking to the in-process emulator."""

from __future__ import annotations

import contextlib
from functools import partial

import pytest

import phys
from phys.devices.emulator import Emulator
from phys.devices.serial import SerialDevice
from phys.devices.wrappers import Drifting, LinearDrift, Noisy
from phys.testing import CHECKS, device_checks, parametrize_with_checks


class EmulatedLab:
    """A serial rig emulating a small cavity, started on first use and stopped with the
    module (see :func:`stop_the_lab`)."""

    def __init__(self) -> None:
        self._stack: contextlib.ExitStack | None = None
        self.port = ""

    def open(self) -> SerialDevice:
        if self._stack is None:
            self._stack = contextlib.ExitStack()
            lab = self._stack.enter_context(Emulator.serving("cavity", n_in=4, n_out=3))
            self.port = lab.port
        return SerialDevice(self.port)

    def close(self) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack = None


LAB = EmulatedLab()


def small_cavity() -> phys.Device:
    return phys.open("cavity", n_in=4, n_out=3, n_scatterers=12, seed=1, max_batch=16)


FACTORIES = {
    "cavity": small_cavity,
    "optics": partial(phys.open, "optics", n_in=4, n_out=6, grid=(12, 12), pad=4, seed=2,
                      max_batch=8),
    "oscillators": partial(phys.open, "oscillators", n_in=4, n_out=3, n_oscillators=6,
                           periods=6, seed=2, max_batch=8),
    "wave2d": partial(phys.open, "wave2d", n_in=3, n_out=2, grid=(16, 16), pml=3,
                      n_steps=40, f0=343.0 / (6 * 5e-3), pulse_cycles=1.0, seed=1,
                      max_batch=4),
    "pennylane": partial(phys.open, "pennylane:default.qubit", wires=3, layers=1, seed=0,
                         max_batch=8),
    "noisy": lambda: Noisy(small_cavity(), 0.01, seed=1),
    "drifting": lambda: Drifting(small_cavity(), LinearDrift(0.5, 0.1)),
    "serial": LAB.open,
}

#: The checks that each device's declared info rules out: a skip must be on this list, so
#: no check silently stops running on a device.
NO_PARAMS = {"declared-params", "params-round-trip", "params-reject"}
SKIPPED = {
    "cavity": set(),
    "optics": set(),
    "oscillators": set(),
    "wave2d": set(),
    "pennylane": NO_PARAMS | {"vjp"},
    "noisy": {"vjp", "deterministic", "batch-independence", "seeded"},
    "drifting": {"vjp", "deterministic", "batch-independence", "seeded"},
    "serial": {"vjp"},
}


@pytest.fixture(scope="module", autouse=True)
def stop_the_lab():
    yield
    LAB.close()


@parametrize_with_checks(FACTORIES)
def test_built_in_device_conforms(device_factory, check) -> None:
    check(device_factory)


@pytest.mark.parametrize("name", FACTORIES)
def test_only_the_declared_checks_are_skipped(name: str) -> None:
    with FACTORIES[name]() as dev:
        applies = {check_name for check_name, _ in device_checks(dev.info)}
    assert set(CHECKS) - applies == SKIPPED[name]
