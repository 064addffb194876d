"""``visa:`` devices through pyvisa-py against the SCPI responder on real pseudo-terminals:
conformance, the exact bytes written, faults, and training."""

import struct
from pathlib import Path

import pytest
import torch

import phys
from phys.devices.scpi_responder import GARBLED, ScpiFaults, ScpiResponder
from phys.devices.visa import VisaInstrumentError, VisaReplyError, VisaTimeout
from phys.testing import check_device

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = (ROOT / "examples" / "scpi_rig.toml").read_text()
N_IN, N_OUT = 4, 3

ROW = [0.5, -0.25, 0.0, 1.0]
#: The inputs of one row as the generator receives them, byte for byte.
ROW_WRITES = [b"SOUR1:VOLT 0.500000\n", b"SOUR2:VOLT -0.250000\n", b"SOUR3:VOLT 0.000000\n",
              b"SOUR4:VOLT 1.000000\n"]


def rig(tmp_path: Path, *changes: tuple[str, str]) -> str:
    """The documented example rig, deterministic, with a short timeout and ``changes``."""
    text = EXAMPLE.replace("stochastic = true", "stochastic = false").replace(
        "timeout = 2.0", "timeout = 0.3")
    text = text.replace('idn = "PHYS,SCPI-SCOPE,"', 'idn = "PHYS,SCPI-SCOPE,"\ntimeout = 0.3')
    for old, new in changes:
        assert old in text, old
        text = text.replace(old, new, 1)
    path = tmp_path / "rig.toml"
    path.write_text(text)
    return str(path)


#: A rig whose generator takes a whole batch as one float32 block and whose scope
#: answers one ASCII list for it.
BATCHED = (('batch = "row"', 'batch = "instrument"'),
           ('mode = "each"', 'mode = "vector"\nencoding = "binary"'),
           ('set = "SOUR{i}:VOLT {value:.6f}"', 'set = "SOUR:DATA {values}"'),
           ('query = "FETC:DATA?"', 'query = "FETC?"'), ('format = "binary"', 'format = "ascii"'))


@pytest.fixture
def cavity():
    with phys.open("cavity", n_in=N_IN, n_out=N_OUT, n_scatterers=8, seed=0) as dev:
        yield dev


@pytest.fixture
def lab(cavity):
    with ScpiResponder(cavity, baudrate=0) as responder:
        yield responder


def opener(lab: ScpiResponder, rig_path: str, **options):
    def open_():
        return phys.open(f"visa:{lab.resource('gen')}", rig=rig_path,
                         resources={"scope": lab.resource("scope")}, **options)
    return open_


def rounded(x: torch.Tensor) -> torch.Tensor:
    """Inputs as the generator sets them: six decimals."""
    return torch.tensor([[float(f"{v:.6f}") for v in row] for row in x.double().tolist()])


def test_check_device_through_the_pty_responder(lab, tmp_path):
    open_ = opener(lab, rig(tmp_path))
    dev = open_()
    assert dev.info.exclusive and dev.info.recoverable
    assert dev.info.extra["idn"] == {"gen": "PHYS,SCPI-GEN,0,1.0", "scope": "PHYS,SCPI-SCOPE,1,1.0"}
    passed = check_device(dev, reopen=open_)
    assert {"deterministic", "batch-independence", "batch-split", "seeded", "reopen"} <= set(passed)


