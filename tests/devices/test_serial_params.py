"""A simulator's physical parameters over the wire: ``phys emulate`` lists them in INFO
after gain and offset and passes SET through to the simulator, so ``SerialDevice.set``
on the host gives what the simulator set directly gives."""

from __future__ import annotations

import math

import pytest
import torch

import phys
from phys.devices import protocol as P
from phys.devices.emulator import Emulator, Faults
from phys.devices.responder import Responder
from phys.devices.serial import SerialDevice

CAVITY = dict(n_in=4, n_out=3, n_scatterers=12, seed=3)
FAST = dict(latency=0.02, baudrate=1_000_000, retries=10)


def inputs(rows: int, n_in: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(rows, n_in, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def phases(seed: int = 1) -> torch.Tensor:
    u = torch.rand(CAVITY["n_scatterers"], generator=torch.Generator().manual_seed(seed))
    return (2 * u - 1) * 3.0


def test_info_lists_the_simulator_parameters_after_gain_and_offset() -> None:
    with Emulator.serving("cavity", **CAVITY) as lab, SerialDevice(lab.port) as dev:
        names = [(p.name, p.index, p.shape, p.units) for p in dev.info.params]
    assert names == [("gain", 0, (3,), ""), ("offset", 1, (3,), ""),
                     ("phase", 2, (12,), "rad")]
    spec = dev.info.param("phase")
    assert (spec.min, spec.max) == (-math.pi, math.pi)


def test_set_over_serial_equals_the_simulator_set_directly() -> None:
    x = inputs(7, CAVITY["n_in"])
    ref = phys.open("cavity", **CAVITY)
    before = ref.query(x)
    ref.set("phase", phases())
    want = ref.query(x)
    with Emulator.serving("cavity", **CAVITY) as lab, SerialDevice(lab.port) as dev:
        assert torch.equal(dev.query(x), before)
        dev.set("phase", phases())
        got = dev.query(x)
        assert torch.equal(got, want)
        assert torch.equal(lab.responder.device.get("phase"), ref.get("phase"))
        dev.set("gain", [2.0, 2.0, 2.0])  # the host-side settings still work on top
        assert torch.equal(dev.query(x), 2.0 * want)
    assert (want - before).abs().max() > 1e-3


def test_a_two_dimensional_parameter_goes_flat_over_the_wire() -> None:
    options = dict(n_in=4, n_out=6, grid=(12, 12), pad=4, seed=2)
    x = inputs(3, 4)
    ref = phys.open("optics", **options)
    mask = torch.rand(12, 12, generator=torch.Generator().manual_seed(4)) * 6.0
    ref.set("mask", mask)
    with Emulator.serving("optics", **options) as lab, SerialDevice(lab.port) as dev:
        assert dev.info.param("mask").shape == (12, 12)  # INFO's shape
        dev.set("mask", mask.flatten())
        assert torch.equal(dev.query(x), ref.query(x))


def test_bad_values_are_refused_on_the_host_naming_port_and_parameter() -> None:
    with Emulator.serving("cavity", **CAVITY) as lab, SerialDevice(lab.port) as dev:
        sent = lab.responder.stats.frames
        with pytest.raises(ValueError, match=f"{lab.port}: setting 'phase' value .* at "
                                             f"index 5 is outside"):
            dev.set("phase", torch.cat([torch.zeros(5), torch.tensor([4.0]),
                                        torch.zeros(6)]))
        with pytest.raises(ValueError, match="no setting 'volume'"):
            dev.set("volume", [0.0])
        assert lab.responder.stats.frames == sent  # nothing went out


def _set_frame(responder: Responder, name: str, values: list[float], seq: int) -> bytes:
    p = next(p for p in responder.params if p["name"] == name)
    body = int(p["index"]).to_bytes(2, "little") + P.encode_values(values, "f32")
    return P.encode_frame(P.SET, seq, body)[:-1]


def _answer(responder: Responder, frame: bytes) -> P.Message:
    (out,), _ = responder.handle(frame)
    return P.decode_frame(out[:-1])


def test_the_device_refuses_a_set_the_simulator_refuses_and_keeps_its_value() -> None:
    """A SET that bypasses the host's checks is answered ERROR 4 with the simulator's
    message, and changes nothing."""
    backend = phys.open("cavity", **CAVITY)
    responder = Responder(backend)
    _answer(responder, P.encode_frame(P.HELLO, 1)[:-1])
    bad = [0.0] * 11 + [7.0]
    msg = _answer(responder, _set_frame(responder, "phase", bad, 2))
    code, text = P.parse_error(msg.payload)
    assert code == P.OUT_OF_RANGE and "'phase'" in text and "[11]" in text
    assert torch.equal(backend.get("phase"), torch.zeros(12))


def test_reset_brings_the_parameters_back_to_power_up() -> None:
    backend = phys.open("cavity", **CAVITY)
    responder = Responder(backend)
    _answer(responder, P.encode_frame(P.HELLO, 1)[:-1])
    msg = _answer(responder, _set_frame(responder, "phase", phases().tolist(), 2))
    assert msg.type == P.ACK_SET
    assert torch.allclose(backend.get("phase"), phases())
    assert _answer(responder, P.encode_frame(P.RESET, 3)[:-1]).type == P.ACK_RESET
    assert torch.equal(backend.get("phase"), torch.zeros(12))


def test_settings_survive_device_restarts() -> None:
    """The emulated device restarts (power-up parameters) now and then; the host SETs the
    phases again each time, so every accepted answer is that of the set cavity."""
    ref = phys.open("cavity", **CAVITY)
    ref.set("phase", phases())
    faults = Faults(reset=0.3)
    with Emulator.serving("cavity", faults=faults, fault_seed=1, **CAVITY) as lab, \
            SerialDevice(lab.port, **FAST) as dev:
        dev.set("phase", phases())
        for seed in range(12):
            x = inputs(3, CAVITY["n_in"], seed)
            assert torch.equal(dev.query(x), ref.query(x))
        assert lab.stats.resets >= 2 and dev.link.reboots >= 1


def test_an_i16_device_takes_the_parameter_to_within_one_step() -> None:
    """int16 SET values span the parameter's own min .. max."""
    with Emulator.serving("cavity", dtype="i16", out_range=(0.0, 20.0), **CAVITY) as lab, \
            SerialDevice(lab.port) as dev:
        dev.set("phase", phases())
        got = lab.responder.device.get("phase")
    step = 2 * math.pi / (2 * 32767)
    assert (got - phases()).abs().max() <= step


def test_each_client_of_a_shared_backend_has_its_own_settings() -> None:
    """Two hosts on one emulated rig: one's phases are not the other's, and a host that
    connects later does not undo the first one's."""
    x = inputs(4, CAVITY["n_in"])
    ref = phys.open("cavity", **CAVITY)
    plain = ref.query(x)
    ref.set("phase", phases())
    tuned = ref.query(x)
    with Emulator.serving("cavity", tcp=0, clients=2, **CAVITY) as lab:
        with SerialDevice(lab.port, **FAST) as a:
            a.set("phase", phases())
            with SerialDevice(lab.port, **FAST) as b:
                assert torch.equal(b.query(x), plain)
                assert torch.equal(a.query(x), tuned)
                assert torch.equal(b.query(x), plain)
