"""Running a sweep: every unfinished point as a Ray task, then the table and the plot."""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from phys import atomic
from phys.sweep.commands import COMMANDS
from phys.sweep.holder import hold_exclusive
from phys.sweep.schema import Point, Sweep

__all__ = ["SweepOutcome", "run_point", "run_sweep"]

CSV, MARKDOWN, PLOT, STATE = "sweep.csv", "sweep.md", "sweep.png", "sweep.json"
#: Columns of the results table besides the grid's.
RESULT_COLUMNS = ("test_accuracy", "train_accuracy", "epochs", "seconds", "device_queries",
                  "device_samples", "runs", "status")


@dataclass
class SweepOutcome:
    """What :func:`run_sweep` did: one row per point and the table written."""

    rows: list[dict[str, Any]]
    table: str
    ran: int = 0
    skipped: int = 0
    failed: int = 0
    seconds: float = 0.0
    errors: dict[str, str] = field(default_factory=dict)
    #: Per exclusive device: calls its actor served and the device's counters.
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)


def run_point(command: str, config: Mapping[str, Any], out: str | Path, *,
              holders: Mapping[str, Any] | None = None, threads: int | None = None,
              checkpoint_every: int | None = None, device_wait: float | None = None,
              resume_hint: str | None = None) -> dict[str, Any]:
    """Run one point as ``phys train`` / ``phys swap`` would, in run directory ``out``
    (resumed when it holds saved progress of this configuration); returns its result row.

    ``holders`` maps exclusive devices' names to :class:`~phys.sweep.DeviceHolder` actors;
    ``checkpoint_every`` and ``device_wait`` default to those of
    :class:`~phys.experiment.RunOptions`.
    """
    import torch

    from phys.experiment import RunOptions

    if threads is not None:
        torch.set_num_threads(threads)
    strategy, out = COMMANDS[command], Path(out)
    chosen = {"checkpoint_every": checkpoint_every, "device_wait": device_wait}
    run_options = RunOptions(**{k: v for k, v in chosen.items() if v is not None})
    settings = {"checkpoint_every": run_options.checkpoint_every,
                "device_wait": run_options.device_wait, "resume_hint": resume_hint}
    return strategy.run(config, out, resume=strategy.resumable(out), holders=holders or {},
                        settings=settings)


def _task(command: str, config: dict[str, Any], out: str, holders: dict[str, Any],
          env: dict[str, str], settings: dict[str, Any]) -> dict[str, Any]:
    """A point as a Ray task: never raises, a failure is returned as the row's status."""
    os.environ.update(env)
    t0 = time.perf_counter()
    try:
        row = run_point(command, config, out, holders=holders, **settings)
        row["status"] = "done"
    except Exception as err:  # reported in the table; the other points go on
        text = str(err).strip().splitlines()
        row = {"status": f"failed: {type(err).__name__}: {text[0] if text else ''}"}
    row["wall_seconds"] = time.perf_counter() - t0
    return row


def _init_ray(address: str | None, num_cpus: int | None) -> Any:
    try:
        import ray
    except ImportError:
        raise RuntimeError("phys sweep runs on Ray: pip install 'physnn[distributed]'") \
            from None
    if not ray.is_initialized():
        if address is not None:
            ray.init(address=address, include_dashboard=False)
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False)
    return ray


