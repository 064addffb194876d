"""results.json records the versions of physnn, torch and PennyLane and the git commit."""

from __future__ import annotations

import json
import subprocess
from importlib import metadata
from pathlib import Path

import torch

import phys
from phys.experiment import TrainSpec
from phys.quantum.study import SwapConfig
from phys.runs import train
from phys.runs.provenance import git_commit, versions
from phys.runs.swap import run_study

ROOT = Path(__file__).resolve().parents[2]


def expected() -> dict:
    try:
        pennylane = metadata.version("pennylane")
    except metadata.PackageNotFoundError:
        pennylane = None
    package = Path(phys.__file__).parent
    tracked = subprocess.run(["git", "ls-files", "--error-unmatch", "__init__.py"],
                             cwd=package, capture_output=True).returncode == 0
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=package, capture_output=True,
                            text=True).stdout.strip() if tracked else None
    return {"physnn": phys.__version__, "torch": torch.__version__, "pennylane": pennylane,
            "git_commit": commit}


def test_train_and_swap_results_record_versions_and_commit(tmp_path, one_thread):
    want = expected()
    assert versions() == want
    spec = TrainSpec(data="digits", layers=1, hidden=16, epochs=1, negatives="random")
    assert train(spec, out=tmp_path / "train")["versions"] == want
    assert json.loads((tmp_path / "train" / "results.json").read_text())["versions"] == want
    study = SwapConfig(data="digits", levels=(0,), seeds=1, epochs=1, subset=20,
                       test_subset=10, batch_size=10)
    run_study(study, tmp_path / "swap")
    assert json.loads((tmp_path / "swap" / "results.json").read_text())["versions"] == want
    run = json.loads((tmp_path / "swap" / "runs" / "level0-seed0" / "results.json").read_text())
    assert run["versions"] == want


def test_git_commit_is_none_outside_a_repository_and_for_untracked_files(tmp_path):
    assert git_commit(tmp_path) is None
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "__init__.py").write_text("")
    assert git_commit(tmp_path) is None  # in a repository, but not tracked there
    if (ROOT / ".git").exists():
        assert git_commit(ROOT / "phys") == expected()["git_commit"]
