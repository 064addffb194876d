"""Rig files of ``visa:`` devices: every bad input is an error naming the file and line,
raised before anything reaches an instrument."""

from pathlib import Path

import pytest

import phys
from phys.devices.scpi_responder import ScpiResponder
from phys.devices.visa_rig import RigError, key_lines, load_rig, parse_rig

ROOT = Path(__file__).resolve().parents[2]

GOOD = """\
name = "test rig"
in_range = [-1.0, 1.0]
max_batch = 4

[instruments.gen]
idn = "PHYS,SCPI-GEN,"

[instruments.scope]
resource = "ASRL/dev/null::INSTR"
idn = "PHYS,SCPI-SCOPE,"

[inputs]
instrument = "gen"
n = 2
set = "SOUR{i}:VOLT {value:.6f}"

[trigger]
instrument = "scope"
command = "INIT"

[[outputs]]
instrument = "scope"
query = "FETC?"
n = 3

[[outputs]]
instrument = "gen"
query = "SOUR1:VOLT?"
n = 1
"""


def line_of(text: str, needle: str) -> int:
    return next(k for k, line in enumerate(text.splitlines(), 1) if needle in line)


def bad(replace: str, by: str, text: str = GOOD) -> str:
    assert replace in text
    return text.replace(replace, by, 1)


def test_the_good_rig_parses_with_defaults():
    rig = parse_rig(GOOD, "rig.toml")
    assert rig.n_out == 4 and rig.inputs.n == 2 and rig.batch == "row"
    assert rig.instruments["gen"].timeout == 2.0
    assert rig.instruments["gen"].errors == "SYST:ERR?"
    assert rig.trigger.wait == ""
    assert [o.query for o in rig.outputs] == ["FETC?", "SOUR1:VOLT?"]
    assert rig.resources("ASRL/dev/pts/9::INSTR") == {
        "gen": "ASRL/dev/pts/9::INSTR", "scope": "ASRL/dev/null::INSTR"}


def test_key_lines_find_tables_keys_and_array_elements():
    lines = key_lines(GOOD)
    assert lines[("instruments", "scope", "idn")] == line_of(GOOD, 'idn = "PHYS,SCPI-SCOPE')
    assert lines[("outputs", 1, "query")] == line_of(GOOD, "SOUR1:VOLT?")
    assert lines[("inputs",)] == line_of(GOOD, "[inputs]")


def test_unknown_key_names_file_and_line():
    text = bad('idn = "PHYS,SCPI-GEN,"', 'idn = "PHYS,SCPI-GEN,"\ntimout = 2.0')
    with pytest.raises(RigError, match=rf"^rig.toml:{line_of(text, 'timout')}: "
                                       r"instruments.gen: unknown key 'timout'"):
        parse_rig(text, "rig.toml")


def test_unknown_top_level_key():
    text = bad("max_batch = 4", "max_batch = 4\nsettel = 0.1")
    with pytest.raises(RigError, match=rf"rig.toml:{line_of(text, 'settel')}: unknown key "
                                       r"'settel'; known keys: name, in_range, settle"):
        parse_rig(text, "rig.toml")


def test_template_missing_its_value_placeholder():
    text = bad("{value:.6f}", "0.5")
    with pytest.raises(RigError, match=rf"rig.toml:{line_of(text, 'SOUR{i}')}: inputs.set: "
                                       r"template 'SOUR\{i\}:VOLT 0.5' is missing the "
                                       r"placeholder \{value\}"):
        parse_rig(text, "rig.toml")


def test_template_with_an_unknown_placeholder():
    text = bad("{value:.6f}", "{volts:.6f}")
    with pytest.raises(RigError, match=r"inputs.set: template .* has placeholder \{volts\}; "
                                       r"it may use \{i\}, \{index\}, \{value\}"):
        parse_rig(text, "rig.toml")


def test_template_with_a_bad_format_spec():
    text = bad("{value:.6f}", "{value:.6z}")
    with pytest.raises(RigError, match=rf"rig.toml:{line_of(text, 'SOUR{i}')}: inputs.set: "
                                       r"template .* cannot be formatted"):
        parse_rig(text, "rig.toml")


def test_vector_template_needs_values():
    text = bad('set = "SOUR{i}:VOLT {value:.6f}"', 'mode = "vector"\nset = "SOUR:LIST"')
    with pytest.raises(RigError, match=r"missing the placeholder \{values\}"):
        parse_rig(text, "rig.toml")


def test_binary_upload_must_end_with_the_block():
    text = bad('set = "SOUR{i}:VOLT {value:.6f}"',
               'mode = "vector"\nencoding = "binary"\nset = "SOUR:DATA {values};INIT"')
    with pytest.raises(RigError, match=rf"rig.toml:{line_of(text, 'SOUR:DATA')}: inputs.set: "
                                       r"a binary block ends the command"):
        parse_rig(text, "rig.toml")


def test_wrong_type_names_key_and_line():
    text = bad("n = 2", 'n = "two"')
    line = line_of(text, 'n = "two"')
    with pytest.raises(RigError, match=rf"rig.toml:{line}: inputs.n: must be int, got 'two'"):
        parse_rig(text, "rig.toml")


def test_bool_is_not_an_int():
    text = bad("max_batch = 4", "max_batch = true")
    with pytest.raises(RigError, match=r"max_batch: must be int, got True"):
        parse_rig(text, "rig.toml")


