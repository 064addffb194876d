"""The thread default never exceeds the cores given to the process, and OpenMP waits
passively unless the user chose otherwise."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from phys import threads

ROOT = Path(__file__).resolve().parents[1]


def test_available_cores_follows_the_affinity(monkeypatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 3, 5})
    monkeypatch.setattr(threads, "_cgroup_cores", lambda: None)
    assert threads.available_cores() == 3


def test_available_cores_follows_a_cgroup_quota(monkeypatch, tmp_path) -> None:
    quota = tmp_path / "cpu.max"
    quota.write_text("150000 100000\n")  # 1.5 cores
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    monkeypatch.setattr(threads, "CGROUP_CPU_MAX", quota)
    assert threads.available_cores() == 2


def test_cgroup_quota_parsing(tmp_path) -> None:
    path = tmp_path / "cpu.max"
    for text, cores in (("max 100000", None), ("50000 100000", 1), ("400000 100000", 4),
                        ("garbage", None)):
        path.write_text(text)
        assert threads._cgroup_cores(path) == cores, text
    assert threads._cgroup_cores(tmp_path / "missing") is None


def test_default_is_omp_num_threads_when_the_user_set_it(monkeypatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.default_threads() == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(threads, "available_cores", lambda: 5)
    assert threads.default_threads() == 5


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "2", 10_000])
def test_set_threads_refuses_bad_counts(bad) -> None:
    with pytest.raises(ValueError, match="threads must be"):
        threads.set_threads(bad)


def test_set_threads_sets_torch() -> None:
    before = torch.get_num_threads()
    try:
        assert threads.set_threads(2) == 2
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_passive_waiting_unless_the_user_set_it(monkeypatch) -> None:
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert threads.prefer_passive_waiting() is True
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert threads.prefer_passive_waiting() is False
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def _train_with_affinity(tmp_path: Path, cores: set[int], *extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS",
                                                             "OMP_WAIT_POLICY")}
    out = tmp_path / "run"
    subprocess.run(
        [sys.executable, "-m", "phys", "train", "--epochs", "1", "--subset", "64",
         "--hidden", "16", "--measurements", "8", "--layers", "1", "--no-tensorboard",
         "--out", str(out), *extra],
        check=True, capture_output=True, text=True, timeout=300, cwd=ROOT, env=env,
        preexec_fn=lambda: os.sched_setaffinity(0, cores))
    return json.loads((out / "results.json").read_text())


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs Linux affinity")
def test_phys_train_uses_no_more_threads_than_cores_given(tmp_path) -> None:
    first = min(os.sched_getaffinity(0))
    results = _train_with_affinity(tmp_path, {first})
    assert results["threads"] == 1
    assert results["omp_wait_policy"] == "PASSIVE"


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs Linux affinity")
def test_threads_flag_wins(tmp_path) -> None:
    first = min(os.sched_getaffinity(0))
    assert _train_with_affinity(tmp_path, {first}, "--threads", "2")["threads"] == 2
