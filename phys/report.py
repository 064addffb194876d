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

__all__ = ["CHECKPOINT", "CURVE", "METRICS", "RESULTS", "curve_figure", "epoch_ticks",
           "metrics_csv", "plot_curve", "plot_swap", "pyplot", "set_epoch_ticks",
           "swap_figure", "write_run"]

RESULTS, METRICS, CURVE, CHECKPOINT = "results.json", "metrics.csv", "curve.png", "checkpoint.pt"


def metrics_csv(history: Sequence[Mapping[str, Any]]) -> str:
    """Per-epoch metrics as CSV text (columns: the union of the rows' keys, in order; a
    cell a row lacks, or holds ``None``, is left empty)."""
    columns: list[str] = []
    for row in history:
        columns += [k for k in row if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    return buf.getvalue()


def epoch_ticks(first: int, last: int, max_ticks: int = 10) -> list[int]:
    """Integer epoch ticks from ``first`` to ``last``, both included, a step of 1, 2 or 5
    times a power of ten apart (at most ``max_ticks``): every step from ``first`` when
    the step divides the range, else the ends and the multiples of the step between them
    (an inner one within half a step of an end left out).

    Examples::

        >>> epoch_ticks(1, 1)
        [1]
        >>> epoch_ticks(1, 20)
        [1, 5, 10, 15, 20]
    """
    first, last, gaps = int(first), int(last), max(1, max_ticks - 1)
    if last <= first:
        return [first]
    step, scale = 1, 1
    while (last - first) / step > gaps:
        for factor in (2, 5, 10):
            step = factor * scale
            if (last - first) / step <= gaps:
                break
        scale *= 10
    if (last - first) % step == 0:
        return list(range(first, last + 1, step))
    inner = [t for t in range((first // step + 1) * step, last, step)
             if t - first > step / 2 and last - t > step / 2]
    return [first, *inner, last]


def set_epoch_ticks(ax: Any, epochs: Sequence[int]) -> None:
    """Put :func:`epoch_ticks` on ``ax``'s x axis (nothing when ``epochs`` is empty)."""
    if not epochs:
        return
    first, last = min(epochs), max(epochs)
    ax.set_xticks(epoch_ticks(first, last))
    ax.set_xticks([], minor=True)
    if first == last:
        ax.set_xlim(first - 1, last + 1)


def pyplot() -> Any:
    """``matplotlib.pyplot``, drawing with the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _present(rows: Sequence[Mapping[str, Any]], *keys: str) -> list[Mapping[str, Any]]:
    """The rows that hold a value (not ``None``) for every one of ``keys``."""
    return [row for row in rows if all(row.get(k) is not None for k in keys)]


ACCURACIES = (("train_accuracy", "train"), ("test_accuracy", "test"))


def _accuracy_per_epoch(ax: Any, history: Sequence[Mapping[str, Any]]) -> None:
    for key, label in ACCURACIES:
        rows = _present(history, "epoch", key)
        if rows:
            ax.plot([r["epoch"] for r in rows], [r[key] for r in rows], marker="o", ms=3,
                    label=label)
    ax.set(xlabel="epoch", ylabel="accuracy", title="accuracy")


def _accuracy_per_sample(ax: Any, history: Sequence[Mapping[str, Any]]) -> None:
    most = 0
    for key, label in ACCURACIES:
        rows = _present(history, "device_samples", key)
        if rows and any(r["device_samples"] > 0 for r in rows):
            ax.plot([r["device_samples"] for r in rows], [r[key] for r in rows], marker="o",
                    ms=3, label=label)
            most = max(most, *(r["device_samples"] for r in rows))
    if most:
        ax.set_xlim(0, 1.05 * most)  # from 0: samples spent before epoch 1 show as such
        ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 4), useMathText=True)
    else:
        ax.text(0.5, 0.5, "no device samples in training\n(trained in silico)",
                ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set(xlabel="training device samples", ylabel="accuracy",
           title="accuracy per device sample")


def curve_figure(history: Sequence[Mapping[str, Any]], title: str = "",
                 loss_label: str = "loss") -> Any:
    """A run's figure: accuracy and loss (labelled ``loss_label``, the trainer's own) per
    epoch, and accuracy against the cumulative device samples of training. Rows without
    an accuracy (epochs not evaluated) are left out of its curve."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), constrained_layout=True)
    ax_acc, ax_loss, ax_samples = axes
    _accuracy_per_epoch(ax_acc, history)
    rows = _present(history, "epoch", "loss")
    ax_loss.plot([r["epoch"] for r in rows], [r["loss"] for r in rows], marker="o", ms=3,
                 color="C3")
    ax_loss.set(xlabel="epoch", ylabel=loss_label, title="loss")
    _accuracy_per_sample(ax_samples, history)
    epochs = [r["epoch"] for r in history if r.get("epoch") is not None]
    for ax in axes:
        if ax is not ax_samples:
            set_epoch_ticks(ax, epochs)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    return fig


def plot_curve(history: Sequence[Mapping[str, Any]], path: Path, title: str,
               loss_label: str = "loss") -> None:
    """:func:`curve_figure` saved atomically as a PNG."""
    atomic.write_figure(curve_figure(history, title, loss_label), path)


def _swap_levels(ax: Any, summary: Sequence[Mapping[str, Any]],
                 paper: Sequence[float] | None) -> None:
    levels = [s["level"] for s in summary]
    ax.errorbar(levels, [s["test_accuracy_mean"] for s in summary],
                yerr=[s["test_accuracy_std"] for s in summary], marker="o", capsize=4,
                label="this run")
    if paper is not None:
        ax.plot(levels, [paper[lv] for lv in levels], "s--", color="C2",
                label="paper's code (50 epochs)")
    ax.set(xlabel="replacement level", ylabel="test accuracy (%)", xticks=levels,
           title="test accuracy per level")
    low, high = ax.get_ylim()
    if high - low < 2:  # show at least 2 points, so that results a hair apart look close
        middle = (low + high) / 2
        ax.set_ylim(middle - 1, middle + 1)


def _swap_per_epoch(ax: Any, epochs: Sequence[Mapping[str, Any]], levels: Sequence[int],
                    key: str, scale: float) -> None:
    """``key`` per epoch, mean over seeds, one line per level (rows without it left out)."""
    for i, level in enumerate(levels):
        rows = [e for e in _present(epochs, "epoch", key) if e["level"] == level]
        xs = sorted({e["epoch"] for e in rows})
        mean = [scale * statistics.fmean(e[key] for e in rows if e["epoch"] == x)
                for x in xs]
        if xs:
            ax.plot(xs, mean, marker="o", ms=3, color=f"C{i}", label=f"level {level}")
    set_epoch_ticks(ax, [e["epoch"] for e in epochs if e.get("epoch") is not None])


def swap_figure(summary: Sequence[Mapping[str, Any]], epochs: Sequence[Mapping[str, Any]],
                title: str = "", paper: Sequence[float] | None = None) -> Any:
    """A swap study's figure: test accuracy per level (mean and standard deviation over
    seeds, next to the paper's per level when given), training loss per epoch and, when
    recorded, test accuracy per epoch (means over seeds)."""
    plt = pyplot()
    tested = bool(_present(epochs, "test_accuracy"))
    fig, axes = plt.subplots(1, 3 if tested else 2, figsize=(13 if tested else 9, 3.6),
                             constrained_layout=True)
    _swap_levels(axes[0], summary, paper)
    levels = [s["level"] for s in summary]
    _swap_per_epoch(axes[1], epochs, levels, "train_loss", 1.0)
    axes[1].set(xlabel="epoch", ylabel="train loss (mean over seeds)", title="training loss")
    if tested:
        _swap_per_epoch(axes[2], epochs, levels, "test_accuracy", 100.0)
        axes[2].set(xlabel="epoch", ylabel="test accuracy (%, mean over seeds)",
                    title="test accuracy per epoch")
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.suptitle(title)
    return fig


def plot_swap(summary: Sequence[Mapping[str, Any]], epochs: Sequence[Mapping[str, Any]],
              path: Path, title: str, paper: Sequence[float] | None = None) -> None:
    """:func:`swap_figure` saved atomically as a PNG."""
    atomic.write_figure(swap_figure(summary, epochs, title, paper), path)


def save_checkpoint(state: Mapping[str, Any], path: Path) -> None:
    """``torch.save`` atomically; load with ``torch.load(path, weights_only=True)``."""
    import torch

    buf = io.BytesIO()
    torch.save(dict(state), buf)
    atomic.write_bytes(path, buf.getvalue())


def write_run(out: str | Path, results: Mapping[str, Any],
              history: Sequence[Mapping[str, Any]], state: Mapping[str, Any] | None,
              title: str = "", loss_label: str = "loss") -> dict[str, Path]:
    """Write every file of a run into ``out`` (created if missing); returns their paths.

    ``state=None`` writes no checkpoint (one kept by :class:`phys.runs.RunDir` is there);
    ``loss_label`` names the loss on the curve's axis (the trainer's ``loss_label``).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in (RESULTS, METRICS, CURVE, CHECKPOINT)}
    if state is not None:
        save_checkpoint(state, paths[CHECKPOINT])
    atomic.write_text(paths[METRICS], metrics_csv(history))
    plot_curve(history, paths[CURVE], title, loss_label)
    atomic.write_json(paths[RESULTS], dict(results))
    return paths
