"""One writer per run directory (a second is refused naming the first's pid; a killed
writer leaves no lock), a finished run is kept unless ``--overwrite``, and a bad run
directory or a full disk is a one-line error before any work starts."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from kill_helpers import ENV, PHYS, ROOT, stamp

from phys.cli import main
from phys.runs import RunDir
from phys.runs.lock import LOCK, RunLock, RunLocked

CONFIG = dict(data="digits", layers=1, hidden=16, epochs=1, batch_size=64, seed=3)
ARGS = [f"--{k.replace('_', '-')}={v}" for k, v in CONFIG.items()] + ["--no-progress"]


def _wait_for(check, what: str, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert proc.poll() is None, f"the run ended before {what}: {proc.stderr.read()}"
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.01)


def _start(out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([*PHYS, "train", *ARGS, *extra, "--out", str(out)], cwd=ROOT,
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)


def _one_error(capsys) -> str:
    """The one error line on stderr (after any progress lines)."""
    lines = capsys.readouterr().err.splitlines()
    errors = [line for line in lines if line.startswith("phys:")]
    assert len(errors) == 1 and lines[-1] == errors[0], lines
    return errors[0]


def test_a_second_writer_is_refused_naming_the_first(tmp_path, capsys, one_thread):
    out = tmp_path / "run"
    first = _start(out, "--epochs=6")
    try:
        _wait_for(lambda: (out / LOCK).exists() and (out / LOCK).read_text().strip(),
                  "lock", first)
        assert main(["train", *ARGS, "--out", str(out)]) == 2  # the same command, at once
        err = _one_error(capsys)
        assert f"{out} is in use: another run (pid {first.pid}) is writing it" in err
        _wait_for((out / "config.json").exists, "config.json", first)
        assert main(["train", "--resume", str(out), "--no-progress"]) == 2
        assert f"pid {first.pid}" in _one_error(capsys)
        _, stderr = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, stderr
    results = json.loads((out / "results.json").read_text())
    assert results["epochs"] == 6  # the first run's results, not replaced
    assert not (out / LOCK).exists()


def test_a_killed_writer_leaves_no_lock(tmp_path, capsys, one_thread):
    out = tmp_path / "run"
    proc = _start(out, "--epochs=30", "--checkpoint-every=2")
    try:
        _wait_for(lambda: stamp(out / "checkpoint.pt") is not None, "checkpoint", proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert (out / LOCK).read_text().strip() == str(proc.pid)  # the file stays, not the lock
    with RunLock(out) as lock:
        assert (out / LOCK).read_text().strip() == str(os.getpid())
        with pytest.raises(RunLocked, match=rf"another run \(pid {os.getpid()}\)"):
            RunLock(out).acquire()
        lock.release()
    assert not (out / LOCK).exists()
    assert not RunDir(out).finished()
    assert main(["train", *ARGS, "--out", str(out), "--overwrite"]) == 0  # a new run starts
    assert json.loads((out / "results.json").read_text())["epochs"] == 1
    assert not (out / LOCK).exists()


def test_a_finished_run_is_kept_unless_overwrite(tmp_path, capsys, one_thread):
    out = tmp_path / "run"
    args = ["train", *ARGS, "--out", str(out)]
    assert main(args) == 0
    capsys.readouterr()
    before = (out / "results.json").read_bytes(), stamp(out / "results.json")
    assert main(args) == 2
    assert (f"{out} holds a finished run; keep it (choose another directory) or run it "
            f"again (--overwrite)") in _one_error(capsys)
    assert main(["train", "--resume", str(out), "--no-progress"]) == 2  # nothing to resume
    assert "the run is finished" in _one_error(capsys)
    assert ((out / "results.json").read_bytes(), stamp(out / "results.json")) == before
    capsys.readouterr()
    assert main([*args, "--overwrite"]) == 0
    assert stamp(out / "results.json") != before[1]
    assert not (out / LOCK).exists()


def test_bad_run_directories_are_one_line_errors_before_any_work(tmp_path, capsys,
                                                                   monkeypatch):
    from phys.runs import lock

    monkeypatch.setattr("phys.data.load", lambda *a, **k: pytest.fail("the data loaded"))
    file = tmp_path / "file"
    file.write_text("not a directory")
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    read_only.chmod(0o555)
    if os.geteuid() == 0:  # root writes anywhere: the refusal a user would get, by mode
        real = os.access
        monkeypatch.setattr(lock.os, "access", lambda path, mode: real(path, mode) and (
            Path(path) != read_only))
    monkeypatch.chdir(tmp_path)
    for command in ("train", "swap"):
        for out, message in [
            (str(file), f"--out must be a directory: {file} is a file"),
            (str(file / "run"), f"--out must be a directory: {file} (on the way to "
                                f"{file / 'run'}) is a file"),
            ("", "--out must name a directory, got ''"),
            (str(read_only / "run"), f"--out must be a directory that can be written: "
                                     f"{read_only} (on the way to {read_only / 'run'}) is "
                                     f"read-only"),
        ]:
            assert main([command, "--no-progress", "--out", out]) == 2, (command, out)
            assert _one_error(capsys) == f"phys: error: {message}"
        assert main([command, "--no-progress", "--resume", str(file)]) == 2
        assert _one_error(capsys) == f"phys: error: --resume must be a directory: {file} is a file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "read-only"]
    assert not list(read_only.iterdir())
    read_only.chmod(0o755)


def test_a_full_disk_is_an_error_naming_the_file_and_keeps_the_checkpoint(
        tmp_path, capsys, monkeypatch, one_thread):
    out = tmp_path / "run"
    real, written = os.write, set()

    def write(fd: int, data) -> int:  # the disk fills up after the first checkpoint
        name = os.readlink(f"/proc/self/fd/{fd}")
        if Path(name).name.startswith(".checkpoint.pt."):
            written.add(name)
            if len(written) > 1:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data)

    monkeypatch.setattr(os, "write", write)
    assert main(["train", *ARGS, "--epochs=3", "--checkpoint-every=0", "--out",
                 str(out)]) == 2
    assert _one_error(capsys) == (f"phys: error: cannot write {out / 'checkpoint.pt'}: the "
                                  f"disk is full (No space left on device)")
    monkeypatch.undo()
    state, used = RunDir(out).load()  # the checkpoint before is intact
    assert (state["epoch"], used.name) == (1, "checkpoint.pt")
    kept = sorted(p.name for p in out.iterdir() if not p.name.startswith("events.out."))
    assert kept == ["checkpoint.pt", "config.json", "metrics.csv"]
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0  # and it resumes
