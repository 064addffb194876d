"""The host driver against the virtual lab device over a real pty (and TCP): conformance,
every fault many times, idempotent retries, the timing model."""

import os
import select
import time

import pytest
import torch

import phys
from phys.devices import protocol as P
from phys.devices.emulator import Emulator, Faults
from phys.devices.serial import SerialDevice, SerialDeviceError
from phys.testing import check_device

BACKEND = dict(n_in=4, n_out=3, seed=3)  # a small cavity: fast and deterministic
FAST = dict(latency=0.02, baudrate=1_000_000, retries=10)  # short host timeouts


def inputs(n, rows, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(rows, BACKEND["n_in"], generator=g) * 2 - 1 for _ in range(n)]


@pytest.mark.parametrize("tcp", [None, 0], ids=["pty", "tcp"])
def test_driver_passes_check_device_against_the_emulator(tcp):
    # on TCP the "seeded" check opens a second device while the first is open: two clients
    clients = 1 if tcp is None else 2
    with Emulator.serving("cavity", tcp=tcp, max_batch=16, clients=clients, **BACKEND) as lab:
        assert lab.port.startswith("/dev/" if tcp is None else "socket://")
        passed = check_device(SerialDevice(lab.port), reopen=lambda: SerialDevice(lab.port))
        assert "batch-split" in passed and "seeded" in passed


def run_through_faults(faults, n=60, rows=4, gain=None):
    """Query ``n`` distinct batches through ``faults``; return what happened."""
    ref = phys.open("cavity", **BACKEND)
    done, failed, worst = 0, [], 0.0
    with Emulator.serving("cavity", faults=faults, fault_seed=1, **BACKEND) as lab:
        dev = SerialDevice(lab.port, **FAST)
        if gain is not None:
            dev.set("gain", [gain] * BACKEND["n_out"])
        for x in inputs(n, rows):
            t0 = time.monotonic()
            try:
                y = dev.query(x)
            except SerialDeviceError as err:
                failed.append(str(err))
            else:
                expect = ref.query(x) * (1 if gain is None else gain)
                assert torch.equal(y, expect), "a wrong result was accepted"
                done += 1
            worst = max(worst, time.monotonic() - t0)
        bound = (FAST["retries"] + 1) * dev._timeout(200, 2 + rows * 12, rows) * 3 + 1.0
        stats = dict(done=done, failed=failed, worst=worst, bound=bound, link=dev.link,
                     measured=lab.responder.stats.measured_samples,
                     samples=dev.stats.samples, faults=dict(lab.stats.faults),
                     resets=lab.stats.resets)
        dev.close()
    return stats


@pytest.mark.parametrize("kind,rate", [("drop", 0.15), ("corrupt", 0.15), ("duplicate", 0.15),
                                       ("delay", 0.15), ("reset", 0.3)])
def test_every_fault_many_times_no_wrong_result_no_hang(kind, rate):
    # link faults strike frames both ways (~2 per query); a reset strikes a request
    s = run_through_faults(Faults(**{kind: rate}, delay_seconds=0.05))
    assert s["faults"].get(kind, 0) >= 8, s["faults"]  # the fault happened many times
    assert s["done"] >= 57, s["failed"]  # failures, if any, are rare and raised
    assert s["worst"] < s["bound"]  # no query hung
    assert s["measured"] == s["samples"]  # resends never measured twice
    assert kind != "reset" or s["resets"] >= 8  # (a reset strikes before measuring)


def test_all_faults_at_once_with_a_setting_survives_resets():
    faults = Faults(drop=0.05, corrupt=0.05, duplicate=0.05, delay=0.05, reset=0.05,
                    delay_seconds=0.05)
    s = run_through_faults(faults, n=60, gain=-2.0)  # results must carry the gain
    assert s["done"] >= 57 and s["worst"] < s["bound"]
    assert s["link"].reboots >= 1  # restarts were noticed and the setting restored
    assert s["measured"] >= s["samples"]


