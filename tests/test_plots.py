"""Every plot drawn for a 1-epoch and a 20-epoch run: integer epoch ticks with the first
and last epoch, the trainer's loss label, the device-samples axis, readable scales, and
epochs without an evaluation left out rather than drawn as 0."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest

from phys import atomic, compare, report
from phys.sweep import parse_sweep
from phys.sweep import runner as sweep_runner

PNG = b"\x89PNG\r\n\x1a\n"
SAMPLES_PER_EPOCH, TWIN_SAMPLES = 1437, 8192


def history(epochs: int, eval_every: int = 1, per_epoch: int = 14370,
            before: int = 0) -> list[dict[str, Any]]:
    """Rows shaped like :meth:`phys.train.base.Trainer.fit`'s; test accuracy only every
    ``eval_every`` epochs and at the last, as with ``eval_every``."""
    rows = []
    for epoch in range(1, epochs + 1):
        row: dict[str, Any] = {"epoch": epoch, "loss": 2.0 / (epoch + 1),
                               "train_accuracy": 1 - 0.5 / epoch}
        if epoch % eval_every == 0 or epoch == epochs:
            row["test_accuracy"] = 1 - 0.6 / epoch
        row.update(seconds=0.5, device_queries=23 * epoch,
                   device_samples=before + per_epoch * epoch,
                   digital_flops=1.3e8 * epoch + (7.7e9 if before else 0.0))
        rows.append(row)
    return rows


@pytest.fixture
def drawn(monkeypatch) -> list[Any]:
    """The figures the plotting functions save (drawn, so that tick labels are set);
    they are still written to their files."""
    figures, write = [], atomic.write_figure

    def keep(fig: Any, path: Any, dpi: int = 110) -> None:
        fig.canvas.draw()
        figures.append(fig)
        write(fig, path, dpi)

    monkeypatch.setattr(atomic, "write_figure", keep)
    return figures


def tick_labels(ax: Any) -> list[str]:
    return [t.get_text() for t in ax.get_xticklabels()]


def epoch_axes(fig: Any) -> list[Any]:
    axes = [ax for ax in fig.axes if ax.get_xlabel() == "epoch"]
    assert axes, [ax.get_xlabel() for ax in fig.axes]
    return axes


def check_epoch_ticks(fig: Any, epochs: int) -> None:
    for ax in epoch_axes(fig):
        labels = tick_labels(ax)
        if epochs == 1:
            assert labels == ["1"], labels
        else:
            assert all(label.isdigit() for label in labels), labels  # no "2.5", no "0.0"
            assert labels[0] == "1" and labels[-1] == str(epochs), labels
            assert [int(x) for x in labels] == sorted({int(x) for x in labels})
            assert 1 <= int(labels[0]) and int(labels[-1]) <= epochs
        assert not ax.get_xticks(minor=True).size


def axis_labelled(fig: Any, xlabel: str) -> Any:
    found = [ax for ax in fig.axes if ax.get_xlabel() == xlabel]
    assert len(found) == 1, [ax.get_xlabel() for ax in fig.axes]
    return found[0]


def line_data(ax: Any, label: str) -> tuple[list[float], list[float]]:
    lines = [ln for ln in ax.get_lines() if ln.get_label().startswith(label)]
    assert len(lines) == 1, [ln.get_label() for ln in ax.get_lines()]
    return list(lines[0].get_xdata()), list(lines[0].get_ydata())


# curve.png


@pytest.mark.parametrize("first,last,expected", [
    (1, 1, [1]), (1, 2, [1, 2]), (1, 3, [1, 2, 3]), (1, 10, list(range(1, 11))),
    (1, 20, [1, 5, 10, 15, 20]), (1, 50, [1, 10, 20, 30, 40, 50]), (4, 4, [4]),
])
def test_epoch_ticks_are_integers_from_first_to_last(first, last, expected) -> None:
    assert report.epoch_ticks(first, last) == expected


def test_epoch_ticks_always_hold_both_ends_and_few_enough() -> None:
    for last in range(1, 400):
        ticks = report.epoch_ticks(1, last)
        assert ticks[0] == 1 and ticks[-1] == last and ticks == sorted(set(ticks))
        assert all(isinstance(t, int) for t in ticks) and len(ticks) <= 10


@pytest.mark.parametrize("epochs", [1, 20])
def test_curve_has_integer_epoch_ticks_with_first_and_last(tmp_path, drawn, epochs) -> None:
    report.plot_curve(history(epochs), tmp_path / "curve.png", "run")
    assert (tmp_path / "curve.png").read_bytes()[:8] == PNG
    check_epoch_ticks(drawn[-1], epochs)


@pytest.mark.parametrize("epochs", [1, 20])
def test_curve_labels_the_trainers_loss_and_has_a_device_samples_axis(epochs) -> None:
    rows = history(epochs)
    fig = report.curve_figure(rows, "run", loss_label="cross-entropy")
    assert [ax.get_ylabel() for ax in epoch_axes(fig)] == ["accuracy", "cross-entropy"]
    samples = axis_labelled(fig, "training device samples")
    for key, label in (("test_accuracy", "test"), ("train_accuracy", "train")):
        xs, ys = line_data(samples, label)
        assert xs == [r["device_samples"] for r in rows] and ys == [r[key] for r in rows]
    assert samples.get_xlim()[0] == 0  # samples spent before epoch 1 show as such
    assert epoch_axes(report.curve_figure(rows))[1].get_ylabel() == "loss"


def test_write_run_passes_the_loss_label_to_the_curve(tmp_path, drawn) -> None:
    paths = report.write_run(tmp_path / "run", {"test_accuracy": 0.9}, history(3), None,
                             "run", loss_label="goodness loss, summed over layers")
    assert paths[report.CURVE].read_bytes()[:8] == PNG
    assert "goodness loss, summed over layers" in [ax.get_ylabel() for ax in drawn[-1].axes]


@pytest.mark.parametrize("epochs", [1, 20])
def test_epochs_without_test_accuracy_are_left_out_not_drawn_as_zero(tmp_path, drawn,
                                                                     epochs) -> None:
    rows = history(epochs, eval_every=3)
    tested = [r for r in rows if "test_accuracy" in r]
    assert len(tested) == (1 if epochs == 1 else 7)  # 3, 6, ..., 18 and the last
    report.plot_curve(rows, tmp_path / "curve.png", "run")
    fig = drawn[-1]
    xs, ys = line_data(epoch_axes(fig)[0], "test")
    assert xs == [r["epoch"] for r in tested] and ys == [r["test_accuracy"] for r in tested]
    xs, ys = line_data(axis_labelled(fig, "training device samples"), "test")
    assert xs == [r["device_samples"] for r in tested] and 0 not in ys
    check_epoch_ticks(fig, epochs)


def test_metrics_csv_leaves_missing_accuracies_empty() -> None:
    rows = history(5, eval_every=2)
    rows[1].pop("train_accuracy")
    read = list(csv.DictReader(io.StringIO(report.metrics_csv(rows))))
    assert [r["test_accuracy"] for r in read][:4] == ["", str(rows[1]["test_accuracy"]), "",
                                                      str(rows[3]["test_accuracy"])]
    assert read[1]["train_accuracy"] == "" and read[0]["train_accuracy"] != ""


def test_a_run_without_device_samples_says_so() -> None:
    fig = report.curve_figure(history(4, per_epoch=0), "backprop", "cross-entropy")
    samples = axis_labelled(fig, "training device samples")
    assert not samples.get_lines()
    assert any("no device samples" in t.get_text() for t in samples.texts)


# compare.png


def histories(epochs: int) -> dict[str, list[dict[str, Any]]]:
    backprop = [dict(r, device_samples=0) for r in history(epochs)]
    return {"phyll": history(epochs), "backprop": backprop,
            "pat": history(epochs, per_epoch=SAMPLES_PER_EPOCH, before=TWIN_SAMPLES)}


@pytest.mark.parametrize("epochs", [1, 20])
def test_compare_uses_log_axes_on_the_data_and_explains_the_twin_fitting(tmp_path, drawn,
                                                                         epochs) -> None:
    results = [{"trainer": "phyll", "twins": []}, {"trainer": "backprop"},
               {"trainer": "pat", "twins": [{"device_samples": TWIN_SAMPLES}]}]
    compare._plot(histories(epochs), tmp_path / "compare.png", "cmp", results)
    assert (tmp_path / "compare.png").read_bytes()[:8] == PNG
    fig = drawn[-1]
    samples = axis_labelled(fig, "training device samples")
    flops = axis_labelled(fig, "training digital FLOPs")
    for ax in (samples, flops):
        assert ax.get_xscale() == "log"
        xs = [x for line in ax.get_lines() if "final accuracy" not in line.get_label()
              for x in line.get_xdata()]
        low, high = ax.get_xlim()
        assert min(xs) / 2 < low < min(xs) and max(xs) < high < 2 * max(xs)
        assert any("twin fitted" in t.get_text() and "before epoch 1" in t.get_text()
                   for t in ax.texts)
    legend = [t.get_text() for t in samples.get_legend().get_texts()]
    assert any(text.startswith("pat") and f"{TWIN_SAMPLES:,} twin-fitting samples" in text
               and "before epoch 1" in text for text in legend), legend
    assert any(text.startswith("backprop") and "no device samples" in text
               for text in legend), legend
    xs, _ = line_data(samples, "pat")
    assert xs[0] == TWIN_SAMPLES + SAMPLES_PER_EPOCH


def test_compare_leaves_out_epochs_without_test_accuracy(tmp_path, drawn) -> None:
    runs = {"phyll": history(20, eval_every=5)}
    compare._plot(runs, tmp_path / "compare.png", "cmp")
    for xlabel, key in (("training device samples", "device_samples"),
                        ("training digital FLOPs", "digital_flops")):
        xs, ys = line_data(axis_labelled(drawn[-1], xlabel), "phyll")
        tested = [r for r in runs["phyll"] if "test_accuracy" in r]
        assert xs == [r[key] for r in tested] and 0 not in ys


# sweep.png


def sweep_rows() -> tuple[Any, list[dict[str, Any]]]:
    sweep = parse_sweep('[options]\ndata = "digits"\nepochs = 1\n[grid]\n'
                        'trainer = ["phyll", "backprop"]\nseeds = [0, 1]\n', out="unused")
    accuracies = [0.91, 0.93, 0.86, None]  # a failed point has none
    return sweep, [{**p.values, "test_accuracy": a}
                   for p, a in zip(sweep.points, accuracies, strict=True)]


def test_sweep_accuracy_axis_starts_at_zero_and_states_the_values(tmp_path, drawn) -> None:
    sweep, rows = sweep_rows()
    sweep_runner._plot(sweep, rows, tmp_path / "sweep.png")
    assert (tmp_path / "sweep.png").read_bytes()[:8] == PNG
    (ax,) = drawn[-1].axes
    assert ax.get_ylim()[0] == 0 and ax.get_ylim()[1] >= 100
    assert ax.get_ylabel() == "test accuracy (%)"
    heights = [bar.get_height() for bar in ax.patches]
    assert heights == pytest.approx([92.0, 86.0])
    assert {"92.0 ± 1.4", "86.0"} <= {t.get_text() for t in ax.texts}


# swap.png


def swap_inputs(epochs: int, tested: bool) -> tuple[list[dict], list[dict]]:
    summary = [{"level": lv, "test_accuracy_mean": 90.0 - lv, "test_accuracy_std": 0.5}
               for lv in (0, 1, 2)]
    rows = []
    for lv in (0, 1, 2):
        for seed in (0, 1):
            for epoch in range(1, epochs + 1):
                row = {"level": lv, "seed": seed, "epoch": epoch, "train_loss": 1 / epoch,
                       "train_accuracy": 0.5, "seconds": 1.0}
                if tested:
                    row["test_accuracy"] = 0.8 - 0.01 * lv + 0.01 * seed + 0.001 * epoch
                rows.append(row)
    return summary, rows


@pytest.mark.parametrize("epochs", [1, 20])
def test_swap_draws_test_accuracy_per_epoch_when_recorded(tmp_path, drawn, epochs) -> None:
    summary, rows = swap_inputs(epochs, tested=True)
    report.plot_swap(summary, rows, tmp_path / "swap.png", "swap", [91.0, 90.0, 89.0])
    assert (tmp_path / "swap.png").read_bytes()[:8] == PNG
    fig = drawn[-1]
    check_epoch_ticks(fig, epochs)
    tested = [ax for ax in epoch_axes(fig) if ax.get_title() == "test accuracy per epoch"]
    assert len(tested) == 1 and "%" in tested[0].get_ylabel()
    xs, ys = line_data(tested[0], "level 1")
    assert xs == list(range(1, epochs + 1))
    assert ys == pytest.approx([100 * (0.795 + 0.001 * e) for e in xs])  # mean over seeds


def test_swap_without_per_epoch_test_accuracy_has_no_such_panel(tmp_path, drawn) -> None:
    summary, rows = swap_inputs(20, tested=False)
    fig = report.swap_figure(summary, rows, "swap")
    assert [ax.get_title() for ax in fig.axes] == ["test accuracy per level", "training loss"]
    report.plot_swap(summary, rows, Path(tmp_path) / "swap.png", "swap")
    check_epoch_ticks(drawn[-1], 20)
