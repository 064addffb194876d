"""The thread default never exceeds the cores given to the process, and OpenMP waits
passively unless the user chose otherwise."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
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


@pytest.mark.parametrize(("idle", "expected"), [(None, 4), (3.9, 4), (2.4, 2), (0.3, 1),
                                                 (7.0, 4)])
def test_default_is_the_idle_cores_among_those_available(monkeypatch, idle, expected) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "available_cores", lambda: 4)
    monkeypatch.setattr(threads, "idle_cores", lambda: idle)
    assert threads.default_threads() == expected


def _stat(tmp_path: Path, rows: dict[int, tuple[int, int]]) -> Path:
    """A /proc/stat with ``{cpu: (busy ticks, idle ticks)}``."""
    lines = ["cpu  1 2 3 4 5 6 7 8 0 0"]
    lines += [f"cpu{c} {busy} 0 0 {idle} 0 0 0 0 0 0" for c, (busy, idle) in rows.items()]
    path = tmp_path / "stat"
    path.write_text("\n".join([*lines, "intr 1 2 3"]) + "\n")
    return path


def test_idle_cores_sums_the_idle_fractions_of_the_process_cpus(monkeypatch, tmp_path) -> None:
    first = _stat(tmp_path, {0: (100, 100), 1: (100, 100), 2: (0, 0)})
    later = {0: (100, 200), 1: (175, 125), 2: (0, 100)}  # cpu0 idle, cpu1 a quarter idle
    monkeypatch.setattr(threads, "_affinity", lambda: {0, 1})  # cpu2 is not ours
    monkeypatch.setattr(threads.time, "sleep", lambda s: _stat(tmp_path, later))
    assert threads.idle_cores(path=first) == pytest.approx(1.25)


def test_idle_cores_without_proc_stat_is_none(tmp_path) -> None:
    assert threads.idle_cores(0.0, tmp_path / "missing") is None


def test_two_busy_processes_leave_no_idle_core() -> None:
    """On the real machine: busy loops on every core of this process."""
    cores = sorted(os.sched_getaffinity(0))
    code = "import time\nend = time.monotonic() + 3\nwhile time.monotonic() < end: pass"
    procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in cores]
    try:
        time.sleep(0.5)
        assert threads.idle_cores(0.3) < 0.5
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


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


@pytest.mark.parametrize("user", [None, "OMP_WAIT_POLICY", "GOMP_SPINCOUNT"])
def test_spinning_is_bounded_unless_the_user_chose(monkeypatch, user) -> None:
    for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):
        monkeypatch.delenv(name, raising=False)
    if user is not None:
        monkeypatch.setenv(user, "PASSIVE" if user == "OMP_WAIT_POLICY" else "7")
    assert threads.limit_spinning() is (user is None)
    expected = {None: str(threads.SPINCOUNT), "OMP_WAIT_POLICY": None, "GOMP_SPINCOUNT": "7"}
    assert os.environ.get("GOMP_SPINCOUNT") == expected[user]


def _train_with_affinity(tmp_path: Path, cores: set[int], *extra: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
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
    assert results["gomp_spincount"] == str(threads.SPINCOUNT)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs Linux affinity")
def test_threads_flag_wins(tmp_path) -> None:
    first = min(os.sched_getaffinity(0))
    assert _train_with_affinity(tmp_path, {first}, "--threads", "2")["threads"] == 2
