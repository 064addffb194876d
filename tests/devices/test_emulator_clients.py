"""Who the virtual lab device serves: one TCP host at a time (or N, each with a device of
its own), bounded connections and bytes, a stable link to its pty, clean option errors
and a summary on SIGTERM. Loopback only; every test stops by itself within seconds."""

import os
import select
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

import phys
from phys.devices import protocol as P
from phys.devices.emulator import Emulator
from phys.devices.serial import SerialDevice, SerialDeviceError

BACKEND = dict(n_in=4, n_out=3, seed=3)
FAST = dict(latency=0.05, baudrate=1_000_000, retries=3)
ROOT = Path(__file__).resolve().parents[2]


def rows(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, BACKEND["n_in"], generator=g) * 2 - 1


def address(lab):
    host, port = lab.port[len("socket://"):].split(":")
    return host, int(port)


def closed_by_peer(sock, timeout):
    """Whether the emulator closes ``sock`` within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if select.select([sock], [], [], 0.02)[0]:
            try:
                if sock.recv(4096) == b"":
                    return True
            except ConnectionError:
                return True
    return False


def test_a_second_host_is_refused_while_the_first_is_served():
    with Emulator.serving("cavity", tcp=0, **BACKEND) as lab:
        first = SerialDevice(lab.port, **FAST)
        with pytest.raises(SerialDeviceError, match="in use") as err:
            SerialDevice(lab.port, **FAST)
        assert lab.port in str(err.value) and "HELLO" in str(err.value)
        x = rows(3)
        assert torch.equal(first.query(x), phys.open("cavity", **BACKEND).query(x))
        first.close()  # the place is free again: the next host is served
        with SerialDevice(lab.port, **FAST) as second:
            assert second.query(x).shape == (3, 3)
        assert lab.stats.refused == 1


def test_clients_each_have_a_device_of_their_own():
    ref = phys.open("cavity", **BACKEND)
    with Emulator.serving("cavity", tcp=0, clients=2, **BACKEND) as lab:
        a, b = SerialDevice(lab.port, **FAST), SerialDevice(lab.port, **FAST)
        a.set("gain", [3.0] * 3)
        a.set("offset", [0.5] * 3)
        x = rows(4)
        assert torch.equal(b.query(x), ref.query(x))  # a's SET did not reach b
        assert torch.allclose(a.query(x), ref.query(x) * 3 + 0.5)
        with pytest.raises(SerialDeviceError, match="in use"):
            SerialDevice(lab.port, **FAST)  # a third host: both places are taken
        a.close()
        b.close()
        assert lab.device_stats().measured_samples == 8


def test_connections_past_the_cap_are_closed_at_once_and_refused_ones_do_not_linger():
    with Emulator.serving("cavity", tcp=0, max_connections=3, **BACKEND) as lab:
        socks = [socket.create_connection(address(lab), timeout=2) for _ in range(6)]
        try:
            t0 = time.monotonic()
            # 1 served and 2 refused (waiting for a first frame) fill the cap of 3
            assert all(closed_by_peer(s, 0.5) for s in socks[3:])
            assert time.monotonic() - t0 < 1.0
            assert len(lab._links) <= 3
            assert not closed_by_peer(socks[0], 0.05)  # the served host keeps its place
            # refused idle connections are closed after a second, freeing their slots
            assert all(closed_by_peer(s, 2.0) for s in socks[1:3])
            assert lab.stats.refused == 5
        finally:
            for s in socks:
                s.close()
        with SerialDevice(lab.port, **FAST) as dev:  # a normal host still gets in
            assert dev.query(rows(2)).shape == (2, 3)


def test_a_host_that_sends_without_reading_is_cut_off():
    with Emulator.serving("cavity", tcp=0, max_batch=16, max_buffer=8192, **BACKEND) as lab:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills fast
        sock.settimeout(0.5)
        sock.connect(address(lab))
        payload = P.query_payload(rows(16).numpy(), "f32", -1, 1)
        deadline, sent = time.monotonic() + 10, 0
        try:
            sock.sendall(P.encode_frame(P.HELLO, 0))
            while lab.stats.cut_off == 0 and time.monotonic() < deadline:
                sock.sendall(P.encode_frame(P.QUERY, 1 + sent % 60000, payload))
                sent += 1
        except (ConnectionError, TimeoutError):
            pass
        finally:
            sock.close()
        assert lab.stats.cut_off == 1 and lab.stats.overflow_bytes > 0, sent
        assert all(link.buffered <= 8192 for link in lab._links.values())
        with SerialDevice(lab.port, **FAST) as dev:  # the place it held is free
            assert dev.query(rows(2)).shape == (2, 3)


def test_reopen_finds_a_restarted_emulator_through_its_link(tmp_path):
    link = tmp_path / "lab"
    os.symlink("/nonexistent-pty", link)  # left by an emulator that died: replaced
    x = rows(5)
    with Emulator.serving("cavity", link=str(link), **BACKEND) as lab:
        assert os.readlink(link) == lab.port
        dev = SerialDevice(str(link), **FAST)
        before = dev.query(x)
        first = lab.port
    assert not os.path.lexists(link)  # removed on exit
    hold = os.openpty()  # takes the freed pty, so the next emulator gets another path
    try:
        with Emulator.serving("cavity", link=str(link), **BACKEND) as lab:
            assert lab.port != first and os.readlink(link) == lab.port
            dev.reopen()
            assert torch.equal(dev.query(x), before) and dev.link.reopens == 1
            dev.close()
    finally:
        os.close(hold[0])
        os.close(hold[1])


def test_a_link_never_replaces_a_file(tmp_path):
    from phys.devices.connections import publish_link

    path = tmp_path / "notes.txt"
    path.write_text("keep me")
    with pytest.raises(ValueError, match="not a symlink"):
        publish_link(str(path), "/dev/null")
    cavity = phys.open("cavity", **BACKEND)
    with pytest.raises(ValueError, match="not a symlink"):
        Emulator(cavity).open_pty(link=str(path))
    assert path.read_text() == "keep me"


@pytest.mark.parametrize("argv,flag", [
    (["--tcp", "99999"], "--tcp must be in 0..65535"),
    (["--tcp", "-1"], "--tcp must be in 0..65535"),
    (["--baud", "0"], "--baud must be >= 1"),
    (["--max-batch", "0"], "--max-batch must be in 1..65535"),
    (["--queue", "0"], "--queue must be in"),
    (["--clients", "0"], "--clients must be in"),
    (["--max-frame", "10"], "--max-frame must be in 256.."),
    (["--duration", "-1"], "--duration must be >= 0"),
    (["--settle", "nan"], "--settle must be a finite number"),
    (["--max-buffer", "100"], "--max-buffer must be an int >= "),
    (["--clients", "4", "--max-connections", "2"], "--max-connections must be >= clients"),
    (["--link", "x", "--tcp", "0"], "--link needs a pty"),
])
def test_bad_emulate_options_are_one_line_errors(argv, flag, capsys):
    from phys.cli import main

    assert main(["emulate", "-o", "n_in=2", "-o", "n_out=2", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"phys: error: {flag}") and captured.err.count("\n") == 1
    assert "serving" not in captured.out  # refused before anything was served


def test_the_summary_is_printed_on_sigterm_even_right_after_start(tmp_path):
    # SIGTERM arrives the moment the port file is written, as a supervisor that waits
    # for that file and then stops the emulator would send it
    script = textwrap.dedent("""
        import os, signal, sys
        import phys.atomic
        real = phys.atomic.write_text
        def write_then_stop(path, text):
            real(path, text)
            os.kill(os.getpid(), signal.SIGTERM)
        phys.atomic.write_text = write_then_stop
        from phys.cli import main
        sys.exit(main(["emulate", "--tcp", "0", "-o", "n_in=2", "-o", "n_out=2",
                       "--port-file", sys.argv[1]]))
    """)
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "port")], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, (done.returncode, done.stderr[-500:])
    lines = done.stdout.splitlines()
    assert lines[1].startswith("socket://127.0.0.1:")
    assert lines[-1].startswith("stopped: 0 frames in")
