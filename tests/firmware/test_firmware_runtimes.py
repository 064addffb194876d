"""The same exchange tests against the firmware under CPython and under MicroPython (the
WebAssembly build, run by Node.js), each in its own process on a real pty, driven by
``SerialDevice``: HELLO/INFO, QUERY in f32 and i16, SET, PING, RESET, retries, error
codes, and every link fault at 1 %."""

import os
import select
import shutil
import sys
import time
from pathlib import Path

import pytest
import torch

from phys.devices import protocol as P
from phys.devices.faults import Faults
from phys.devices.serial import SerialDevice, SerialDeviceError
from phys.testing import check_device

FIRMWARE = Path(__file__).resolve().parents[2] / "firmware" / "micropython"
if str(FIRMWARE) not in sys.path:  # the firmware imports its siblings by bare name
    sys.path.insert(0, str(FIRMWARE))

import physproto  # noqa: E402
import sim_board  # noqa: E402

IN_MAX = 3.3


def reference(x, dtype):
    """What the firmware must answer to rows ``x``: the same core in this process."""
    core = physproto.Core(sim_board.SimBoard(), max_batch=1000, max_frame=60000, dtype=dtype)
    core.feed(P.encode_frame(P.HELLO, 1))
    (answer,) = core.feed(P.encode_frame(P.QUERY, 2, P.query_payload(x, dtype, 0, IN_MAX)))
    msg = P.decode_frame(answer[:-1])
    assert msg.type == P.RESULT
    return torch.as_tensor(P.parse_result(msg.payload, 3, dtype, 0, IN_MAX))


def exchange(port, requests, timeout=5.0):
    """Send each raw frame and wait for its answer; the decoded answers, in order."""
    fd = os.open(port, os.O_RDWR | os.O_NOCTTY)
    answers = []
    try:
        for request in requests:
            os.write(fd, request)
            data, deadline = b"", time.monotonic() + timeout
            while not data.endswith(b"\x00") and time.monotonic() < deadline:
                if select.select([fd], [], [], 0.05)[0]:
                    data += os.read(fd, 4096)
            assert data.endswith(b"\x00"), f"no answer to {request.hex(' ')}"
            answers.append(P.decode_frame(data[:-1]))
    finally:
        os.close(fd)
    return answers


@pytest.mark.parametrize("dtype", ["i16", "f32"])
def test_hello_info_and_query(start, dtype):
    fw = start(dtype=dtype)
    with SerialDevice(fw.port) as dev:
        extra = dev.info.extra
        assert (extra["firmware"], extra["dtype"], extra["boot"]) == (physproto.FIRMWARE, dtype, 0)
        assert (dev.info.n_in, dev.info.n_out, dev.info.max_batch) == (4, 3, 32)
        x = torch.linspace(0, IN_MAX, 40)[:, None].repeat(1, 4)  # 40 rows: split in two
        y = dev.query(x)
        assert torch.equal(y, reference(x, dtype).to(y.dtype)), "not the CPython answer"
        assert y[0].tolist() == pytest.approx([3.3] * 3, abs=2e-3) and (y[-1] < 0.8).all()


def test_check_device_passes(start):
    fw = start()
    passed = check_device(SerialDevice(fw.port), reopen=lambda: SerialDevice(fw.port))
    assert {"deterministic", "batch-split", "seeded", "range-inclusive"} <= set(passed)


def test_the_pico_s_serve_loop_under_micropython(micropython_js):
    runner = sys.modules["physnn_firmware_runner"]
    with runner.FirmwareProcess("micropython", loop="python") as fw:  # physproto.serve
        with SerialDevice(fw.port) as dev:
            x = torch.rand(50, 4, generator=torch.Generator().manual_seed(1)) * IN_MAX
            assert torch.equal(dev.query(x), reference(x, "i16").to(torch.float32))
            assert dev.ping(b"\x00\x00") >= 0


def test_set_ping_reset_and_retry_from_memory(start):
    fw = start()
    settle = P.set_payload(0, [250.0], "i16", 0, sim_board.SETTLE_MAX_US)
    q = P.encode_frame(P.QUERY, 7, P.query_payload([[1.0, 2.0, 0.5, 0.0]], "i16", 0, IN_MAX))
    ping = b"\x00\x01pico\x00\xff"
    a = exchange(fw.port, [P.encode_frame(P.HELLO, 1), P.encode_frame(P.SET, 2, settle),
                           P.encode_frame(P.HELLO, 3), P.encode_frame(P.PING, 4, ping),
                           q, q, P.encode_frame(P.RESET, 8), q, P.encode_frame(P.HELLO, 9)])
    assert [m.type for m in a] == [P.INFO, P.ACK_SET, P.INFO, P.PONG, P.RESULT, P.RESULT,
                                   P.ACK_RESET, P.ERROR, P.INFO]
    info = [P.parse_info(m.payload) for m in (a[0], a[2], a[8])]
    assert [i["sample_time"] for i in info] == pytest.approx([5e-3, 2.5e-4, 5e-3], rel=1e-3)
    assert [i["boot"] for i in info] == [0, 0, 1]  # RESET: as after power-up
    assert a[3].payload == ping and a[4] == a[5]  # a retry is answered from memory
    assert P.parse_error(a[7].payload) == (8, "restarted: send HELLO")
    with SerialDevice(fw.port) as dev:
        dev.set("settle_us", 100)
        assert dev.ping(b"\x00pico") >= 0
        dev.reset()
        assert dev.info.extra["sample_time"] == pytest.approx(5e-3)


