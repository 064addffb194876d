"""One owner per option: TrainSpec, the CLI and the run options are generated from the
options dataclasses; wrong types are refused naming the option; the device is parsed
once on the way from ``phys train`` to the first query."""

from __future__ import annotations

import dataclasses

import pytest

from phys import data as data_module
from phys.cli import _compare_parser, _swap_parser, _train_parser, given, main
from phys.experiment import RunOptions, TrainerOptions, TrainSpec, prepare
from phys.registry import DeviceSpec
from phys.train.base import TrainConfig
from phys.train.phyll import PhyLLConfig


def _flat(text: str) -> str:
    return " ".join(text.split())


def _fields(*classes: type) -> list[dataclasses.Field]:
    return [f for cls in classes for f in dataclasses.fields(cls)]


def test_train_help_shows_every_default(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = _flat(capsys.readouterr().out)
    for f in _fields(TrainSpec, RunOptions):
        if f.default is dataclasses.MISSING:  # the dict options
            continue
        flag = "--" + f.name.replace("_", "-")
        assert flag in text or f.name == "count_flops", f.name
        assert f"(default: {f.default})" in text, f.name


def test_the_parsers_hold_no_default_of_their_own():
    """Every option's parser default is None: an empty command line is the dataclass
    defaults, so a second copy of a default cannot creep into the CLI."""
    for parser, cls in ((_train_parser(), TrainSpec), (_compare_parser(), TrainSpec),
                        (_swap_parser(), RunOptions)):
        args = parser.parse_args([])
        names = [f.name for f in dataclasses.fields(cls) if hasattr(args, f.name)]
        assert names and all(getattr(args, n) is None for n in names), parser.prog
        assert given(args, cls) == {}
    args = _train_parser().parse_args([])
    assert TrainSpec(**given(args, TrainSpec)) == TrainSpec()
    assert RunOptions(**given(args, RunOptions)) == RunOptions()


def test_trainer_options_are_the_trainer_configs_own():
    """Defaults, allowed values and bounds of the trainer options are those of
    TrainConfig and PhyLLConfig (epochs excepted, on purpose)."""
    owners = {f.name: f for f in _fields(PhyLLConfig)}
    for f in dataclasses.fields(TrainerOptions):
        if f.name == "trainer":
            continue
        source = owners[f.name]
        assert f.default == source.default, f.name
        for key in ("choices", "min", "max"):
            assert f.metadata[key] == source.metadata[key], (f.name, key)
    assert TrainSpec().epochs == TrainConfig().epochs == 20


def test_typed_options_reach_the_spec():
    args = _train_parser().parse_args(["--epochs", "3", "-o", "noise=0.01", "--flops",
                                       "--no-progress", "--activation", "abs"])
    spec = TrainSpec(**given(args, TrainSpec))
    assert (spec.epochs, spec.device_options, spec.count_flops, spec.activation) == (
        3, {"noise": 0.01}, True, "abs")
    assert spec.lr == TrainSpec().lr
    assert RunOptions(**given(args, RunOptions)).progress is False


@pytest.mark.parametrize(("options", "message"), [
    ({"layers": 2.7}, "layers must be an int, got 2.7"),
    ({"epochs": True}, "epochs must be an int, got True"),
    ({"lr": "fast"}, "lr must be a number, got 'fast'"),
    ({"device_options": 3}, "device_options must be a table, got 3"),
    ({"count_flops": 1}, "count_flops must be true or false, got 1"),
    ({"negatives": "some"}, "negatives must be one of random, all, got 'some'"),
])
def test_wrong_types_are_refused_in_python(options, message):
    with pytest.raises(ValueError) as caught:
        TrainSpec(**options)
    assert str(caught.value) == message


def test_wrong_run_options_are_refused_in_python():
    with pytest.raises(ValueError, match="checkpoint_every must be >= 0, got -1"):
        RunOptions(checkpoint_every=-1)
    with pytest.raises(ValueError, match="device_wait must be a number"):
        RunOptions(device_wait="long")


@pytest.mark.parametrize(("argv", "message"), [
    (["--layers", "2.7"], "argument --layers: invalid int value: '2.7'"),
    (["--epochs", "true"], "argument --epochs: invalid int value: 'true'"),
    (["--goodness", "l2"], "argument --goodness: invalid choice: 'l2'"),
])
def test_wrong_types_are_refused_on_the_command_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", *argv])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


@pytest.fixture
def no_data(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("data loaded before the options were checked")

    monkeypatch.setattr(data_module, "load", refuse)


@pytest.mark.parametrize(("argv", "message"), [
    (["-o", "n_scatterers=many"], "device option n_scatterers must be an int, got 'many'"),
    (["-o", "noise=[1]"], "device option noise must be a number, got [1]"),
    (["-d", "test_fraction=half"], "data option test_fraction must be a number"),
    (["--trainer", "pat", "--twin", "simulator", "-t", "drive=strong"],
     "twin option drive must be a number, got 'strong'"),
    (["-o", "nosuch=1"], "device 'cavity' has no option 'nosuch'; it accepts: n_in, n_out"),
    (["--checkpoint-every", "-1"], "--checkpoint-every must be >= 0, got -1"),
    (["--layers", "0"], "--layers must be >= 1, got 0"),
])
def test_bad_options_are_one_line_before_any_data_loads(argv, message, tmp_path, capsys,
                                                         no_data):
    assert main(["train", "--no-progress", "--out", str(tmp_path / "r"), *argv]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("phys: error: "), lines
    assert message in lines[0]
    assert not (tmp_path / "r").exists()


def test_prepare_checks_what_the_twin_and_device_take():
    with pytest.raises(ValueError, match="has no option 'warp'; it accepts"):
        prepare(TrainSpec(trainer="pat", twin="simulator", twin_options={"warp": 1}))
    assert prepare(TrainSpec(twin_options={"warp": 1})).name == "cavity"  # not used: ignored
    assert prepare(TrainSpec(device_options={"coupling": 1})).options == {"coupling": 1}


def test_phys_train_parses_the_device_once(tmp_path, monkeypatch, capsys):
    parse = DeviceSpec.parse.__func__
    names: list[str] = []

    def counted(cls, name, options=None):
        names.append(name)
        return parse(cls, name, options)

    monkeypatch.setattr(DeviceSpec, "parse", classmethod(counted))
    assert main(["train", "--device", "cavity", "--trainer", "pat", "--twin", "simulator",
                 "--layers", "2", "--hidden", "8", "--epochs", "1", "--no-progress",
                 "--out", str(tmp_path / "r")]) == 0
    assert names == ["cavity"]
    assert "test accuracy" in capsys.readouterr().out