def test_a_repeated_request_is_answered_from_memory():
    with Emulator.serving("cavity", **BACKEND) as lab:
        fd = os.open(lab.port, os.O_RDWR | os.O_NOCTTY)
        try:
            greet(fd)
            x = [[0.1, 0.2, 0.3, 0.4]]
            payload = P.query_payload(x, "f32", -1, 1)
            q, q_next = P.encode_frame(P.QUERY, 77, payload), P.encode_frame(P.QUERY, 78, payload)
            answers = []
            for request in (q, q, q_next):
                os.write(fd, request)
                answers.append(read_frame(fd))
            assert answers[0] == answers[1]  # same seq and body: the same answer ...
            assert lab.responder.stats.memory_answers == 1
            assert lab.responder.stats.measured_samples == 2  # ... measured once (+ seq 78)
        finally:
            os.close(fd)


def greet(fd):
    """HELLO on a raw port; returns the INFO."""
    os.write(fd, P.encode_frame(P.HELLO, 1))
    return P.parse_info(P.decode_frame(read_frame(fd)[:-1]).payload)


def read_frame(fd, timeout=2.0):
    data, deadline = b"", time.monotonic() + timeout
    while not data.endswith(b"\x00") and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.05)[0]:
            data += os.read(fd, 4096)
    return data


def test_after_power_up_only_hello_is_answered():
    with Emulator.serving("cavity", **BACKEND) as lab:
        fd = os.open(lab.port, os.O_RDWR | os.O_NOCTTY)
        try:
            os.write(fd, P.encode_frame(P.PING, 5, b"x"))
            msg = P.decode_frame(read_frame(fd)[:-1])
            code, text = P.parse_error(msg.payload)
            assert (msg.seq, code) == (5, P.HARDWARE) and text.startswith(P.RESTARTED)
            assert greet(fd)["boot"] == lab.responder.boot
            os.write(fd, P.encode_frame(P.PING, 6, b"x"))
            assert P.decode_frame(read_frame(fd)[:-1]) == P.Message(P.PONG, 6, b"x")
        finally:
            os.close(fd)


def test_a_full_queue_answers_busy():
    with Emulator.serving("cavity", realtime=True, settle=0.02, queue=1, **BACKEND) as lab:
        fd = os.open(lab.port, os.O_RDWR | os.O_NOCTTY)
        try:
            greet(fd)
            x = P.query_payload([[0.0] * 4] * 3, "f32", -1, 1)
            os.write(fd, b"".join(P.encode_frame(P.QUERY, s, x) for s in range(4)))
            data, deadline = b"", time.monotonic() + 3
            while data.count(b"\x00") < 4 and time.monotonic() < deadline:
                if select.select([fd], [], [], 0.05)[0]:
                    data += os.read(fd, 4096)
            msgs = [P.decode_frame(f) for f in data.split(b"\x00") if f]
            busy = [m for m in msgs if m.type == P.ERROR and P.parse_error(m.payload)[0] == 5]
            assert busy and len(busy) + sum(m.type == P.RESULT for m in msgs) == 4
            assert lab.stats.busy == len(busy)
        finally:
            os.close(fd)


def test_unplug_raises_promptly_naming_the_port():
    with Emulator.serving("cavity", faults=Faults(unplug=0.05), fault_seed=2,
                          **BACKEND) as lab:
        dev = SerialDevice(lab.port, **FAST)
        t0 = time.monotonic()
        with pytest.raises(SerialDeviceError, match="unplugged") as err:
            for x in inputs(500, 2):
                dev.query(x)
        assert time.monotonic() - t0 < 5 and lab.stats.unplugged
        assert lab.port in str(err.value) and "seq=" in str(err.value)
        dev.close()