@pytest.mark.parametrize("request_,code", [
    (P.encode_frame(P.QUERY, 3, P.query_payload([[0.0] * 4] * 33, "i16", 0, 3.3)), 6),
    (P.encode_frame(P.QUERY, 3, b"\x02\x00" + b"\x00" * 8), 3),
    (P.encode_frame(P.QUERY, 3, b"\x01\x00" + b"\x00\x80" * 4), 4),
    (P.encode_frame(P.SET, 3, b"\x05\x00\x00\x00"), 7),
    (P.encode_frame(P.PING, 3, b"x" * 65), 3),
    (P.encode_frame(0x42, 3), 2),
])
def test_error_codes(start, request_, code):
    _, answer = exchange(start().port, [P.encode_frame(P.HELLO, 1), request_])
    assert answer.type == P.ERROR and answer.seq == 3 and P.parse_error(answer.payload)[0] == code


def test_f32_input_out_of_range_is_refused(start):
    fw = start(dtype="f32")
    over = P.encode_frame(P.QUERY, 2, P.query_payload([[0.0, 3.31, 0.0, 0.0]], "f32", 0, 9))
    _, answer = exchange(fw.port, [P.encode_frame(P.HELLO, 1), over])
    assert P.parse_error(answer.payload) == (4, "input")


def test_every_link_fault_at_one_percent(start):
    faults = Faults(drop=0.01, corrupt=0.01, duplicate=0.01, delay=0.01, reset=0.01,
                    delay_seconds=0.05)
    fw = start(faults=faults, fault_seed=3)
    g = torch.Generator().manual_seed(0)
    done, failed = 0, []
    with SerialDevice(fw.port, latency=0.05, retries=8) as dev:
        dev.set("settle_us", 1000)  # a setting in force across the restarts
        for _ in range(300):
            x = torch.rand(int(torch.randint(1, 5, (1,), generator=g)), 4, generator=g) * IN_MAX
            try:
                y = dev.query(x)
            except SerialDeviceError as err:
                failed.append(str(err))
                continue
            assert torch.equal(y, reference(x, "i16").to(y.dtype)), "a wrong result accepted"
            done += 1
    struck = fw.faults_struck
    assert all(struck.get(k, 0) >= 1 for k in ("drop", "corrupt", "duplicate", "delay",
                                               "reset")), struck
    assert fw.boots == struck["reset"] and done >= 294, (failed, struck)


@pytest.mark.parametrize("construct", [
    ("import json\n", "import json\nimport dataclasses\n"),  # no dataclasses module
    ("    head = struct.pack(", "    msg_type = bytes([msg_type]).removeprefix(b'')[0]\n"
                                "    head = struct.pack("),  # a bytes method CPython has
])
def test_an_unsupported_construct_fails_under_micropython(micropython_js, tmp_path, construct):
    for f in FIRMWARE.glob("*.py"):
        shutil.copy(f, tmp_path / f.name)
    source = (tmp_path / "physproto.py").read_text()
    assert construct[0] in source
    (tmp_path / "physproto.py").write_text(source.replace(construct[0], construct[1], 1))
    runner = sys.modules["physnn_firmware_runner"]
    with runner.FirmwareProcess("cpython", firmware=tmp_path) as fw:  # fine under CPython
        assert exchange(fw.port, [P.encode_frame(P.HELLO, 1)])[0].type == P.INFO
    with runner.FirmwareProcess("micropython", firmware=tmp_path) as fw:
        with pytest.raises(SerialDeviceError):
            SerialDevice(fw.port, latency=0.05, retries=1)
        assert fw.wait_exit(5) == 1
        assert any(e in " ".join(fw.stderr) for e in ("ImportError", "AttributeError")), \
            fw.stderr


def test_heap_per_batch_under_micropython(micropython_js):
    runner = sys.modules["physnn_firmware_runner"]
    with runner.FirmwareProcess("micropython", mem=True) as fw:
        with SerialDevice(fw.port) as dev:
            for _ in range(4):
                dev.query(torch.rand(32, 4) * IN_MAX)
        deadline = time.monotonic() + 2
        while len(fw.mem) < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
    rows, allocated, live, free = zip(*fw.mem[-3:], strict=True)
    assert rows == (32, 32, 32) and all(a > 32 * 1000 for a in allocated), fw.mem
    assert max(live) - min(live) < 1024 and max(live) < 64 * 1024 and min(free) > 0, fw.mem