def test_answers_are_the_simulators_bit_for_bit(lab, cavity, tmp_path):
    x = torch.rand(5, N_IN, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with opener(lab, rig(tmp_path))() as dev:
        y = dev.query(x)
        assert dev.stats.lab_seconds > 0
    # row by row, as the responder measured them (the solver stops per batch)
    assert torch.equal(y, torch.stack([cavity.query(row) for row in rounded(x)]))


def test_bytes_written_on_open_and_per_row(lab, tmp_path):
    with opener(lab, rig(tmp_path))() as dev:
        assert lab.received("gen") == [b"*IDN?\n", b"SYST:ERR?\n", b"*CLS\n", b"SYST:ERR?\n"]
        assert lab.received("scope") == [b"*IDN?\n", b"SYST:ERR?\n", b"SYST:ERR?\n"]
        lab.clear_received()
        dev.query(torch.tensor([ROW, ROW]))
    assert lab.received("gen") == ROW_WRITES * 2 + [b"SYST:ERR?\n"]
    assert lab.received("scope") == [b"INIT\n", b"*OPC?\n", b"FETC:DATA?\n"] * 2 + [b"SYST:ERR?\n"]


def test_bytes_of_a_batch_uploaded_as_one_binary_block(lab, cavity, tmp_path):
    x = torch.tensor([ROW, [-1.0, 0.125, 0.75, -0.5]])
    with opener(lab, rig(tmp_path, *BATCHED))() as dev:
        lab.clear_received()
        y = dev.query(x)
    block = struct.pack("<8f", *x.reshape(-1).tolist())
    assert lab.received("gen") == [b"SOUR:DATA #232" + block + b"\n", b"SYST:ERR?\n"]
    assert lab.received("scope") == [b"INIT\n", b"*OPC?\n", b"FETC?\n", b"SYST:ERR?\n"]
    # the scope's ASCII list carries 9 significant digits: float32 survives it exactly
    assert torch.equal(y, cavity.query(x))


def test_bytes_of_a_row_uploaded_as_a_comma_list(lab, tmp_path):
    changes = (('mode = "each"', 'mode = "vector"'),
               ('set = "SOUR{i}:VOLT {value:.6f}"', 'set = "SOUR:LIST {values}"'))
    with opener(lab, rig(tmp_path, *changes))() as dev:
        lab.clear_received()
        dev.query(torch.tensor(ROW))
    assert lab.received("gen") == [b"SOUR:LIST 0.5,-0.25,0,1\n", b"SYST:ERR?\n"]


def test_a_lost_reply_is_measured_again(lab, tmp_path):
    with opener(lab, rig(tmp_path), retries=1)() as dev:
        clean = dev.query(torch.tensor(ROW))
        lab.clear_received()
        lab.inject("timeout")
        assert torch.equal(dev.query(torch.tensor(ROW)), clean)
    assert lab.stats["timeout"] == 1
    # the row, then a resync (*OPC? answered 1, the error queue read), then the row again
    resync = [b"*OPC?\n", b"SYST:ERR?\n"]
    assert lab.received("gen") == ROW_WRITES + resync + ROW_WRITES + [b"SYST:ERR?\n"]
    assert lab.received("scope") == [b"INIT\n", b"*OPC?\n", *resync, b"INIT\n", b"*OPC?\n",
                                     b"FETC:DATA?\n", b"SYST:ERR?\n"]


def test_a_lost_reply_without_retries_names_instrument_and_command(lab, tmp_path):
    with opener(lab, rig(tmp_path), retries=0)() as dev:
        lab.inject("timeout")
        with pytest.raises(VisaTimeout, match=r"instrument 'scope' \(ASRL/dev/pts/\d+::INSTR\) "
                                              r"did not answer '\*OPC\?' within 0.3 s"):
            dev.query(torch.tensor(ROW))
        assert isinstance(VisaTimeout("x"), phys.DeviceUnavailable)
        dev.reopen()  # recoverable: the instruments answer again
        assert dev.query(torch.tensor(ROW)).shape == (N_OUT,)


@pytest.mark.parametrize("wait", ['"*OPC?"', '""'])
def test_a_late_reply_is_not_taken_for_a_new_one(lab, tmp_path, wait):
    """The reply to *OPC? (or the binary block itself) comes after the host gave up; the
    resync reads past it, and the batch measured again is the right one."""
    lab.faults.late_seconds = 0.5  # the rig waits 0.3 s
    with opener(lab, rig(tmp_path, ('wait = "*OPC?"', f"wait = {wait}")), retries=1)() as dev:
        other = torch.tensor([-0.5, 0.5, 0.25, -1.0])
        first, second = dev.query(torch.tensor(ROW)), dev.query(other)
        lab.inject("late")
        assert torch.equal(dev.query(other), second)
        assert torch.equal(dev.query(torch.tensor(ROW)), first)
    assert lab.stats["late"] == 1


def test_a_garbled_ascii_reply_names_instrument_command_and_reply(lab, tmp_path):
    changes = (('query = "FETC:DATA?"', 'query = "FETC?"'),
               ('format = "binary"', 'format = "ascii"'), ('wait = "*OPC?"', 'wait = ""'))
    with opener(lab, rig(tmp_path, *changes), retries=0)() as dev:
        lab.inject("garble")
        with pytest.raises(VisaReplyError, match=r"instrument 'scope' \(ASRL/dev/pts/\d+::INSTR\) "
                                                 r"answered 'FETC\?' with b'\\x8f#\?\\xa5~GARBLE"
                                                 r"\\n': not ASCII text"):
            dev.query(torch.tensor(ROW))
        assert dev.query(torch.tensor(ROW)).shape == (N_OUT,)  # the next batch is clean


def test_a_garbled_binary_block_is_refused(lab, tmp_path):
    with opener(lab, rig(tmp_path, ('wait = "*OPC?"', 'wait = ""')), retries=0)() as dev:
        lab.inject("garble")
        with pytest.raises(VisaReplyError, match=r"instrument 'scope' .* answered 'FETC:DATA\?' "
                                                 r"with b'\\x8f#': not an IEEE 488.2 definite-"
                                                 r"length block"):
            dev.query(torch.tensor(ROW))
    assert GARBLED.startswith(b"\x8f#")  # a '#' that does not start a valid block


def test_a_block_with_the_wrong_number_of_values(lab, tmp_path):
    with opener(lab, rig(tmp_path, ("n = 3", "n = 4")), retries=0)() as dev:
        with pytest.raises(VisaReplyError, match=r"instrument 'scope' .* answered 'FETC:DATA\?' "
                                                 r"with b'.*': a block of 12 bytes, expected 4 "
                                                 r"values of 4 bytes"):
            dev.query(torch.tensor(ROW))


def test_a_garbled_reply_is_measured_again(lab, tmp_path):
    with opener(lab, rig(tmp_path), retries=1)() as dev:
        clean = dev.query(torch.tensor(ROW))
        lab.inject("garble")
        assert torch.equal(dev.query(torch.tensor(ROW)), clean)
    assert lab.stats["garble"] == 1


def test_an_instrument_error_is_raised_with_its_text(lab, tmp_path):
    with opener(lab, rig(tmp_path), retries=3)() as dev:
        lab.inject("error")
        with pytest.raises(VisaInstrumentError, match=r"instrument 'scope' \(ASRL/dev/pts/\d+::"
                                                      r"INSTR\) reported after a batch: -240,"
                                                      r'"Hardware error; injected fault"'):
            dev.query(torch.tensor(ROW))
        assert dev.query(torch.tensor(ROW)).shape == (N_OUT,)  # the queue was read empty


def test_an_input_the_instrument_refuses_is_its_error(lab, tmp_path):
    with opener(lab, rig(tmp_path, ("in_range = [-1.0, 1.0]", "in_range = [-2.0, 2.0]")))() as dev:
        with pytest.raises(VisaInstrumentError, match=r"instrument 'gen' .* reported after a "
                                                      r'batch: -222,"Data out of range; 1.5 '
                                                      r'outside \[-1, 1\]"'):
            dev.query(torch.tensor([1.5, 0.0, 0.0, 0.0]))


def test_random_faults_with_retries_lose_nothing(cavity, tmp_path):
    x = torch.rand(64, N_IN, generator=torch.Generator().manual_seed(1)) * 2 - 1
    faults = ScpiFaults(timeout=0.005, garble=0.02, seed=3)
    with ScpiResponder(cavity, baudrate=0, faults=faults) as lab:
        rig_path = rig(tmp_path, ('timeout = 0.3', 'timeout = 0.1'),
                       ('timeout = 0.3', 'timeout = 0.1'))
        with opener(lab, rig_path, retries=4)() as dev:
            y = dev.query(x)
        assert lab.stats["garble"] + lab.stats["timeout"] > 0
    assert torch.equal(y, torch.stack([cavity.query(row) for row in rounded(x)]))


def test_phyll_trains_through_the_pty_responder(tmp_path):
    from phys.experiment import TrainSpec
    from phys.runs import train

    sizes = (("n = 4", "n = 16"), ("n = 3", "n = 4"), ("max_batch = 16", "max_batch = 256"))
    with phys.open("cavity", n_in=16, n_out=4, n_scatterers=16, seed=0) as circuit, \
            ScpiResponder(circuit, baudrate=0) as lab:
        options = {"rig": rig(tmp_path, *BATCHED[:3], *sizes),
                   "resources": {"scope": lab.resource("scope")}}
        spec = TrainSpec(device=f"visa:{lab.resource('gen')}", device_options=options,
                         data="digits", subset=256, layers=1, hidden=32, epochs=2,
                         negatives="random", lr=1e-2, seed=0)
        results = train(spec)
        assert results["device_samples"] > 0 and lab.bench.measurements > 0
    assert results["device_info"][0]["name"] == "visa:gen+scope"
    assert results["test_accuracy"] > 0.25  # ten classes: chance is 0.1


def test_cli_names_the_rig_file_and_line(tmp_path, capsys):
    from phys.cli import main

    path = rig(tmp_path, ("settle = 0.0", "settle = -1.0"))
    code = main(["train", "--device", "visa:ASRL/dev/null::INSTR", "-o", f"rig={path}",
                 "--no-progress", "--out", str(tmp_path / "run")])
    line = next(k for k, text in enumerate(Path(path).read_text().splitlines(), 1)
                if text.startswith("settle"))
    assert code == 2
    assert f"phys: error: {path}:{line}: settle: must be >= 0, got -1.0" in capsys.readouterr().err