def test_a_silent_device_fails_within_the_retry_budget():
    with Emulator.serving("cavity", **BACKEND) as lab:
        dev = SerialDevice(lab.port, latency=0.02, retries=3)
        lab.faults = Faults(drop=1.0)
        t0 = time.monotonic()
        with pytest.raises(SerialDeviceError, match=r"QUERY seq=\d+ after 4 tries"):
            dev.query(torch.zeros(4))
        assert time.monotonic() - t0 < 4 * dev._timeout(100, 20, 1) + 0.5
        dev.close()


def test_virtual_time_reports_the_modelled_lab_time():
    baud, settle, conversion = 9600, 0.01, 0.002
    with Emulator.serving("cavity", baudrate=baud, settle=settle, conversion=conversion,
                          **BACKEND) as lab:
        dev = SerialDevice(lab.port, baudrate=baud)
        before, t0 = lab.stats.lab_seconds, time.monotonic()
        x = torch.zeros(10, 4)
        q = len(P.encode_frame(P.QUERY, 0, P.query_payload(x, "f32", -1, 1)))
        r = len(P.encode_frame(P.RESULT, 0, P.result_payload(torch.zeros(10, 3), "f32")))
        dev.query(x)
        wall = time.monotonic() - t0
        lab_time = lab.stats.lab_seconds - before
        assert lab_time == pytest.approx((q + r) * 10 / baud + 10 * (settle + conversion))
        assert wall < lab_time  # virtual time: the answer came at once
        assert dev.info.extra["sample_time"] == pytest.approx(settle + conversion)
        dev.close()


def test_realtime_paces_answers_like_the_rig():
    baud, settle = 19200, 0.005
    with Emulator.serving("cavity", baudrate=baud, settle=settle, realtime=True,
                          **BACKEND) as lab:
        dev = SerialDevice(lab.port, baudrate=baud)
        x = torch.zeros(20, 4)
        t0 = time.monotonic()
        dev.query(x)
        wall = time.monotonic() - t0
        q = len(P.encode_frame(P.QUERY, 0, P.query_payload(x, "f32", -1, 1)))
        r = len(P.encode_frame(P.RESULT, 0, P.result_payload(torch.zeros(20, 3), "f32")))
        model = (q + r) * 10 / baud + 20 * settle
        assert model <= wall < model + 0.5
        dev.close()


def test_i16_emulator_scales_outputs():
    ref = phys.open("cavity", **BACKEND)
    with Emulator.serving("cavity", dtype="i16", out_range=(0.0, 2.0), **BACKEND) as lab:
        dev = SerialDevice(lab.port)
        x = inputs(1, 16)[0]
        step = 2.0 / 65534
        y, expect = dev.query(x), ref.query(x)
        # inputs and outputs are quantised to int16 steps: close, not equal
        assert (y - expect.clamp(0, 2)).abs().max() < 0.02 + step
        assert dev.info.extra["dtype"] == "i16"
        dev.close()


def test_bad_options_and_fault_text():
    assert Faults.parse("drop=0.1, delay=0.2,delay_seconds=1").delay_seconds == 1
    for text in ["drop", "drip=0.1", "drop=x", "drop=2", "reset=-0.1"]:
        with pytest.raises(ValueError):
            Faults.parse(text)
    cavity = phys.open("cavity", **BACKEND)
    for bad in [dict(baudrate=0), dict(settle=-1), dict(queue=0), dict(dtype="i16"),
                dict(dtype="f64"), dict(max_frame=100), dict(out_range=(1, 0))]:
        with pytest.raises(ValueError):
            Emulator(cavity, **bad)


def test_emulate_command_serves_and_refuses_bad_options(tmp_path, capsys):
    from phys.cli import main

    assert main(["emulate", "--dtype", "i16", "-o", "n_in=2"]) == 2
    assert "out_range" in capsys.readouterr().err
    port_file = tmp_path / "port"
    assert main(["emulate", "-o", "n_in=2", "-o", "n_out=2", "--port-file", str(port_file),
                 "--duration", "0.3", "--tcp", "0"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith("socket://127.0.0.1:") and port_file.read_text().strip() == out[1]
    assert out[-1].startswith("stopped: 0 frames in")