def _table(sweep: Sweep, rows: Sequence[Mapping[str, Any]]) -> tuple[list[str], str]:
    columns = [*sweep.grid, *[c for c in RESULT_COLUMNS
                              if any(r.get(c) is not None for r in rows)], "dir"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = []
        for c in columns:
            v = row.get(c)
            cells.append("" if v is None else f"{v:.4f}" if isinstance(v, float)
                         and c.endswith("accuracy") else f"{v:.1f}" if isinstance(v, float)
                         else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return columns, "\n".join(lines) + "\n"


def _sweep_figure(sweep: Sweep, rows: Sequence[Mapping[str, Any]]) -> Any:
    """Test accuracy (%) per point as bars from 0 to 100 %, each bar's value written on
    it; with a ``seed`` in the grid, mean and spread over seeds and every seed's point."""
    from phys.report import pyplot

    keys = [k for k in sweep.grid if k != "seed"]
    groups: dict[str, list[float]] = {}
    for row in rows:
        if row.get("test_accuracy") is None:
            continue
        label = "\n".join(f"{k}={row[k]}" for k in keys) or "all"
        groups.setdefault(label, []).append(100 * row["test_accuracy"])
    fig, ax = pyplot().subplots(figsize=(max(4.0, 1.1 * len(groups) + 2), 3.8),
                                constrained_layout=True)
    means = [statistics.fmean(v) for v in groups.values()]
    spread = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in groups.values()]
    bars = ax.bar(range(len(groups)), means, yerr=spread, capsize=4, color="C0", alpha=0.8)
    texts = [f"{m:.1f}" + (f" ± {s:.1f}" if s else "")
             for m, s in zip(means, spread, strict=True)]
    ax.bar_label(bars, texts, label_type="center", fontsize=8, color="white")
    for i, values in enumerate(groups.values()):
        ax.plot([i] * len(values), values, "k.", ms=4)
    ax.set_xticks(range(len(groups)), list(groups), fontsize=8)
    ax.set(ylabel="test accuracy (%)", ylim=(0, 100.5),
           title=f"phys {sweep.command} sweep: {len(rows)} points"
                 + ("\n(mean ± sd over seeds)" if "seed" in sweep.grid else ""))
    if not groups:
        ax.text(0.5, 0.5, "no point has a test accuracy", ha="center", va="center",
                transform=ax.transAxes, color="0.4")
    ax.title.set_fontsize(10)
    ax.grid(axis="y", alpha=0.3)
    return fig


def _plot(sweep: Sweep, rows: Sequence[Mapping[str, Any]], path: Path) -> None:
    """:func:`_sweep_figure` saved atomically as a PNG."""
    atomic.write_figure(_sweep_figure(sweep, rows), path)


def _finished(sweep: Sweep, point: Point, remembered: Mapping[str, Any]) -> dict | None:
    """A finished point's row: remembered in sweep.json, or results in its directory."""
    from phys.runs import RunDir

    if remembered.get(point.key, {}).get("status") == "done":
        return dict(remembered[point.key])
    run = RunDir(sweep.out / "points" / point.key)
    saved = run.read_config() if run.config_path.exists() else None
    if saved is None or not run.finished() or saved["config"] != point.config:
        return None
    return {**sweep.strategy.summary(json.loads(run.results.read_text())), "status": "done"}


def _run_points(sweep: Sweep, todo: Sequence[Point], ray: Any, outcome: SweepOutcome,
                rows: dict[str, dict[str, Any]], remember: Callable[[], None],
                say: Callable[[str], None]) -> None:
    """Run ``todo`` as Ray tasks, exclusive devices behind one holder each."""
    devices = [d for d in (sweep.strategy.device(p.config) for p in todo) if d is not None]
    try:
        holders = hold_exclusive(ray, devices, say)
    except ValueError as err:
        raise ValueError(f"{sweep.source}: {err}") from None
    task = ray.remote(num_cpus=sweep.cpus_per_point, max_retries=0)(_task)
    env = {k: os.environ[k] for k in ("PHYS_DATA",) if k in os.environ}
    settings = {"threads": sweep.threads, "checkpoint_every": sweep.checkpoint_every,
                "device_wait": sweep.device_wait, "resume_hint": f"phys sweep {sweep.source}"}
    pending = {task.remote(sweep.command, p.config, str(sweep.out / "points" / p.key),
                           holders, env, settings): p for p in todo}
    say(f"{len(todo)} point(s) to run, {outcome.skipped} finished before")
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        point = pending.pop(ready[0])
        row = rows[point.key] = ray.get(ready[0])
        remember()
        if row["status"] == "done":
            outcome.ran += 1
            say(f"done {point.label}: test accuracy {row['test_accuracy']:.4f} "
                f"({row['wall_seconds']:.1f} s)")
        else:
            outcome.failed += 1
            outcome.errors[point.key] = row["status"]
            say(f"{point.label}: {row['status']}")
    for name, holder in holders.items():
        outcome.devices[name] = ray.get(holder.stats.remote())
        ray.get(holder.close.remote())
        ray.kill(holder)


def _write(sweep: Sweep, rows: Mapping[str, dict[str, Any]], outcome: SweepOutcome) -> None:
    from phys.report import metrics_csv

    table_rows = [{**p.values, **{k: rows[p.key].get(k) for k in RESULT_COLUMNS},
                   "dir": f"points/{p.key}"} for p in sweep.points]
    columns, outcome.table = _table(sweep, table_rows)
    outcome.rows = table_rows
    atomic.write_text(sweep.out / CSV, metrics_csv([{c: r.get(c) for c in columns}
                                                    for r in table_rows]))
    atomic.write_text(sweep.out / MARKDOWN,
                      f"# phys {sweep.command} sweep: {sweep.source}\n\n{outcome.table}")
    _plot(sweep, table_rows, sweep.out / PLOT)


def run_sweep(sweep: Sweep, *, address: str | None = None, num_cpus: int | None = None,
              log: Callable[[str], None] | None = None) -> SweepOutcome:
    """Run the sweep's unfinished points as Ray tasks and write the table and plot.

    Args:
        sweep: From :func:`~phys.sweep.load_sweep` or :func:`~phys.sweep.parse_sweep`.
        address: Ray cluster to join (``None``: start a local Ray, or use the one this
            process already started). Run directories are written on the node that runs
            each point; the rows come back to this process either way.
        num_cpus: CPUs of a local Ray (default: all).
        log: Called with a line per point started and finished.

    Returns:
        The rows, the Markdown table, and how many points ran, were skipped or failed.
    """
    say = log or (lambda text: None)
    sweep.out = sweep.out.resolve()
    state_path = sweep.out / STATE
    remembered: dict[str, Any] = {}
    if state_path.exists():
        remembered = json.loads(state_path.read_text()).get("points", {})
    rows: dict[str, dict[str, Any]] = {}
    todo = []
    for point in sweep.points:
        done = _finished(sweep, point, remembered)
        if done is not None:
            rows[point.key] = {**done, "skipped": True}
        else:
            todo.append(point)
    outcome = SweepOutcome(rows=[], table="", skipped=len(sweep.points) - len(todo))
    t0 = time.perf_counter()

    def remember() -> None:
        atomic.write_json(state_path, {"command": sweep.command, "points": {
            k: {kk: vv for kk, vv in r.items() if kk != "skipped"} for k, r in rows.items()}})

    if todo:
        sweep.out.mkdir(parents=True, exist_ok=True)
        _run_points(sweep, todo, _init_ray(address, num_cpus), outcome, rows, remember, say)
    outcome.seconds = time.perf_counter() - t0
    sweep.out.mkdir(parents=True, exist_ok=True)
    remember()
    _write(sweep, rows, outcome)
    return outcome
