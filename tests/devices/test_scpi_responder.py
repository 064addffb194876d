"""The SCPI responder: its command set, its line framing, its faults and its command line."""

import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import phys
from phys.devices.scpi_instrument import ScpiBench, block, parse_block
from phys.devices.scpi_responder import GARBLED, ScpiFaults, ScpiResponder, take_line

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def bench():
    with phys.open("cavity", n_in=2, n_out=3, n_scatterers=8, seed=0) as dev:
        yield ScpiBench(dev)


def test_commands_measure_the_simulator(bench):
    port = bench.port("scope")
    assert port.handle(b"SOUR1:VOLT 0.5;SOUR2:VOLT -0.25") is None
    assert port.handle(b"INIT;*OPC?") == b"1"
    values = [float(v) for v in port.handle(b"FETC?").split(b",")]
    expected = bench.device.query(torch.tensor([[0.5, -0.25]]))[0].tolist()
    assert values == pytest.approx(expected, rel=1e-7)
    payload, used = parse_block(port.handle(b"FETC:DATA?"))
    assert list(struct.unpack("<3f", payload)) == expected and used == 2 + 2 + 12
    assert port.handle(b"SYST:ERR?") == b'0,"No error"'


def test_a_batch_uploaded_as_a_list_or_a_block(bench):
    port = bench.port("gen")
    port.handle(b"SOUR:LIST 0.5,-0.25,1,0;INIT")
    as_list = port.handle(b"FETC?")
    port.handle(b"SOUR:DATA " + block(struct.pack("<4f", 0.5, -0.25, 1.0, 0.0)) + b";INIT")
    assert port.handle(b"FETC?") == as_list and as_list.count(b",") == 5


@pytest.mark.parametrize("command, error", [
    (b"VOLT 1", b'-113,"Undefined header; VOLT"'),
    (b"SOUR1:VOLT one", b'-104,"Data type error; \'one\'"'),
    (b"SOUR1:VOLT 2.5", b'-222,"Data out of range; 2.5 outside [-1, 1]"'),
    (b"SOUR:LIST 0.5,0.5,0.5", b'-109,"Missing parameter; 3 values is not a multiple of 2 '
                               b'inputs"'),
    (b"SOUR:DATA #2zzabc", b'-104,"Data type error; bad block length"'),
    (b"SOUR:DATA 12", b'-104,"Data type error; expected a #<n><length> block"'),
    (b"FETC?", b'-230,"Data corrupt or stale; INIT first"'),
])
def test_refused_commands_queue_their_scpi_error(bench, command, error):
    port = bench.port("gen")
    assert port.handle(command) is None
    assert port.handle(b"SYST:ERR?") == error
    assert port.handle(b"SYST:ERR?") == b'0,"No error"'


def test_the_error_queue_is_bounded(bench):
    port = bench.port("gen")
    for _ in range(40):
        port.handle(b"BOGUS")
    replies = [port.handle(b"SYST:ERR?") for _ in range(17)]
    assert replies[-2] == b'-350,"Queue overflow"' and replies[-1] == b'0,"No error"'


def test_take_line_keeps_a_block_whole():
    payload = struct.pack("<2f", 10.0, 1.0)  # holds no terminator, so add one
    payload = b"\n" + payload[1:]
    data = b"SOUR:DATA " + block(payload) + b"\nINIT\n"
    line, rest = take_line(data)
    assert line == b"SOUR:DATA " + block(payload) and rest == b"INIT\n"
    assert take_line(data[:14]) is None  # the block is not complete yet
    assert take_line(b"*IDN?\nINIT") == (b"*IDN?", b"INIT")
    assert take_line(b"COMMENT #x\n") == (b"COMMENT #x", b"")


def test_fault_rates_are_checked():
    with pytest.raises(ValueError, match=r"fault rate garble must be in \[0, 1\], got 2"):
        ScpiFaults(garble=2)


def test_bad_responder_options(bench):
    with pytest.raises(ValueError, match="baudrate must be an int >= 0"):
        ScpiResponder(bench.device, baudrate=-1)
    with pytest.raises(ValueError, match="roles must be distinct"):
        ScpiResponder(bench.device, roles=("gen", "gen"))


def test_replies_are_paced_at_the_baud_rate(bench):
    import pyvisa

    with ScpiResponder(bench.device, roles=("gen",), baudrate=9600) as lab:
        inst = pyvisa.ResourceManager("@py").open_resource(
            lab.resource("gen"), read_termination="\n", write_termination="\n", timeout=2000)
        t0 = time.perf_counter()
        for _ in range(5):
            assert inst.query("*IDN?") == "PHYS,SCPI-GEN,0,1.0"
        elapsed = time.perf_counter() - t0
        inst.close()
    line = 5 * (len("*IDN?\n") + len("PHYS,SCPI-GEN,0,1.0\n")) * 10 / 9600
    assert elapsed >= line


def test_injected_faults_reach_the_wire(bench):
    import pyvisa

    with ScpiResponder(bench.device, roles=("gen",), baudrate=0) as lab:
        inst = pyvisa.ResourceManager("@py").open_resource(
            lab.resource("gen"), read_termination="\n", write_termination="\n", timeout=300)
        lab.inject("garble")
        inst.write("*OPC?")
        assert inst.read_raw() == GARBLED + b"\n"
        lab.inject("timeout")
        with pytest.raises(pyvisa.errors.VisaIOError, match="VI_ERROR_TMO"):
            inst.query("*OPC?")
        assert inst.query("*IDN?") == "PHYS,SCPI-GEN,0,1.0"  # *IDN? is never faulted
        inst.close()
    assert lab.stats["garble"] == 1 and lab.stats["timeout"] == 1


def test_runs_from_the_command_line():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "phys.devices.scpi_responder", "-o",
                             "n_in=2", "-o", "n_out=2", "--roles", "gen", "--seconds", "60"],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    try:
        role, resource = proc.stdout.readline().strip().split(": ")
        assert role == "gen" and resource.startswith("ASRL/dev/pts/")
        import pyvisa

        inst = pyvisa.ResourceManager("@py").open_resource(
            resource, read_termination="\n", write_termination="\n", timeout=5000)
        assert inst.query("*IDN?") == "PHYS,SCPI-GEN,0,1.0"
        inst.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
