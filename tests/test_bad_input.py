"""Bad input to ``phys train``, ``phys swap`` and ``phys sweep`` is one line naming the
option (its flag, or the sweep file, key and line) and exit status 2, before any work
starts: no run, no Ray."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import phys.runs
import phys.runs.swap
import phys.sweep
from phys.cli import main
from phys.sweep import schema


@pytest.fixture
def no_work(monkeypatch):
    """Make starting a run or a sweep a test failure: refusals must come first."""

    def started(*args, **kwargs):
        raise AssertionError("work started before the input was refused")

    monkeypatch.setattr(phys.runs, "train", started)
    monkeypatch.setattr(phys.runs.swap, "run_study", started)
    monkeypatch.setattr(phys.sweep, "run_sweep", started)


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("phys: error: ") and err.count("\n") == 1, err
    return err.strip()


@pytest.mark.parametrize(("args", "message"), [
    (["--layers", "1000000"], "--layers must be <= 100, got 1000000"),
    (["--hidden", "1000000"], "--hidden must be <= 65536, got 1000000"),
    (["--measurements", "70000"], "--measurements must be <= 65536, got 70000"),
    (["--epochs", "1000000"], "--epochs must be <= 100000, got 1000000"),
    (["--batch-size", "2000000"], "--batch-size must be <= 1000000, got 2000000"),
    (["--trainer", "pat", "--twin-samples", "100000000"],
     "--twin-samples must be <= 10000000, got 100000000"),
    (["--seed", str(2**70)], "--seed must be <= 4611686018427387904"),
    (["--device-wait", "inf"], "--device-wait must be a finite number, got inf"),
    (["--device-wait", "1e9"], "--device-wait must be <= 604800.0, got 1000000000.0"),
])
def test_train_refuses_unbounded_options(tmp_path, capsys, no_work, args, message):
    assert main(["train", "--no-progress", "--out", str(tmp_path / "r"), *args]) == 2
    assert message in one_line_error(capsys)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--seeds", "5000"], "--seeds must be <= 1000, got 5000"),
    (["--epochs", "1000000"], "--epochs must be <= 100000, got 1000000"),
])
def test_swap_refuses_unbounded_options(tmp_path, capsys, no_work, args, message):
    assert main(["swap", "--out", str(tmp_path / "s"), *args]) == 2
    assert message in one_line_error(capsys)
    assert not (tmp_path / "s").exists()


def sweep(tmp_path: Path, capsys, text: str | bytes, *extra: str) -> str:
    path = tmp_path / "grid.toml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    assert main(["sweep", str(path), "--out", str(tmp_path / "o"), *extra]) == 2
    assert not (tmp_path / "o").exists()
    err = one_line_error(capsys)
    assert err.startswith(f"phys: error: {path}"), err
    return err


@pytest.mark.parametrize(("text", "message"), [
    ("[sweep]\ncpus_per_point = inf\n",
     "[sweep] cpus_per_point (line 2): cpus_per_point must be a finite number, got inf"),
    ("[sweep]\ncpus_per_point = nan\n",
     "[sweep] cpus_per_point (line 2): cpus_per_point must be a finite number, got nan"),
    ("[sweep]\ndevice_wait = inf\n",
     "[sweep] device_wait (line 2): device_wait must be a finite number, got inf"),
    ("[options]\nepochs = 1\nlr = nan\n", "[options] lr (line 3): lr must be a finite number"),
    ("[options]\nlr = inf\n", "[options] lr (line 2): lr must be a finite number, got inf"),
    ("[options]\nlayers = 1000000\n", "[options] layers (line 2): layers must be <= 100"),
    ("[grid]\nhidden = [64, 100000]\n",
     "[grid] hidden (line 2): every value: hidden must be <= 65536, got 100000"),
    ("[options]\ndevice_options = { noise = 'abc' }\n",
     "[options] device_options (line 2): device option noise must be a number, got 'abc'"),
    ("[options]\ndevice_options.noise = 'abc'\n",
     "[options] device_options (line 2): device option noise must be a number, got 'abc'"),
    ("[options.device_options]\nnoise = 'abc'\n",
     "[options] device_options (line 1): device option noise must be a number, got 'abc'"),
    ("[options]\ndevice_options = { nosuch = 1 }\n",
     "[options] device_options (line 2): device 'cavity' has no option 'nosuch'"),
    ("[grid]\nseed = [0, 1]\ndevice_options = [{ noise = 0.0 }, { noise = 'abc' }]\n",
     "[grid] device_options (line 3): point seed=0 device_options={'noise': 'abc'}: device "
     "option noise must be a number, got 'abc'"),
    ("[options]\ndata = '../../etc/passwd'\n",
     "[options] data (line 2): unknown dataset '../../etc/passwd'; known datasets: digits"),
    ("[grid]\ndataset = ['digits', '/etc/passwd']\n",
     "[grid] dataset (line 2): point data=/etc/passwd: unknown dataset '/etc/passwd'"),
    ("[options]\ndata_options = { bogus = 1 }\n",
     "[options] data_options (line 2): dataset 'digits' has no option 'bogus'"),
    ("[options]\ndevice = 'nope'\n", "[options] device (line 2): unknown device 'nope'"),
    ("[options]\ntrainer = 'pat'\ntwin = 'simulator'\ntwin_options = { drive = 'x' }\n",
     "[options] twin_options (line 4): twin option drive must be a number, got 'x'"),
])
def test_sweep_values_are_checked_before_ray(tmp_path, capsys, no_work, text, message):
    assert message in sweep(tmp_path, capsys, text)


def test_a_sweep_file_that_is_not_utf8_is_named(tmp_path, capsys, no_work):
    err = sweep(tmp_path, capsys, b"[options]\nepochs = 1\n# caf\xe9\n")
    assert "grid.toml (line 3): not UTF-8 text (byte 0xe9)" in err


def test_a_huge_grid_is_refused_at_once_without_making_its_points(tmp_path, capsys, no_work,
                                                                   monkeypatch):
    names = ("seed", "hidden", "layers", "epochs", "batch_size", "measurements")
    text = "[grid]\n" + "".join(f"{n} = {list(range(1, 11))}\n" for n in names)

    def made(*args, **kwargs):
        raise AssertionError("points were made before they were counted")

    monkeypatch.setattr(schema, "_points", made)
    t0 = time.perf_counter()
    err = sweep(tmp_path, capsys, text)
    assert time.perf_counter() - t0 < 1.0
    assert ("[grid] (line 1): 1,000,000 points, more than 1,000 (the default limit); confirm "
            "with --yes or set max_points = 1000000 in [sweep]") in err


def test_a_grid_above_max_points_is_refused(tmp_path, capsys, no_work):
    err = sweep(tmp_path, capsys, "[sweep]\nmax_points = 2\n\n[grid]\nseed = [0, 1, 2]\n")
    assert "[grid] (line 4): 3 points, more than 2 (max_points)" in err


def test_a_large_grid_runs_when_allowed(tmp_path, capsys, monkeypatch):
    seen: list[int] = []

    def run_sweep(sweep, **kwargs):
        seen.append(len(sweep.points))
        return phys.sweep.SweepOutcome(rows=[], table="")

    monkeypatch.setattr(phys.sweep, "run_sweep", run_sweep)
    monkeypatch.setattr(schema, "MAX_POINTS", 2)
    path = tmp_path / "grid.toml"
    path.write_text("[grid]\nseed = [0, 1, 2]\n")
    assert main(["sweep", str(path), "--out", str(tmp_path / "o")]) == 2
    assert "3 points, more than 2 (the default limit)" in one_line_error(capsys)
    assert main(["sweep", str(path), "--out", str(tmp_path / "o"), "--yes"]) == 0
    path.write_text("[sweep]\nmax_points = 3\n[grid]\nseed = [0, 1, 2]\n")
    assert main(["sweep", str(path), "--out", str(tmp_path / "o")]) == 0
    assert seen == [3, 3]


def test_sweep_refuses_a_local_ray_without_cpus(tmp_path, capsys, no_work):
    path = tmp_path / "grid.toml"
    path.write_text("[grid]\nseed = [0]\n")
    assert main(["sweep", str(path), "--num-cpus", "0"]) == 2
    assert one_line_error(capsys) == "phys: error: --num-cpus must be >= 1, got 0"
