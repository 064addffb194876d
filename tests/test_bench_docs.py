"""bench/README.md reads at a glance; the history of measurements is in bench/RESULTS.md."""

import importlib.util
import re
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"
README = (BENCH / "README.md").read_text(encoding="utf-8")
RESULTS = (BENCH / "RESULTS.md").read_text(encoding="utf-8")
COLUMNS = ["Script", "Measures", "Target", "Latest result", "Run"]
MAX_CELL, MAX_RESULT = 100, 80


def _scripts() -> list[str]:
    spec = importlib.util.spec_from_file_location("bench_run_all", BENCH / "run_all.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return [p.name for p in module.scripts()]


def _table() -> tuple[list[str], list[list[str]]]:
    lines = [ln for ln in README.splitlines() if ln.startswith("|")]
    split = [[c.strip() for c in re.split(r"(?<!\\)\|", ln)[1:-1]] for ln in lines]
    return split[0], split[2:]


def test_one_row_per_benchmark_script():
    header, rows = _table()
    assert header == COLUMNS
    named = [re.fullmatch(r"`([\w.]+\.py)`", row[0]).group(1) for row in rows]
    scripts = _scripts()
    assert "busy_demo.py" in scripts and "tensorboard_overhead.py" in scripts
    assert sorted(named) == sorted(scripts), "every script in bench/ exactly once"
    for name, row in zip(named, rows, strict=True):
        assert f"bench/{name}" in row[4], f"{name}: the command runs another script"


def test_cells_are_short():
    _, rows = _table()
    for row in rows:
        assert len(row) == len(COLUMNS), row[0]
        assert all(len(cell) <= MAX_CELL for cell in row), f"{row[0]}: a cell over {MAX_CELL}"
        assert len(row[3]) <= MAX_RESULT, f"{row[0]}: latest result over {MAX_RESULT}"


def test_results_dated_newest_first():
    days = re.findall(r"^## (\d{4}-\d\d-\d\d)$", RESULTS, re.M)
    assert days and days == sorted(days, reverse=True) and len(set(days)) == len(days)
    for section in re.split(r"^###? ", RESULTS, flags=re.M)[1:]:
        times = re.findall(r"^- (\d\d:\d\d)\b", section, re.M)
        assert times == sorted(times, reverse=True), section.splitlines()[0]


def test_every_measured_benchmark_has_its_history():
    _, rows = _table()
    for row in rows:
        if not row[3].startswith("not measured"):
            assert f"### {row[0]}" in RESULTS, f"{row[0]}: no section in RESULTS.md"
