"""bench/physics_recovery.py runs end to end briefly: both copies start from the same
training, the change lowers accuracy, and the report names the target."""

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"

@pytest.mark.parametrize("trainer", ["readout", "phyll"])
def test_runs_briefly(capsys, trainer):
    spec = importlib.util.spec_from_file_location("bench_physics_recovery",
                                                  BENCH / "physics_recovery.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    runs = module.main(["--warmup", "1", "--epochs", "1", "--hidden", "16",
                        "--measurements", "8", "--physics-directions", "2",
                        "--physics-batch", "4", "--spread", "1.0", "--trainer", trainer])
    out = capsys.readouterr().out
    assert set(runs) == {"spsa", "fixed"} and all(len(a) == 3 for a in runs.values())
    assert "points short of the accuracy before the change" in out and "ratio" in out
