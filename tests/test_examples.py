import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_train_cavity_digits_example_runs():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "train_cavity_digits.py"), "--epochs", "2"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    accuracy = float(proc.stdout.split("test accuracy")[1].split(",")[0])
    assert accuracy > 0.8


def test_custom_blocks_example_runs():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "custom_blocks.py"), "--epochs", "2"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    accuracy = float(proc.stdout.split("test accuracy")[1].split(",")[0])
    assert accuracy > 0.7  # ten classes: chance is 0.1


def test_drift_tracking_example_runs(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "drift_tracking.py"), "--warmup", "2",
         "--epochs", "2", "--rate", "1.0", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    final = proc.stdout.strip().splitlines()[-1]
    online = float(final.split("online ")[1].split(",")[0])
    frozen = float(final.split("frozen ")[1].split(";")[0])
    assert online > frozen  # the drift hurts the frozen network more
    assert (tmp_path / "drift.png").exists()


def test_quantum_swap_example_runs():
    import os

    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quantum_swap.py"), "--epochs", "2"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    results = [line for line in proc.stdout.splitlines() if "test accuracy" in line]
    assert [line.split(":")[0] for line in results] == ["classical", "quantum conv",
                                                         "quantum conv + linear"]
    classical = float(results[0].split("test accuracy ")[1].split(",")[0])
    assert classical > 0.3  # ten classes: chance is 0.1


def test_lab_device_serial_example_runs():
    # no --port: the example serves the virtual lab device on a pty itself, with faults
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "lab_device_serial.py"), "--epochs", "1"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("lab-cavity on /dev/")
    accuracy = float(proc.stdout.split("test accuracy")[1].split(",")[0])
    assert accuracy > 0.5
    assert "link:" in proc.stdout
