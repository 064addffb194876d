"""The MicroPython firmware's protocol core, run under CPython on a real pty against the
host driver (the same file the Pico runs)."""

import importlib.util
import os
import select
import sys
import threading
import time
import zlib
from pathlib import Path

import pytest
import torch
from cobs import cobs
from hypothesis import given, settings
from hypothesis import strategies as st

from phys.devices import protocol as P
from phys.devices.serial import SerialDevice
from phys.testing import check_device

FIRMWARE = Path(__file__).resolve().parents[2] / "firmware" / "micropython"


def _load(name):
    if str(FIRMWARE) not in sys.path:  # the firmware imports its siblings by bare name
        sys.path.insert(0, str(FIRMWARE))
    spec = importlib.util.spec_from_file_location(name, FIRMWARE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


physproto = _load("physproto")
sim_board = _load("sim_board")
pty_runner = _load("pty_runner")
circuit = _load("circuit")


class Firmware:
    """The firmware core with the circuit model, served on a pty in a thread."""

    def __init__(self, **core_options):
        self.core = physproto.Core(sim_board.SimBoard(), boot=7, **core_options)
        self.master, self.slave, self.port = pty_runner.open_pty()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=pty_runner.serve,
                                       args=(self.core, self.master, self.stop), daemon=True)
        self.thread.start()

    def close(self):
        self.stop.set()
        self.thread.join(timeout=5)
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
def firmware():
    fw = Firmware()
    yield fw
    fw.close()


def test_firmware_core_passes_check_device_over_a_pty(firmware):
    dev = SerialDevice(firmware.port)
    assert dev.info.extra["firmware"] == physproto.FIRMWARE and dev.info.extra["dtype"] == "i16"
    assert (dev.info.n_in, dev.info.n_out, dev.info.max_batch) == (4, 3, 32)
    passed = check_device(dev, reopen=lambda: SerialDevice(firmware.port))
    assert {"deterministic", "batch-split", "seeded", "range-inclusive"} <= set(passed)


def test_firmware_measures_the_transistor_circuit(firmware):
    with SerialDevice(firmware.port) as dev:
        ramp = torch.linspace(0, 3.3, 9)[:, None].repeat(1, 4)
        y = dev.query(ramp)
        # off: collectors at the supply; driven hard: saturated near 0.66 V; monotone between
        assert y[0].tolist() == pytest.approx([3.3] * 3, abs=2e-3)
        assert (y[-1] < 0.8).all() and (y[1:] <= y[:-1] + 1e-3).all()
        one = torch.tensor([[3.3, 0.0, 0.0, 0.0]])  # input 0 drives transistor 0 hardest
        y1 = dev.query(one)[0]
        assert y1[0] < y1[1] and y1[0] < y1[2]
        direct = [circuit.collector_voltage([3.3, 0, 0, 0], row) for row in circuit.R_BASE]
        assert y1.tolist() == pytest.approx(direct, abs=2e-3)  # 12-bit ADC and int16 steps


def test_firmware_settings_reset_and_restart(firmware):
    with SerialDevice(firmware.port) as dev:
        dev.set("settle_us", 250)
        assert firmware.core.board.settle_us == 250
        assert dev.ping(b"pico") >= 0
        dev.reset()
        assert firmware.core.board.settle_us == circuit.SETTLE_US
        firmware.core.power_up()  # a restart the host did not ask for
        dev.set("settle_us", 100)  # answered "restarted": greeted again, then set
        assert firmware.core.board.settle_us == 100 and dev.link.reboots == 1


def test_firmware_answers_a_retry_from_memory(firmware):
    fd = os.open(firmware.port, os.O_RDWR | os.O_NOCTTY)
    try:
        answers = []
        hello = P.encode_frame(P.HELLO, 1)
        q = P.encode_frame(P.QUERY, 2, P.query_payload([[1.0, 2.0, 0.5, 0.0]], "i16", 0, 3.3))
        for request in (hello, q, q):
            os.write(fd, request)
            data, deadline = b"", time.monotonic() + 2
            while not data.endswith(b"\x00") and time.monotonic() < deadline:
                if select.select([fd], [], [], 0.05)[0]:
                    data += os.read(fd, 4096)
            answers.append(data)
        assert answers[1] == answers[2] and firmware.core.measured == 1
        assert P.decode_frame(answers[1][:-1]).type == P.RESULT
    finally:
        os.close(fd)


@pytest.mark.parametrize("request_,code", [
    (P.encode_frame(P.QUERY, 3, P.query_payload([[0.0] * 4] * 33, "i16", 0, 3.3)), 6),
    (P.encode_frame(P.QUERY, 3, b"\x02\x00" + b"\x00" * 8), 3),
    (P.encode_frame(P.QUERY, 3, b"\x01\x00" + b"\x00\x80" * 4), 4),
    (P.encode_frame(P.SET, 3, b"\x05\x00\x00\x00"), 7),
    (P.encode_frame(P.PING, 3, b"x" * 65), 3),
    (P.encode_frame(0x42, 3), 2),
])
def test_firmware_error_codes(request_, code):
    core = physproto.Core(sim_board.SimBoard())
    core.feed(P.encode_frame(P.HELLO, 1))
    (answer,) = core.feed(request_)
    msg = P.decode_frame(answer[:-1])
    assert msg.type == P.ERROR and msg.seq == 3 and P.parse_error(msg.payload)[0] == code


def test_firmware_drops_damaged_frames_as_the_protocol_says():
    core = physproto.Core(sim_board.SimBoard(), max_frame=256)
    good = bytearray(P.encode_frame(P.HELLO, 9))
    good[-3] ^= 0x01  # CRC byte: seq still readable -> ERROR 1
    (answer,) = core.feed(bytes(good))
    assert P.decode_frame(answer[:-1]) == P.Message(P.ERROR, 9, b"\x01\x00crc")
    assert core.feed(b"\x05\x01\x00") == []  # bad COBS: silent
    assert core.feed(b"\x07" * 400 + b"\x00") == []  # longer than max_frame: skipped
    (info,) = core.feed(P.encode_frame(P.HELLO, 10))  # and the next frame is fine
    assert P.parse_info(P.decode_frame(info[:-1]).payload)["boot"] == 0


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=700))
def test_firmware_cobs_and_crc_match_the_host(data):
    assert physproto.cobs_encode(data) == cobs.encode(data)
    assert physproto.cobs_decode(cobs.encode(data)) == data
    assert physproto.crc32_table_driven(data) == zlib.crc32(data) == physproto.crc32(data)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from([P.PONG, P.INFO, P.ERROR]), st.integers(0, 0xFFFF),
       st.binary(max_size=300))
def test_firmware_frames_are_byte_identical_to_the_host_encoder(msg_type, seq, payload):
    assert physproto.frame(msg_type, seq, payload) == P.encode_frame(msg_type, seq, payload)
