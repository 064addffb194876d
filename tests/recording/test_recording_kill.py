"""A writer killed with SIGKILL at any moment leaves a recording that opens, holds every
row up to its last flush, and can be continued."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from kill_writer import ROWS, batch

import phys.recording as recording
from phys.recording import Recording

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def kill_after_flushes(path: Path, flushes: int, pause: float, spill: int) -> int:
    """Run the writer, SIGKILL it ``pause`` s after its ``flushes``-th flush; returns the
    rows of that flush."""
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, str(HERE / "kill_writer.py"), str(path), "7",
                             str(spill)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        rows = 0
        for _ in range(flushes):
            line = proc.stdout.readline()
            assert line.startswith("flushed "), f"the writer stopped: {line!r}"
            rows = int(line.split()[1])
        time.sleep(pause)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL, "the writer ended before the kill"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    return rows


def check_rows(dev: recording.DeviceRecording, n: int) -> None:
    q = n // ROWS
    assert len(dev) == n == q * ROWS
    assert np.array_equal(dev.query[:], np.repeat(np.arange(q), ROWS))
    assert np.array_equal(dev.inputs[:], np.concatenate([batch(i)[0] for i in range(q)]))
    assert np.array_equal(dev.outputs[:], np.concatenate([batch(i)[1] for i in range(q)]))


@pytest.mark.parametrize("spill", [2**24, 4096], ids=["buffered", "spilling"])
def test_sigkill_mid_write_keeps_every_flushed_row(tmp_path, spill):
    rng = random.Random(spill)
    path = tmp_path / "measurements.h5"
    flushed = kill_after_flushes(path, rng.randint(3, 6), rng.uniform(0.0, 0.05), spill)
    with recording.open(path) as f:
        (dev,) = f.devices
        kept = len(dev)
        assert kept >= flushed  # rows spilled after the last flush may be there too
        check_rows(dev, kept)
    with Recording.append(path) as rec:  # and it continues after the rows it has
        assert rec.next_query(0) == kept // ROWS
        rec.write(0, *batch(kept // ROWS), query=rec.next_query(0), phase="train")
    with recording.open(path) as f:
        check_rows(f.devices[0], kept + ROWS)


def test_a_recording_being_written_elsewhere_is_named(tmp_path):
    path = tmp_path / "measurements.h5"
    with Recording.create(path):
        code = ("import sys, phys.recording as r\n"
                "try:\n    r.open(sys.argv[1])\nexcept RuntimeError as e:\n    print(e)")
        out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                             text=True, timeout=60, cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert f"recording {path} is open for writing in another process" in out.stdout, out.stderr
