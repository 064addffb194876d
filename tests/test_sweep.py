"""``phys sweep``: grids of runs as Ray tasks on a local Ray (2 CPUs, one session for the
module), a table and a plot, reruns that do nothing, hardware behind one actor, and sweep
files refused with the key and line at fault."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from phys.cli import main
from phys.experiment import TrainSpec
from phys.runs import train as train_run
from phys.sweep import load_sweep, parse_sweep, run_sweep
from phys.sweep import runner as sweep_runner

ROOT = Path(__file__).resolve().parents[1]
TINY = """
[options]
data = "digits"
epochs = 1
layers = 1
hidden = 16
negatives = "random"
batch-size = 128
"""


@pytest.fixture(scope="module")
def ray_session():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def write(tmp_path: Path, text: str, name: str = "grid.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_four_points_make_a_table_and_a_rerun_does_no_work(tmp_path, ray_session,
                                                           monkeypatch):
    path = write(tmp_path, TINY + '\n[grid]\ntrainer = ["phyll", "backprop"]\nseeds = [0, 1]\n')
    sweep = load_sweep(path, out=tmp_path / "out")
    outcome = run_sweep(sweep, num_cpus=2)
    assert (outcome.ran, outcome.skipped, outcome.failed) == (4, 0, 0), outcome.errors
    out = tmp_path / "out"
    with open(out / "sweep.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["trainer"], r["seed"]) for r in rows] == [
        ("phyll", "0"), ("phyll", "1"), ("backprop", "0"), ("backprop", "1")]
    assert all(r["status"] == "done" and 0.1 < float(r["test_accuracy"]) <= 1 for r in rows)
    table = (out / "sweep.md").read_text()
    assert "| trainer | seed | test_accuracy |" in table and table.count("| done |") == 4
    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # a point is the run phys train makes of its options
    first = sweep.points[0]
    assert first.values == {"trainer": "phyll", "seed": 0}
    point_dir = out / rows[0]["dir"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        direct = train_run(TrainSpec(**first.config))
    finally:
        torch.set_num_threads(threads)
    ran = json.loads((point_dir / "results.json").read_text())
    assert ran["test_accuracy"] == direct["test_accuracy"]
    assert ran["device_samples"] == direct["device_samples"]

    # again: every point is finished, so Ray is not even started
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("points/*/checkpoint.pt")}
    assert len(stamps) == 4

    def no_ray(*args, **kwargs):
        raise AssertionError("a rerun of a finished sweep started Ray")

    monkeypatch.setattr(sweep_runner, "_init_ray", no_ray)
    again = run_sweep(load_sweep(path, out=out))
    assert (again.ran, again.skipped) == (0, 4)
    assert again.table == outcome.table
    (out / "sweep.json").unlink()  # found finished from the run directories alone
    assert run_sweep(load_sweep(path, out=out)).skipped == 4
    assert stamps == {p: p.stat().st_mtime_ns for p in out.glob("points/*/checkpoint.pt")}


def test_swap_points_from_another_process_joining_the_cluster(tmp_path, ray_session):
    path = write(tmp_path, """
[sweep]
command = "swap"

[options]
data = "digits"
epochs = 1
subset = 40
test_subset = 20
batch_size = 20

[grid]
levels = [0]
seed = [0, 1]
""")
    # phys sweep --address joins a running Ray (here the one this module started)
    address = ray_session.get_runtime_context().gcs_address
    proc = subprocess.run([sys.executable, "-m", "phys.cli", "sweep", str(path), "--address",
                           address, "--out", str(tmp_path / "swap")], capture_output=True,
                          text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "2 run, 0 skipped" in proc.stdout
    rows = list(csv.DictReader(open(tmp_path / "swap" / "sweep.csv", newline="")))
    assert [(r["level"], r["seed"], r["runs"]) for r in rows] == [("0", "0", "1"),
                                                                  ("0", "1", "1")]
    swap_csv = tmp_path / "swap" / rows[1]["dir"] / "swap.csv"
    assert next(csv.DictReader(open(swap_csv, newline="")))["seed"] == "1"
    # and the same file through main() in this process skips both
    assert main(["sweep", str(path), "--out", str(tmp_path / "swap")]) == 0


def test_one_piece_of_hardware_is_held_by_one_actor(tmp_path, ray_session):
    from phys.devices.emulator import Emulator

    with Emulator.serving("cavity", tcp=0, n_in=16, n_out=16, seed=0) as lab:
        path = write(tmp_path, TINY + f"""
device = "{lab.port}"
device_options = {{ latency = 0.5 }}

