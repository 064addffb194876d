"""Trained runs are models: phys.load_run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import phys
from phys.data import load
from phys.experiment import TrainSpec
from phys.runs import train as train_run

SPEC = dict(data="digits", layers=1, hidden=32, measurements=8, epochs=1,
            device_options={"n_scatterers": 8})


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("run")
    results = train_run(TrainSpec(**SPEC), out=out)
    return out, results


def test_loaded_run_reproduces_its_test_accuracy_exactly(finished) -> None:
    out, results = finished
    data = load("digits")
    with phys.load_run(out) as model:
        assert model.evaluate(data.x_test, data.y_test) == results["test_accuracy"]
        labels = model.predict(data.x_test[:5])
        assert labels.shape == (5,) and labels.dtype == torch.int64
        assert all(not d.closed for d in model.devices())
    assert all(d.closed for d in model.devices())


def test_predict_refuses_bad_input(finished) -> None:
    with phys.load_run(finished[0]) as model, pytest.raises(ValueError, match=r"tensor \(B, 64\)"):
        model.predict(torch.zeros(2, 3))


def test_not_a_run(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="config.json is missing"):
        phys.load_run(tmp_path)
    with pytest.raises(ValueError, match="no run directory there"):
        phys.load_run(tmp_path / "nothing")


def test_unfinished_run_names_results_and_resume(finished, tmp_path: Path) -> None:
    out = tmp_path / "copy"
    out.mkdir()
    (out / "config.json").write_text((finished[0] / "config.json").read_text())
    with pytest.raises(ValueError, match=r"results.json is missing\); resume it first"):
        phys.load_run(out)


def test_a_device_that_cannot_open_is_named(finished, tmp_path: Path) -> None:
    out = tmp_path / "moved"
    out.mkdir()
    for name in ("results.json", "checkpoint.pt"):
        (out / name).write_bytes((finished[0] / name).read_bytes())
    saved = json.loads((finished[0] / "config.json").read_text())
    saved["config"]["device"] = "serial:///dev/no-such-port"
    (out / "config.json").write_text(json.dumps(saved))
    with pytest.raises(ValueError, match="cannot open device 'serial:///dev/no-such-port'"):
        phys.load_run(out)
