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
