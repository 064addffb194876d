import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from phys.cli import main

ROOT = Path(__file__).resolve().parents[1]
PHYS = [sys.executable, "-m", "phys.cli"]


def run(*args, timeout=300):
    return subprocess.run([*PHYS, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT)


def test_help_is_fast_and_imports_no_torch():
    code = ("import sys, time; t = time.perf_counter(); from phys.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(time.perf_counter() - t, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT).stdout.strip().splitlines()[-1]
    seconds, torch_loaded = out.split()
    assert torch_loaded == "False"
    assert float(seconds) < 1.0  # well under a second even on a loaded machine


def test_help_lists_commands():
    proc = run("--help")
    assert proc.returncode == 0
    assert "train" in proc.stdout and "devices" in proc.stdout


def test_train_writes_every_file(tmp_path):
    out = tmp_path / "run"
    proc = run("train", "--device", "cavity", "--data", "digits", "--layers", "2",
               "--epochs", "2", "--hidden", "64", "--seed", "1", "--dropout", "0.1",
               "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "test accuracy" in proc.stdout and "device queries" in proc.stdout
    results = json.loads((out / "results.json").read_text())
    for key in ("test_accuracy", "train_accuracy", "epochs", "seconds", "device_queries",
                "device_samples", "config"):
        assert key in results, key
    assert results["epochs"] == 2 and results["config"]["seed"] == 1
    assert results["config"]["dropout"] == 0.1
    assert 0.5 < results["test_accuracy"] <= 1.0
    assert results["device_queries"] > 0 and results["device_samples"] > results["device_queries"]
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert float(rows[-1]["test_accuracy"]) == pytest.approx(results["test_accuracy"])
    assert (out / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 2 and "model" in state and len(state["optimizers"]) == 3
    assert not list(out.glob(".*tmp"))


@pytest.mark.parametrize("args,message", [
    (["--data", "nope"], "unknown dataset 'nope'"),
    (["--device", "nope"], "unknown device 'nope'; known devices: cavity"),
    (["-o", "nosuch=1"], "device 'cavity' has no option 'nosuch'; it accepts: n_in"),
    (["-o", "coupling=1.5"], "coupling"),
    (["--layers", "0"], "layers must be >= 1"),
])
def test_bad_input_is_one_line_and_nonzero(tmp_path, args, message):
    proc = run("train", "--epochs", "1", "--no-progress", "--out", str(tmp_path / "r"), *args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("phys: error:"), proc.stderr
    assert message in lines[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "r").exists()


def test_malformed_option_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "-o", "no-equals-sign"])
    assert exc.value.code == 2
    assert "KEY=VALUE" in capsys.readouterr().err


def test_devices_lists_cavity_with_info(capsys):
    assert main(["devices"]) == 0
    out = capsys.readouterr().out
    assert "cavity" in out and "n_in=" in out and "differentiable=True" in out


@pytest.mark.parametrize("trainer,extra", [("backprop", ["--activation", "abs"]),
                                           ("pat", ["--twin", "simulator", "-t", "drive=5.0"]),
                                           ("pat", ["--twin-samples", "1024"])])
def test_train_with_each_baseline(tmp_path, trainer, extra):
    out = tmp_path / "run"
    proc = run("train", "--trainer", trainer, "--epochs", "2", "--hidden", "32", "--layers", "1",
               "--flops", "--no-progress", "--out", str(out), *extra)
    assert proc.returncode == 0, proc.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["trainer"] == trainer and results["test_accuracy"] > 0.5
    assert results["digital_flops"] > 0
    if trainer == "backprop":
        assert results["device_samples"] == 0
        assert results["config"]["activation"] == "abs"
    else:
        assert results["device_samples"] > 0 and results["twins"][0]["kind"] in extra[1:2] + [
            "surrogate"]


def test_compare_writes_table_and_plot(tmp_path):
    out = tmp_path / "cmp"
    proc = run("compare", "--epochs", "1", "--hidden", "32", "--layers", "1",
               "--twin-samples", "512", "--no-progress", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    table = (out / "compare.md").read_text()
    for name in ("phyll", "backprop", "pat", "readout"):
        assert f"| {name} |" in table
        assert (out / name / "results.json").exists()
    assert "digital FLOPs" in table
    assert (out / "compare.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("args,message", [
    (["--trainer", "pat", "--twin", "simulator", "-t", "coupling=2.0"], "coupling"),
    (["--data", "digits", "-d", "classes=7"], "classes"),
])
def test_baseline_and_data_option_errors_are_one_line(tmp_path, args, message):
    proc = run("train", "--epochs", "1", "--no-progress", "--out", str(tmp_path / "r"), *args)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and message in proc.stderr


def test_python_dash_m_phys_is_the_command_line():
    out = subprocess.run([sys.executable, "-m", "phys", "--help"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "phys COMMAND --help" in out.stdout


def test_devices_lists_address_forms_and_units(capsys):
    assert main(["devices"]) == 0
    out = capsys.readouterr().out
    assert "socket://HOST:PORT" in out and "serial:///dev/ttyACM0" in out
    assert "pennylane:<PennyLane device>" in out
    assert "units: " in out
