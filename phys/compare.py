"""``phys compare``: several trainers on one device and dataset, one table, one plot."""

from __future__ import annotations

from collections.abc import Sequence
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


def _plot(histories: dict[str, list[dict[str, Any]]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    for ax, key, label in ((axes[0], "device_samples", "device samples (training)"),
                           (axes[1], "digital_flops", "digital FLOPs (training)")):
        for name, rows in histories.items():
            xs = [row.get(key, 0) for row in rows]
            ax.plot(xs, [row["test_accuracy"] for row in rows], marker="o", ms=3, label=name)
        ax.set_xscale("symlog", linthresh=1.0)
        ax.set(xlabel=label, ylabel="test accuracy")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    atomic.write_figure(fig, path)


def compare(spec: TrainSpec, trainers: Sequence[str], out: str | Path, *,
            progress: bool = False, threads: int | None = None, torch_device: str = "cpu",
            tensorboard: bool = True) -> str:
    """Run ``spec`` once per trainer (FLOPs counted) into ``out/TRAINER``; write
    ``out/compare.md`` and ``out/compare.png``. Returns the markdown table.

    ``progress``, ``threads``, ``torch_device`` and ``tensorboard`` are those of
    :func:`phys.runs.train`.

    Backprop trains in silico, so its training uses no device samples; on the
    samples axis (symmetric log) its curve sits at zero.
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
    title = f"{spec.device} / {spec.data}, {spec.layers} layers, {spec.epochs} epochs"
    atomic.write_text(out / "compare.md", f"# {title}\n\n{table}")
    _plot(histories, out / "compare.png", title)
    return table