[grid]
seed = [0, 1]
""")
        said: list[str] = []
        outcome = run_sweep(load_sweep(path, out=tmp_path / "out"), log=said.append)
        connections = lab._next_link
        measured = lab.responder.stats.measured_samples
    assert (outcome.ran, outcome.failed) == (2, 0), outcome.errors
    assert connections == 1  # opened once, by the actor, for both points
    assert f"device {lab.port}: exclusive, held by one Ray actor" in said[0]
    used = [json.loads((tmp_path / "out" / r["dir"] / "results.json").read_text())
            for r in outcome.rows]
    assert all(u["device_info"][0]["extra"]["port"] == lab.port for u in used)
    samples = sum(u["device_samples"] + u["eval_device_samples"] for u in used)
    assert measured == samples == outcome.devices[lab.port]["samples"]
    queries = sum(u["device_queries"] + u["eval_device_queries"] for u in used)
    assert outcome.devices[lab.port]["calls"] == queries


def test_a_simulator_is_not_held_each_point_opens_its_own(tmp_path, ray_session):
    """Routing follows DeviceInfo.exclusive, not the spelling of the address; each point
    of a simulator may give it options of its own."""
    path = write(tmp_path, TINY + "[grid]\ndevice_options = [{ noise = 0.0 }, "
                                  "{ noise = 0.05 }]\n")
    said: list[str] = []
    outcome = run_sweep(load_sweep(path, out=tmp_path / "out"), log=said.append)
    assert (outcome.ran, outcome.failed) == (2, 0), outcome.errors
    assert said[0] == "device cavity: not exclusive, each point opens its own"
    assert outcome.devices == {}
    used = [json.loads((tmp_path / "out" / r["dir"] / "results.json").read_text())
            for r in outcome.rows]
    assert [u["config"]["device_options"]["noise"] for u in used] == [0.0, 0.05]
    assert all(u["device_info"][0]["exclusive"] is False for u in used)


@pytest.mark.parametrize(("text", "message"), [
    ("[sweeep]\ncommand = 'train'\n", "unknown key 'sweeep' (line 1)"),
    ("[options]\nepochs = 2\nlayerz = 3\n", "[options] layerz (line 3): unknown option for "
                                            "phys train"),
    ("[options]\nepochs = 'two'\n", "[options] epochs (line 2): epochs must be an int, "
                                   "got 'two'"),
    ("[options]\nlr = true\n", "[options] lr (line 2): lr must be a number, got True"),
    ("[options]\nlayers = 2.7\n", "[options] layers (line 2): layers must be an int, got 2.7"),
    ("[options]\ncount_flops = 1\n", "[options] count_flops (line 2): count_flops must be "
                                     "true or false, got 1"),
    ("[options]\nbatch-size = 0\n", "[options] batch-size (line 2): batch_size must be >= 1"),
    ("[options]\ndevice_options = 3\n", "[options] device_options (line 2): device_options "
                                        "must be a table"),
    ("\n[grid]\nseed = 3\n", "[grid] seed (line 3): must be a non-empty list of values"),
    ("[grid]\nlr = [0.1, 'fast']\n", "[grid] lr (line 2): every value: lr must be a number, "
                                     "got 'fast'"),
    ("[grid]\n'hidden' = [1.5]\n", "[grid] hidden (line 2): every value: hidden must be an "
                                   "int"),
    ("[sweep]\ncommand = 'fly'\n", "[sweep] command (line 2): command must be one of train, "
                                   "swap"),
    ("[sweep]\nworkers = 3\n", "[sweep] workers (line 2): unknown key"),
    ("[sweep]\ncpus_per_point = 0\n", "[sweep] cpus_per_point (line 2): cpus_per_point must "
                                      "be > 0"),
    ("[sweep]\nthreads = 1.5\n", "[sweep] threads (line 2): threads must be an int or None"),
    ("[sweep]\ncheckpoint_every = -1\n", "[sweep] checkpoint_every (line 2): "
                                         "checkpoint_every must be >= 0"),
    ("[options]\nseed = 1\n[grid]\nseed = [1, 2]\n", "[grid] seed (line 4): is also set in "
                                                     "[options]"),
    ("[grid]\ntrainer = ['phyll', 'sgd']\n", "[grid] trainer (line 2): every value: trainer "
                                             "must be one of phyll, backprop, pat, readout, "
                                             "got 'sgd'"),
    ("[grid]\nlayers = [1]\ntwin_samples = [0]\n", "[grid] twin_samples (line 3): every "
                                                    "value: twin_samples must be >= 1"),
    ("[sweep]\ncommand = 'swap'\n[grid]\nlevel = [0, 3]\n", "[grid] level (line 4): point "
                                                            "level=3: levels must be among "
                                                            "0, 1, 2"),
    ("[sweep]\ncommand = 'swap'\n[options]\nhidden = 3\n", "[options] hidden (line 4): unknown "
                                                           "option for phys swap"),
    ("[options\nepochs = 1\n", "not valid TOML"),
])
def test_bad_sweep_files_name_the_key_and_line(text, message):
    with pytest.raises(ValueError) as caught:
        parse_sweep(text, source="grid.toml")
    assert message in str(caught.value)
    assert str(caught.value).startswith("grid.toml")


def test_bad_sweep_file_through_the_cli(tmp_path, capsys):
    path = write(tmp_path, "[options]\nepochs = 2\nbatch-size = -1\n")
    assert main(["sweep", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("phys: error: ") and "batch_size must be >= 1" in err
    assert not (tmp_path / "o").exists()
    assert main(["sweep", str(tmp_path / "missing.toml")]) == 2
    assert "cannot read the sweep file" in capsys.readouterr().err


def test_names_and_points():
    text = TINY.replace('data = "digits"\n', "")  # dataset is another name for data
    sweep = parse_sweep(text + "[grid]\ndataset = ['digits']\nlr = [0.01, 0.1]\n",
                        name="widths")
    assert str(sweep.out) == "runs/widths"
    assert [p.values for p in sweep.points] == [{"data": "digits", "lr": 0.01},
                                                {"data": "digits", "lr": 0.1}]
    assert sweep.points[0].config["batch_size"] == 128  # written batch-size
    keys = [p.key for p in sweep.points]
    assert keys[0].startswith("data-digits_lr-0.01-") and len(set(keys)) == 2
    swap = parse_sweep("[sweep]\ncommand = 'swap'\n[grid]\nlevels = [0, 2]\nseeds = [4]\n")
    assert [(p.config["levels"], p.config["first_seed"], p.config["seeds"])
            for p in swap.points] == [([0], 4, 1), ([2], 4, 1)]
