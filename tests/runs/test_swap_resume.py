"""``phys swap`` killed with SIGKILL and resumed ends where the uninterrupted study ends,
and a study leaves torch's global random state as it found it."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import torch
from kill_helpers import kill_and_resume

from phys.quantum.study import SwapConfig
from phys.runs import RunDir
from phys.runs.swap import run_study
from phys.train.callbacks import Callback

STUDY = dict(data="digits", levels=(0,), seeds=1, epochs=3, subset=400, test_subset=100,
             batch_size=8, reps=1)
ARGS = ["--data", "digits", "--levels", "0", "--seeds", "1", "--epochs", "3", "--subset",
        "400", "--test-subset", "100", "--batch-size", "8", "--reps", "1", "--threads", "1"]


def epochs_csv(out: Path) -> list[dict[str, str]]:
    with open(out / "swap_epochs.csv", newline="") as fh:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(fh)]


def final_state(out: Path) -> dict:
    return torch.load(out / "runs" / "level0-seed0" / "checkpoint.pt", weights_only=True)


def test_swap_killed_with_sigkill_then_resumed_equals_the_uninterrupted_study(
        tmp_path, one_thread):
    reference = tmp_path / "reference"
    rows, _ = run_study(SwapConfig(**STUDY), reference, checkpoint_every=5)
    out = tmp_path / "killed"
    latest = out / "runs" / "level0-seed0" / "checkpoint.pt"
    kills = []

    def saved() -> None:
        state, _ = RunDir(latest.parent).load()
        kills.append((int(state["epoch"]), (state["progress"] or {}).get("batches")))
        # a kill can land after the study's last write, just before the process exits;
        # the summary is never written before the final checkpoint
        if (out / "swap.csv").exists():
            assert kills[-1] == (3, None), kills

    kill_and_resume(["swap", *ARGS, "--checkpoint-every", "5"], out, latest, kills=2,
                    rng=random.Random(7), pause=0.3, on_kill=saved)
    assert kills and kills[0] != (3, None), kills  # killed before the end at least once
    assert epochs_csv(out) == epochs_csv(reference)
    with open(out / "swap.csv", newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    assert float(row["test_accuracy"]) == rows[0]["test_accuracy"]
    a, b = final_state(reference), final_state(out)
    assert a["epoch"] == b["epoch"] == 3
    for key, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][key]), key
    assert torch.equal(a["generator"], b["generator"])


def test_the_study_leaves_the_global_rng_state_unchanged(tmp_path, one_thread):
    small = SwapConfig(**{**STUDY, "subset": 40, "test_subset": 20, "epochs": 2})
    torch.manual_seed(123)
    before = torch.get_rng_state()
    rows, _ = run_study(small, tmp_path / "a", checkpoint_every=2)
    assert torch.equal(torch.get_rng_state(), before)

    class Stop(Exception):
        pass

    class StopInTheSecondEpoch(Callback):
        def on_batch_end(self, trainer, batch):
            if trainer.epoch == 1 and batch == 2:
                raise Stop

    torch.manual_seed(456)  # another global state: the same study all the same
    try:
        run_study(small, tmp_path / "b", checkpoint_every=1, callbacks=[StopInTheSecondEpoch()])
    except Stop:
        pass
    before = torch.get_rng_state()
    resumed, _ = run_study(small, tmp_path / "b", resume=True, checkpoint_every=1)
    assert torch.equal(torch.get_rng_state(), before)  # restoring the run's is undone too
    assert [r["test_accuracy"] for r in resumed] == [r["test_accuracy"] for r in rows]
    assert epochs_csv(tmp_path / "a") == epochs_csv(tmp_path / "b")