def test_value_out_of_bounds():
    text = bad("n = 2", "n = 0")
    with pytest.raises(RigError, match=r"inputs.n: must be >= 1, got 0"):
        parse_rig(text, "rig.toml")


def test_choice_outside_the_allowed_ones():
    text = bad("n = 3", 'n = 3\nformat = "hex"')
    with pytest.raises(RigError, match=rf"rig.toml:{line_of(text, 'hex')}: outputs\[0\].format: "
                                       r"must be one of 'ascii', 'binary'"):
        parse_rig(text, "rig.toml")


def test_missing_key_names_its_table():
    text = bad('query = "FETC?"\n', "")
    with pytest.raises(RigError, match=rf"rig.toml:{line_of(text, '[[outputs]]')}: outputs\[0\]: "
                                       r"missing key 'query'"):
        parse_rig(text, "rig.toml")


def test_undeclared_instrument():
    text = bad('instrument = "scope"\ncommand', 'instrument = "scop"\ncommand')
    with pytest.raises(RigError, match=rf"rig.toml:{line_of(text, 'scop' + chr(34))}: "
                                       r"trigger.instrument: names instrument 'scop'; the rig "
                                       r"has gen, scope"):
        parse_rig(text, "rig.toml")


def test_bad_in_range():
    text = bad("in_range = [-1.0, 1.0]", "in_range = [1.0, -1.0]")
    with pytest.raises(RigError, match=r"rig.toml:2: in_range: must be \[min, max\] with "
                                       r"finite min < max"):
        parse_rig(text, "rig.toml")


def test_idn_that_is_not_a_regex():
    text = bad('idn = "PHYS,SCPI-GEN,"', 'idn = "PHYS(,"')
    with pytest.raises(RigError, match=rf"rig.toml:{line_of(text, 'PHYS(')}: instruments.gen.idn:"
                                       r" is not a regular expression"):
        parse_rig(text, "rig.toml")


def test_setup_must_be_strings():
    text = bad('idn = "PHYS,SCPI-GEN,"', 'idn = "PHYS,SCPI-GEN,"\nsetup = [1]')
    with pytest.raises(RigError, match=r"instruments.gen.setup: must be an array of strings"):
        parse_rig(text, "rig.toml")


def test_two_instruments_without_a_resource():
    text = bad('resource = "ASRL/dev/null::INSTR"\n', "")
    with pytest.raises(RigError, match=r"'gen' and 'scope' both lack a resource"):
        parse_rig(text, "rig.toml")


def test_instrument_batching_needs_a_vector_upload():
    text = bad("max_batch = 4", 'max_batch = 4\nbatch = "instrument"')
    line = line_of(text, 'batch = "instrument"')
    with pytest.raises(RigError, match=rf"rig.toml:{line}: batch: 'instrument' needs "
                                       r"inputs.mode = 'vector'"):
        parse_rig(text, "rig.toml")


def test_toml_that_does_not_parse():
    with pytest.raises(RigError, match=r"rig.toml: not valid TOML: .*line 2"):
        parse_rig('in_range = [0, 1]\nname = "x\n', "rig.toml")


def test_missing_rig_file():
    with pytest.raises(FileNotFoundError, match="rig file 'nope.toml' does not exist"):
        phys.open("visa:ASRL1::INSTR", rig="nope.toml")


def test_no_resource_anywhere():
    rig = parse_rig(GOOD, "rig.toml")
    with pytest.raises(RigError, match="instrument 'gen' has no resource"):
        rig.resources("")


def test_resources_naming_an_unknown_instrument():
    rig = parse_rig(GOOD, "rig.toml")
    with pytest.raises(RigError, match="resources names instrument 'dmm'"):
        rig.resources("ASRL1::INSTR", {"dmm": "ASRL2::INSTR"})


def test_resources_must_be_strings():
    rig = parse_rig(GOOD, "rig.toml")
    with pytest.raises(RigError, match=r"resources\['scope'\] must be a VISA resource string"):
        rig.resources("ASRL1::INSTR", {"scope": 5})


def test_the_documented_example_rig_checks():
    rig = load_rig(ROOT / "examples" / "scpi_rig.toml")
    assert rig.n_out == 3 and rig.inputs.n == 4 and set(rig.instruments) == {"gen", "scope"}


def test_nothing_is_sent_before_the_whole_rig_checks(tmp_path):
    """A mistake in the last table: the instruments, already reachable, hear nothing."""
    text = bad("n = 1\n", "n = 1\nformt = 'ascii'\n").replace(
        'resource = "ASRL/dev/null::INSTR"', 'resource = "SCOPE"')
    with ScpiResponder(phys.open("cavity", n_in=2, n_out=4, seed=0), baudrate=0) as lab:
        rig = tmp_path / "rig.toml"
        rig.write_text(text.replace("SCOPE", lab.resource("scope")))
        with pytest.raises(RigError, match=rf"{rig}:{line_of(text, 'formt')}: outputs\[1\]: "
                                           r"unknown key 'formt'"):
            phys.open(f"visa:{lab.resource('gen')}", rig=str(rig))
        assert lab.received("gen") == [] and lab.received("scope") == []
        assert lab.stats["lines"] == 0
