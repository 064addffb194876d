"""``phys compare``: several trainers on one device and dataset, one table, one plot."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from phys import atomic
from phys.experiment import TrainSpec
from phys.runs import train as train_run

__all__ = ["compare", "markdown_table"]

COLUMNS = (
    ("trainer", "trainer", "{}"),
    ("test_accuracy", "test acc.", "{:.4f}"),
    ("train_accuracy", "train acc.", "{:.4f}"),
    ("device_queries", "device queries", "{:,}"),
    ("device_samples", "device samples", "{:,}"),
    ("digital_flops", "digital FLOPs", "{:.3g}"),
    ("seconds", "wall s", "{:.1f}"),
    ("lab_seconds", "lab s (est.)", "{:.0f}"),
)


def markdown_table(results: Sequence[dict[str, Any]]) -> str:
    """One row per run: accuracy and what training cost."""
    lines = ["| " + " | ".join(title for _, title, _ in COLUMNS) + " |",
             "|" + "---|" * len(COLUMNS)]
    for r in results:
        cells = [fmt.format(r[key]) if r.get(key) is not None else "-"
                 for key, _, fmt in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


#: The x axes of ``compare.png``: history key, axis label, what a trainer without any is.
AXES = (("device_samples", "training device samples", "no device samples (in silico)"),
        ("digital_flops", "training digital FLOPs", "no FLOPs counted"))


def _twin_samples(results: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Per trainer, the device samples its twins were fitted on before epoch 1."""
    return {r["trainer"]: sum(int(t.get("device_samples") or 0) for t in r.get("twins") or ())
            for r in results}


def _draw(ax: Any, rows: list[dict[str, Any]], key: str, none: str, name: str, color: str,
          note: str | None) -> list[tuple[float, float]]:
    """One trainer's test accuracy against ``key`` (rows without either left out) on a log
    axis; returns the points drawn."""
    points = [(r[key], r["test_accuracy"]) for r in rows
              if r.get(key) is not None and r.get("test_accuracy") is not None]
    shown = [(x, y) for x, y in points if x > 0]
    if not shown:
        if points:  # e.g. backprop on the samples axis: a level, not a curve
            ax.axhline(points[-1][1], ls="--", color=color,
                       label=f"{name}: {none}, final accuracy")
        return []
    label = name if note is None else f"{name} ({note})"
    ax.plot([x for x, _ in shown], [y for _, y in shown], marker="o", ms=3, color=color,
            label=label)
    return shown


def _mark_twin_fit(ax: Any, point: tuple[float, float], color: str) -> None:
    """Point at a first epoch that includes the fitting of a twin, text inside the axes."""
    low, high = (math.log(v) for v in ax.get_xlim())
    right = (math.log(point[0]) - low) / (high - low) > 0.5
    ax.annotate("twin fitted\nbefore epoch 1", point, xytext=(-14 if right else 14, 24),
                textcoords="offset points", ha="right" if right else "left", fontsize=8,
                color=color, arrowprops={"arrowstyle": "->", "color": color})


def _panel(ax: Any, histories: Mapping[str, list[dict[str, Any]]], axis: tuple[str, str, str],
           twins: Mapping[str, int]) -> None:
    key, label, none = axis
    xs, firsts = [], []
    for i, (name, rows) in enumerate(histories.items()):
        fitted = twins.get(name, 0)
        note = None if not fitted else (
            f"first point includes {fitted:,} twin-fitting samples spent before epoch 1"
            if key == "device_samples" else "first point includes its twin fitting")
        shown = _draw(ax, rows, key, none, name, f"C{i}", note)
        xs += [x for x, _ in shown]
        if shown and fitted:
            firsts.append((shown[0], f"C{i}"))
    if xs:
        ax.set_xscale("log")
        ax.set_xlim(min(xs) / 1.25, max(xs) * 1.25)
        for point, color in firsts:
            _mark_twin_fit(ax, point, color)
    ax.set(xlabel=label, ylabel="test accuracy")
    ax.grid(alpha=0.3, which="both")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16))


def compare_figure(histories: Mapping[str, list[dict[str, Any]]], title: str = "",
                   twins: Mapping[str, int] | None = None) -> Any:
    """Test accuracy against training device samples and digital FLOPs, one line per
    trainer, on log axes spanning the data. ``twins`` (device samples of twin fitting per
    trainer) marks the trainers whose first point includes a twin fitted before epoch 1;
    a trainer with none of an axis's cost is a dashed level at its final accuracy."""
    from phys.report import pyplot

    fig, axes = pyplot().subplots(1, 2, figsize=(11, 4.8), constrained_layout=True)
    for ax, axis in zip(axes, AXES, strict=True):
        _panel(ax, histories, axis, twins or {})
    fig.suptitle(title)
    return fig


def _plot(histories: dict[str, list[dict[str, Any]]], path: Path, title: str,
          results: Sequence[Mapping[str, Any]] = ()) -> None:
    """:func:`compare_figure` saved atomically as a PNG."""
    atomic.write_figure(compare_figure(histories, title, _twin_samples(results)), path)


def compare(spec: TrainSpec, trainers: Sequence[str], out: str | Path, *,
            progress: bool = False, threads: int | None = None, torch_device: str = "cpu",
            tensorboard: bool = True) -> str:
    """Run ``spec`` once per trainer (FLOPs counted) into ``out/TRAINER``; write
    ``out/compare.md`` and ``out/compare.png``. Returns the markdown table.

    ``progress``, ``threads``, ``torch_device`` and ``tensorboard`` are those of
    :func:`phys.runs.train`.

    Backprop trains in silico, so its training uses no device samples; on the samples
    axis it is a dashed level at its final accuracy. PAT fits its twin before epoch 1, so
    its first point includes the samples and FLOPs of that fitting (marked on the plot).
    """
    out = Path(out)
    results, histories = [], {}
    for name in trainers:
        collected: list[dict[str, Any]] = []
        result = train_run(replace(spec, trainer=name, count_flops=True), out=out / name,
                           progress=progress, on_epoch=collected.append, overwrite=True,
                           threads=threads, torch_device=torch_device,
                           tensorboard=tensorboard)
        results.append(result)
        histories[name] = collected
    table = markdown_table(results)
    title = (f"{spec.device} / {spec.data}, {spec.layers} layer{'s' * (spec.layers != 1)}, "
             f"{spec.epochs} epoch{'s' * (spec.epochs != 1)}")
    atomic.write_text(out / "compare.md", f"# {title}\n\n{table}")
    _plot(histories, out / "compare.png", title, results)
    return table
