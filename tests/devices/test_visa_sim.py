"""``visa:`` devices against pyvisa-sim: the generator+scope rig of examples/scpi_sim.yaml."""

from functools import partial
from pathlib import Path

import pytest
import torch

import phys
from phys.devices.visa import VisaInstrumentError, VisaReplyError, VisaTimeout, VisaUnavailable
from phys.testing import check_device

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
RIG = EXAMPLES / "scpi_sim_rig.toml"
BACKEND = f"{EXAMPLES / 'scpi_sim.yaml'}@sim"
open_sim = partial(phys.open, "visa:", rig=str(RIG), backend=BACKEND)


def rig_with(tmp_path: Path, old: str, new: str) -> str:
    text = RIG.read_text()
    assert old in text
    path = tmp_path / "rig.toml"
    path.write_text(text.replace(old, new, 1))
    return str(path)


def test_check_device_against_pyvisa_sim():
    dev = open_sim()
    assert dev.info.exclusive and dev.info.recoverable and not dev.info.stochastic
    passed = check_device(dev, reopen=open_sim)
    assert {"deterministic", "batch-split", "seeded", "reopen", "reject-nan"} <= set(passed)


def test_outputs_are_the_scope_then_the_generator_read_back():
    with open_sim() as dev:
        y = dev.query(torch.tensor([[0.25, -0.5], [1.0, -1.0]]))
        assert dev.info.extra["idn"] == {"gen": "PHYS,SIM-GEN,0,1.0",
                                         "scope": "PHYS,SIM-SCOPE,0,1.0"}
        assert dev.stats.lab_seconds is not None and dev.stats.lab_seconds > 0
    expected = torch.tensor([[0.125, -0.5, 2.0, 0.25, -0.5], [0.125, -0.5, 2.0, 1.0, -1.0]])
    assert torch.equal(y, expected)


def test_lab_seconds_add_up_per_batch():
    with open_sim() as dev:
        dev.query(torch.zeros(3, 2))
        first = dev.stats.lab_seconds
        dev.query(torch.zeros(3, 2))
        assert dev.stats.lab_seconds > first > 0
        assert dev.stats.lab_seconds <= dev.stats.wall_seconds


def test_idn_that_does_not_match(tmp_path):
    rig = rig_with(tmp_path, 'resource = "ASRL2::INSTR"', 'resource = "ASRL3::INSTR"')
    with pytest.raises(VisaReplyError, match=r"instrument 'scope' \(ASRL3::INSTR\) answered "
                                             r"'\*IDN\?' with 'ACME,DMM-9,0,2.1': the rig .* "
                                             r"expects idn 'PHYS,SIM-SCOPE,'"):
        phys.open("visa:", rig=rig, backend=BACKEND)


def test_reply_that_does_not_parse(tmp_path):
    rig = rig_with(tmp_path, 'query = "FETC? (@1:3)"', 'query = "FETC:BAD?"')
    with phys.open("visa:", rig=rig, backend=BACKEND, retries=0) as dev:
        with pytest.raises(VisaReplyError, match=r"instrument 'scope' \(ASRL2::INSTR\) answered "
                                                 r"'FETC:BAD\?' with '0.125,volts,2.0': "
                                                 r"'volts' is not a number"):
            dev.query(torch.zeros(2))


def test_reply_with_the_wrong_number_of_values(tmp_path):
    rig = rig_with(tmp_path, 'query = "FETC? (@1:3)"', 'query = "FETC:SHORT?"')
    with phys.open("visa:", rig=rig, backend=BACKEND, retries=0) as dev:
        with pytest.raises(VisaReplyError, match=r"answered 'FETC:SHORT\?' with '0.125,-0.5': "
                                                 r"2 values, expected 3"):
            dev.query(torch.zeros(2))


def test_instrument_error_from_the_queue_is_raised_with_its_text(tmp_path):
    rig = rig_with(tmp_path, 'idn = "PHYS,SIM-GEN,"', 'idn = "PHYS,SIM-GEN,"\nsetup = ["OUTP ON"]')
    with pytest.raises(VisaInstrumentError, match=r"instrument 'gen' \(ASRL1::INSTR\) reported "
                                                  r"after its setup commands: "
                                                  r'-113,"Undefined header"'):
        phys.open("visa:", rig=rig, backend=BACKEND)


def test_a_port_that_does_not_exist_is_unavailable():
    with pytest.raises(VisaUnavailable, match=r"instrument 'gen': cannot open "
                                              r"'ASRL/dev/no-such-port::INSTR'"):
        phys.open("visa:", rig=str(RIG), resources={"gen": "ASRL/dev/no-such-port::INSTR"})


def test_a_query_the_instrument_does_not_answer_times_out(tmp_path):
    rig = rig_with(tmp_path, 'query = "SOUR2:VOLT?"', 'query = "SOUR3:VOLT?"')
    rig_text = Path(rig).read_text().replace('idn = "PHYS,SIM-GEN,"',
                                             'idn = "PHYS,SIM-GEN,"\ntimeout = 0.2\nerrors = ""')
    Path(rig).write_text(rig_text)
    with phys.open("visa:", rig=rig, backend=BACKEND, retries=0) as dev:
        # pyvisa-sim answers an unknown query with its error text, which does not parse
        with pytest.raises((VisaReplyError, VisaTimeout), match=r"instrument 'gen'.*SOUR3:VOLT"):
            dev.query(torch.zeros(2))


def test_bad_options_are_refused_before_opening():
    with pytest.raises(ValueError, match="retries must be an int >= 0"):
        phys.open("visa:", rig=str(RIG), backend=BACKEND, retries=-1)
    with pytest.raises(ValueError, match="resources must map instrument names"):
        phys.open("visa:", rig=str(RIG), backend=BACKEND, resources="ASRL1::INSTR")
    with pytest.raises(ValueError, match=r"device 'visa:' has no option 'baud'"):
        phys.open("visa:", rig=str(RIG), baud=9600)
