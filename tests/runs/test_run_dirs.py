"""Run directories: checkpoints survive SIGKILL and damage, ``--resume`` gives the result of
an uninterrupted run, and refuses a run of another configuration."""

from __future__ import annotations

import csv
import json
import os
import random
import warnings
from pathlib import Path

import pytest
import torch
from kill_helpers import kill_and_resume

from phys.cli import main
from phys.experiment import TrainSpec
from phys.runs import CheckpointError, CheckpointWarning, RunDir, config_diff
from phys.runs import train as train_run
from phys.train.callbacks import Callback

CONFIG = dict(data="digits", layers=1, hidden=32, epochs=3, batch_size=32, negatives="random",
              lr=1e-2, seed=3)
ARGS = [f"--{k.replace('_', '-')}={v}" for k, v in CONFIG.items()]


def metrics(out: Path) -> list[dict[str, str]]:
    """Per-epoch metrics without the wall times (which differ from run to run)."""
    with open(out / "metrics.csv", newline="") as fh:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(fh)]


def assert_same_run(a: Path, b: Path) -> None:
    ra, rb = (json.loads((d / "results.json").read_text()) for d in (a, b))
    for key in ("test_accuracy", "train_accuracy", "epochs", "device_queries",
                "device_samples", "eval_device_samples", "lab_seconds"):
        assert ra[key] == rb[key], key
    assert metrics(a) == metrics(b)
    sa, sb = (torch.load(d / "checkpoint.pt", weights_only=True) for d in (a, b))
    for key, tensor in sa["model"].items():
        assert torch.equal(tensor, sb["model"][key]), key
    for oa, ob in zip(sa["optimizers"], sb["optimizers"], strict=True):
        for pa, pb in zip(oa["state"].values(), ob["state"].values(), strict=True):
            assert all(torch.equal(pa[k], pb[k]) for k in pa)
    assert torch.equal(sa["generator"], sb["generator"])


def test_sigkill_at_random_points_then_resume_gives_the_uninterrupted_result(tmp_path,
                                                                             one_thread):
    reference = tmp_path / "reference"
    train_run(TrainSpec(**CONFIG), out=reference, checkpoint_every=4)
    out = tmp_path / "killed"
    killed_at = []

    def saved() -> None:
        state, _ = RunDir(out).load()
        killed_at.append((int(state["epoch"]), (state["progress"] or {}).get("batches")))
        assert not (out / "results.json").exists()

    # each kill after 1-3 new checkpoints and a random part of a batch or more
    kill_and_resume(["train", *ARGS, "--checkpoint-every", "4"], out, out / "checkpoint.pt",
                    kills=3, rng=random.Random(2024), checkpoints=(1, 3), on_kill=saved)
    assert len(killed_at) >= 2, killed_at  # killed and resumed several times
    assert_same_run(reference, out)
    assert not list(out.glob(".*"))  # no temporary files left behind


