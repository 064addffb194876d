"""Write a training run's results: results.json, metrics.csv, curve.png, checkpoint.pt;
and the plot of a swap study."""

from __future__ import annotations

import csv
import io
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from phys import atomic

__all__ = ["CHECKPOINT", "CURVE", "METRICS", "RESULTS", "metrics_csv", "plot_curve",
           "plot_swap", "write_run"]

RESULTS, METRICS, CURVE, CHECKPOINT = "results.json", "metrics.csv", "curve.png", "checkpoint.pt"


def metrics_csv(history: Sequence[Mapping[str, Any]]) -> str:
    """Per-epoch metrics as CSV text (columns: the union of the rows' keys, in order)."""
    columns: list[str] = []
    for row in history:
        columns += [k for k in row if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    return buf.getvalue()


def plot_curve(history: Sequence[Mapping[str, Any]], path: Path, title: str) -> None:
    """Accuracy and loss against epoch, saved atomically as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(9, 3.5), constrained_layout=True)
    for key, label in (("train_accuracy", "train"), ("test_accuracy", "test")):
        if history and key in history[0]:
            ax_acc.plot(epochs, [row[key] for row in history], marker="o", ms=3, label=label)
    from matplotlib.ticker import MaxNLocator

    for ax in (ax_acc, ax_loss):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    ax_acc.legend()
    ax_acc.grid(alpha=0.3)
    ax_loss.plot(epochs, [row["loss"] for row in history], marker="o", ms=3, color="C3")
    ax_loss.set(xlabel="epoch", ylabel="summed layer loss", title="loss")
    ax_loss.grid(alpha=0.3)
    fig.suptitle(title)
    atomic.write_figure(fig, path)


def plot_swap(summary: Sequence[Mapping[str, Any]], epochs: Sequence[Mapping[str, Any]],
              path: Path, title: str, paper: Sequence[float] | None = None) -> None:
    """A swap study's test accuracy per level (mean and standard deviation over seeds,
    next to the paper's per level when given) and its training loss per epoch (mean over
    seeds), saved atomically as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(9, 3.5), constrained_layout=True)
    levels = [s["level"] for s in summary]
    ax_acc.errorbar(levels, [s["test_accuracy_mean"] for s in summary],
                    yerr=[s["test_accuracy_std"] for s in summary], marker="o", capsize=4,
                    label="this run")
    if paper is not None:
        ax_acc.plot(levels, [paper[lv] for lv in levels], "s--", color="C2",
                    label="paper's code (50 epochs)")
    ax_acc.set(xlabel="replacement level", ylabel="test accuracy (%)", xticks=levels,
               title="test accuracy per level")
    low, high = ax_acc.get_ylim()
    if high - low < 2:  # show at least 2 points, so that results a hair apart look close
        middle = (low + high) / 2
        ax_acc.set_ylim(middle - 1, middle + 1)
    ax_acc.grid(alpha=0.3)
    ax_acc.legend()
    for i, level in enumerate(levels):
        rows = [e for e in epochs if e["level"] == level]
        xs = sorted({e["epoch"] for e in rows})
        mean = [statistics.fmean(e["train_loss"] for e in rows if e["epoch"] == x) for x in xs]
        ax_loss.plot(xs, mean, marker="o", ms=3, color=f"C{i}", label=f"level {level}")
    from matplotlib.ticker import MaxNLocator

    ax_loss.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_loss.set(xlabel="epoch", ylabel="train loss (mean over seeds)", title="training loss")
    ax_loss.grid(alpha=0.3)
    ax_loss.legend()
    fig.suptitle(title)
    atomic.write_figure(fig, path)


def save_checkpoint(state: Mapping[str, Any], path: Path) -> None:
    """``torch.save`` atomically; load with ``torch.load(path, weights_only=True)``."""
    import torch

    buf = io.BytesIO()
    torch.save(dict(state), buf)
    atomic.write_bytes(path, buf.getvalue())


def write_run(out: str | Path, results: Mapping[str, Any],
              history: Sequence[Mapping[str, Any]], state: Mapping[str, Any] | None,
              title: str = "") -> dict[str, Path]:
    """Write every file of a run into ``out`` (created if missing); returns their paths.

    ``state=None`` writes no checkpoint (one kept by :class:`phys.runs.RunDir` is there).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in (RESULTS, METRICS, CURVE, CHECKPOINT)}
    if state is not None:
        save_checkpoint(state, paths[CHECKPOINT])
    atomic.write_text(paths[METRICS], metrics_csv(history))
    plot_curve(history, paths[CURVE], title)
    atomic.write_json(paths[RESULTS], dict(results))
    return paths
