"""Every example runs as a user would run it, briefly, and reports a sane result."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_example(name: str, *args: str) -> str:
    """The standard output of ``examples/NAME`` run with ``args`` (one torch thread)."""
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / name), *args],
                          capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def accuracy_in(text: str) -> float:
    return float(text.split("test accuracy")[1].split(",")[0])


def test_train_cavity_digits_example_runs():
    assert accuracy_in(run_example("train_cavity_digits.py", "--epochs", "2")) > 0.8


def test_custom_blocks_example_runs():
    # ten classes: chance is 0.1
    assert accuracy_in(run_example("custom_blocks.py", "--epochs", "2")) > 0.7


def test_drift_tracking_example_runs(tmp_path):
    out = run_example("drift_tracking.py", "--warmup", "2", "--epochs", "2", "--rate", "1.0",
                      "--out", str(tmp_path))
    final = out.strip().splitlines()[-1]
    online = float(final.split("online ")[1].split(",")[0])
    frozen = float(final.split("frozen ")[1].split(";")[0])
    assert online > frozen  # the drift hurts the frozen network more
    assert (tmp_path / "drift.png").exists()


def test_quantum_swap_example_runs():
    out = run_example("quantum_swap.py", "--epochs", "2")
    results = [line for line in out.splitlines() if "test accuracy" in line]
    assert [line.split(":")[0] for line in results] == ["classical", "quantum conv",
                                                         "quantum conv + linear"]
    classical = float(results[0].split("test accuracy ")[1].split(",")[0])
    assert classical > 0.3  # ten classes: chance is 0.1


def test_lab_device_serial_example_runs():
    # no --port: the example serves the virtual lab device on a pty itself, with faults
    out = run_example("lab_device_serial.py", "--epochs", "1")
    assert out.startswith("lab-cavity on /dev/")
    assert accuracy_in(out) > 0.5
    assert "link:" in out
