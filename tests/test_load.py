"""Trained runs are models: phys.load_run."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import phys
from phys.cli import main
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


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "phys.cli", *args], capture_output=True,
                          text=True, timeout=300)


def test_phys_eval_reproduces_the_demo_run_exactly(tmp_path: Path) -> None:
    out = tmp_path / "demo"  # the demo's command, fewer epochs
    done = _cli("train", "--device", "cavity", "--data", "digits", "--epochs", "2",
                "--no-progress", "--out", str(out))
    assert done.returncode == 0, done.stderr
    results = json.loads((out / "results.json").read_text())
    evaluated = _cli("eval", str(out))
    assert evaluated.returncode == 0, evaluated.stderr
    written = json.loads((out / "eval.json").read_text())
    assert written["test_accuracy"] == results["test_accuracy"]
    assert f"test accuracy {results['test_accuracy']:.4f} on digits" in evaluated.stdout


def test_phys_predict_writes_the_labels_predict_gives(finished, tmp_path: Path) -> None:
    data = load("digits")
    features = tmp_path / "x.npy"
    np.save(features, data.x_test[:7].numpy())
    done = _cli("predict", str(finished[0]), "--input", str(features),
                "--out", str(tmp_path / "labels.npy"))
    assert done.returncode == 0, done.stderr
    with phys.load_run(finished[0]) as model:
        expected = model.predict(data.x_test[:7]).numpy()
    assert np.array_equal(np.load(tmp_path / "labels.npy"), expected)


@pytest.mark.parametrize(("array", "message"), [
    (np.zeros((2, 3)), r"x.npy: x must be a tensor \(B, 64\), got \(2, 3\)"),
    (np.array(["a", "b"]), "x.npy: expected real numbers"),
    (np.full((1, 64), np.nan), "x.npy: x contains NaN or Inf"),
])
def test_phys_predict_refuses_bad_input_in_one_line(finished, tmp_path: Path, array,
                                                     message: str, capsys) -> None:
    np.save(tmp_path / "x.npy", array)
    assert main(["predict", str(finished[0]), "--input", str(tmp_path / "x.npy")]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err) and len(err.strip().splitlines()) == 1


def test_phys_eval_on_a_directory_that_is_not_a_run(tmp_path: Path) -> None:
    done = _cli("eval", str(tmp_path))
    assert done.returncode == 2
    assert "config.json is missing" in done.stderr
