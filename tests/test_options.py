"""Options as data: one check per rule of phys.options."""

from __future__ import annotations

import pickle
from dataclasses import dataclass

import pytest

from phys.options import OptionError, Options, option, option_fields
from phys.train.phyll import PhyLLConfig


@dataclass
class Example(Options):
    layers: int = option(2, min=1, help="layers")
    lr: float = option(1e-3, min=0.0, help="rate")
    mode: str = option("a", choices=("a", "b"), help="mode")
    subset: int | None = option(None, min=1, help="subset")
    flag: bool = option(False, help="flag")


@pytest.mark.parametrize(("values", "message"), [
    ({"layers": 2.7}, "layers must be an int, got 2.7"),
    ({"layers": True}, "layers must be an int, got True"),
    ({"layers": 0}, "layers must be >= 1, got 0"),
    ({"lr": float("nan")}, "lr must be a finite number"),
    ({"lr": "fast"}, "lr must be a number, got 'fast'"),
    ({"mode": "c"}, "mode must be one of a, b, got 'c'"),
    ({"subset": 0}, "subset must be >= 1"),
    ({"subset": "all"}, "subset must be an int or None"),
    ({"flag": 1}, "flag must be true or false, got 1"),
])
def test_a_bad_value_is_refused_with_the_option_name(values: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        Example(**values)


def test_good_values_pass_and_ints_are_numbers() -> None:
    assert Example(lr=1, subset=None, flag=True).lr == 1


def test_fields_carry_help_and_choices() -> None:
    by_name = {f.name: f for f, _ in option_fields(PhyLLConfig)}
    assert by_name["goodness"].metadata["choices"] == ("cosine", "meansquare")
    assert by_name["label_scale"].default == 3.0
    assert all(f.metadata.get("help") for f in by_name.values())


def test_trainer_options_refuse_wrong_types() -> None:
    with pytest.raises(ValueError, match="epochs must be an int, got True"):
        PhyLLConfig(epochs=True)
    with pytest.raises(ValueError, match="goodness must be one of cosine, meansquare"):
        PhyLLConfig(goodness="bogus")


def test_a_value_above_the_maximum_names_the_option_and_its_maximum() -> None:
    @dataclass
    class Sized(Options):
        width: int = option(8, min=1, max=64, help="width")

    with pytest.raises(OptionError, match="width must be <= 64, got 65") as caught:
        Sized(width=65)
    assert caught.value.option == "width" and isinstance(caught.value, ValueError)
    again = pickle.loads(pickle.dumps(caught.value))  # crosses processes (Ray) intact
    assert (str(again), again.option) == (str(caught.value), "width")


def test_prepare_names_the_spec_field_at_fault() -> None:
    from phys.experiment import TrainSpec, prepare

    for spec, field in [(TrainSpec(data="../../etc/passwd"), "data"),
                        (TrainSpec(data_options={"bogus": 1}), "data_options"),
                        (TrainSpec(device="nope"), "device"),
                        (TrainSpec(device_options={"noise": "abc"}), "device_options"),
                        (TrainSpec(device_options={"a-b": 1}), "device_options"),
                        (TrainSpec(trainer="pat", twin="simulator",
                                   twin_options={"drive": "x"}), "twin_options")]:
        with pytest.raises(OptionError) as caught:
            prepare(spec)
        assert caught.value.option == field, (field, str(caught.value))
