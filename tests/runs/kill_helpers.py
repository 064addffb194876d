"""Kill a ``phys`` command with SIGKILL at random points after new checkpoints, resume it,
and let it finish: what the run-directory tests do to show that nothing is lost."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PHYS = [sys.executable, "-m", "phys.cli"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # the same arithmetic in every process


def stamp(path: Path) -> int | None:
    """When ``path`` was last written (``None`` while it does not exist)."""
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return None


def _wait_for_checkpoints(proc: subprocess.Popen, latest: Path, count: int) -> None:
    for _ in range(count):
        seen, deadline = stamp(latest), time.monotonic() + 120
        while stamp(latest) == seen and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)


def kill_and_resume(command: list[str], out: Path, latest: Path, *, kills: int,
                    rng: random.Random, checkpoints: tuple[int, int] = (1, 1),
                    pause: float = 0.15, on_kill=None) -> None:
    """Run ``phys COMMAND ... --out OUT``; up to ``kills`` times, after a random number
    (in ``checkpoints``) of new writes of ``latest`` and a random pause, SIGKILL it and
    start ``phys COMMAND --resume OUT``; then wait for it to finish successfully.
    ``on_kill()`` is called after each kill (to record or check the saved state)."""
    start = [*PHYS, *command, "--no-progress", "--out", str(out)]
    proc = subprocess.Popen(start, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(kills):
            _wait_for_checkpoints(proc, latest, rng.randint(*checkpoints))
            time.sleep(rng.uniform(0.0, pause))  # a random point after a new checkpoint
            if proc.poll() is not None:
                break
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            if on_kill is not None:
                on_kill()
            proc = subprocess.Popen([*PHYS, command[0], "--resume", str(out), "--no-progress"],
                                    cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, text=True)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
