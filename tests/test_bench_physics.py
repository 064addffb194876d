"""bench/physics_training.py runs end to end briefly and compares at equal samples."""

import importlib.util
import re
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"


def test_runs_briefly_and_reports_the_gains(monkeypatch, shared_data, capsys):
    monkeypatch.setenv("PHYS_DATA", str(shared_data))
    spec = importlib.util.spec_from_file_location("bench_physics_training",
                                                  BENCH / "physics_training.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--data", "vowels", "--seeds", "0", "--spsa-epochs", "1", "--twin-epochs",
                 "1", "--hidden", "16", "--physics-directions", "1"])
    out = capsys.readouterr().out
    for route in ("spsa", "twin"):
        line = re.search(rf"vowels-0-{route}: trained physics ([\d.]+) \(([\d,]+) samples\), "
                         rf"fixed physics ([\d.]+) \(([\d,]+)\)", out)
        assert line, out
        budget, spent = (int(line[i].replace(",", "")) for i in (2, 4))
        assert spent >= budget > 0  # the fixed partner is read once it has spent as many
    assert "ratio" in out and "twin route minus model-free" in out
