"""bench/acoustic_vowels.py runs end to end in seconds and reports what it measured."""

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture()
def script(monkeypatch, shared_data):
    monkeypatch.setenv("PHYS_DATA", str(shared_data))
    monkeypatch.syspath_prepend(str(BENCH))
    spec = importlib.util.spec_from_file_location("bench_acoustic_vowels",
                                                  BENCH / "acoustic_vowels.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("_common", None)


def test_runs_briefly_and_counts_queries(script, capsys):
    result = script.main(["--stand-in", "--stand-in-epochs", "1", "--splits", "2",
                          "--epochs", "3", "--set", "batch_size=64"])
    out = capsys.readouterr().out
    assert 0.0 <= result["mean"] <= 1.0 and result["sd"] >= 0.0
    # one random negative: positive and negative through each of 2 layers per epoch
    assert result["queries_per_sample"] == pytest.approx(4 * 3)
    assert "ratio to target" in out and "over 2 splits" in out


def test_bad_set_is_refused(script):
    with pytest.raises(SystemExit):
        script.parse_args(["--set", "widht=3"])