def test_damaged_checkpoint_falls_back_to_the_previous_one(tmp_path, one_thread):
    reference = tmp_path / "reference"
    first = train_run(TrainSpec(**CONFIG), out=reference, checkpoint_every=0)
    run_dir = RunDir(reference)
    assert torch.load(run_dir.previous, weights_only=True)["epoch"] == 2
    # the last checkpoint cut short, as by a full disk; the results not yet written
    data = run_dir.latest.read_bytes()
    run_dir.latest.write_bytes(data[:len(data) // 2])
    run_dir.results.unlink()
    with pytest.warns(CheckpointWarning, match=r"checkpoint\.pt is damaged or truncated.*"
                                               r"resuming from checkpoint\.prev\.pt \(epoch 2\)"):
        again = train_run(TrainSpec(**CONFIG), out=reference, resume=True, checkpoint_every=0)
    assert again["test_accuracy"] == first["test_accuracy"]
    assert again["device_samples"] == first["device_samples"]
    assert again["checkpoints"]["resumed_from_epoch"] == 2

    # both damaged: an error naming both files
    run_dir.previous.write_bytes(os.urandom(2000))
    run_dir.latest.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"checkpoint\.pt is damaged.*checkpoint\.prev\.pt "
                                              r"is damaged"):
        run_dir.load()


def test_rotation_keeps_a_readable_checkpoint(tmp_path):
    run_dir = RunDir(tmp_path)
    run_dir.start("train", {"a": 1}, fresh=True)
    for epoch in range(1, 4):
        run_dir.save({"epoch": epoch, "weights": torch.full((3,), float(epoch))})
    state, used = run_dir.load()
    assert (state["epoch"], used.name) == (3, "checkpoint.pt")
    assert torch.load(run_dir.previous, weights_only=True)["epoch"] == 2
    run_dir.latest.unlink()  # a crash between two renames on a filesystem without links
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        state, used = run_dir.load()
    assert (state["epoch"], used.name) == (2, "checkpoint.prev.pt")
    assert "checkpoint.pt is missing" in str(caught[0].message)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.prev.pt", "config.json"]
    # a run killed while writing leaves its temporary file; the next start removes it
    (tmp_path / ".checkpoint.pt.x1y2.tmp").write_bytes(b"half")
    (tmp_path / ".other.tmp").write_bytes(b"not ours")
    run_dir.start("train", {"a": 1}, fresh=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".other.tmp", "checkpoint.prev.pt", "config.json"]


def test_resume_refuses_another_configuration_and_shows_the_difference(tmp_path, capsys,
                                                                        one_thread):
    out = tmp_path / "run"
    small = {**CONFIG, "epochs": 1}
    train_run(TrainSpec(**small), out=out)
    status = main(["train", "--resume", str(out), "--epochs", "2", "--lr", "0.5",
                   "--no-progress"])
    err = capsys.readouterr().err
    assert status == 2
    assert "the run there has another configuration" in err
    assert "epochs: 1 in the run, 2 now" in err and "lr: 0.01 in the run, 0.5 now" in err
    # options equal to the run's are accepted (the run is finished: nothing to resume, it
    # says so); run options (--checkpoint-every) may differ
    status = main(["train", "--resume", str(out), "--epochs", "1", "--checkpoint-every", "7",
                   "--no-progress"])
    assert status == 2
    assert "the run is finished (1 epochs); nothing to resume" in capsys.readouterr().err
    for argv, message in [
        (["--resume", str(tmp_path / "none")], "no run there"),
        (["--resume", str(out), "--out", str(tmp_path / "x")], "give the run directory once"),
    ]:
        assert main(["train", *argv, "--no-progress"]) == 2
        assert message in capsys.readouterr().err
    for argv, message in [
        (["train", "--checkpoint-every", "-1"], "--checkpoint-every must be >= 0"),
        (["train", "--device-wait", "-3"], "--device-wait must be >= 0.0"),
        (["swap", "--checkpoint-every", "-1"], "--checkpoint-every must be >= 0"),
    ]:
        assert main([*argv, "--no-progress", "--out", str(tmp_path / "bad")]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
    assert config_diff({"a": 1, "b": [1]}, {"a": 1, "b": (1,), "c": 2}) == [
        "c: (absent) in the run, 2 now"]


def test_an_unfinished_run_is_not_started_over_by_accident(tmp_path, capsys, one_thread):
    out = tmp_path / "run"
    small = {**CONFIG, "epochs": 1}
    train_run(TrainSpec(**small), out=out)
    (out / "results.json").unlink()  # as if killed after its last checkpoint
    args = ["train", *[a for a in ARGS if not a.startswith("--epochs")], "--epochs", "1",
            "--no-progress", "--out", str(out)]
    assert main(args) == 2
    assert (f"{out} holds an unfinished run; continue it (--resume DIR) or start it again "
            f"(--overwrite)") in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0
    assert (out / "results.json").exists()


def test_swap_study_resumes_after_an_interruption(tmp_path, one_thread):
    from phys.quantum.study import SwapConfig
    from phys.runs.swap import run_study

    config = SwapConfig(data="digits", levels=(0, 1), seeds=1, epochs=2, subset=60,
                        test_subset=40, batch_size=20, reps=2)
    rows, _ = run_study(config, tmp_path / "whole", checkpoint_every=1)

    class Interrupted(Exception):
        pass

    class StopAfterSeven(Callback):
        steps = 0

        def on_batch_end(self, trainer, batch):
            self.steps += 1
            if self.steps == 7:  # level 0 done (3 steps an epoch), level 1 at its first step
                raise Interrupted

    with pytest.raises(Interrupted):
        run_study(config, tmp_path / "cut", checkpoint_every=1, callbacks=[StopAfterSeven()])
    assert RunDir(tmp_path / "cut" / "runs" / "level0-seed0").finished()
    assert RunDir(tmp_path / "cut" / "runs" / "level1-seed0").load()[0]["progress"]["batches"] == 1
    with pytest.raises(ValueError, match=r"unfinished run; continue it \(resume=True\)"):
        run_study(config, tmp_path / "cut")
    resumed, _ = run_study(config, tmp_path / "cut", resume=True, checkpoint_every=1)
    for a, b in zip(rows, resumed, strict=True):
        for key in ("test_accuracy", "train_accuracy", "train_loss"):
            assert a[key] == b[key], key
    whole, cut = (torch.load(d / "runs" / "level1-seed0" / "checkpoint.pt", weights_only=True)
                  for d in (tmp_path / "whole", tmp_path / "cut"))
    assert all(torch.equal(whole["model"][k], cut["model"][k]) for k in whole["model"])


def test_swap_resume_refuses_another_configuration(tmp_path, capsys, one_thread):
    out = tmp_path / "swap"
    base = ["swap", "--data", "digits", "--levels", "0", "--seeds", "1", "--epochs", "1",
            "--subset", "40", "--test-subset", "20", "--batch-size", "20", "--no-progress"]
    assert main([*base, "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["swap", "--resume", str(out), "--epochs", "3", "--no-progress"]) == 2
    assert "epochs: 1 in the run, 3 now" in capsys.readouterr().err
    assert main(["swap", "--resume", str(out), "--no-progress"]) == 0  # finished: kept
