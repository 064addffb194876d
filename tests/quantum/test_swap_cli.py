"""``phys swap``: trains every level, prints its table, writes CSV and PNG."""

from __future__ import annotations

import csv

import pytest
import torch

from phys.cli import main
from phys.quantum.study import SwapConfig, format_table, load_images, summarize


def test_phys_swap_on_digits_writes_table_csv_and_plot(tmp_path, capsys) -> None:
    out = tmp_path / "swap"
    status = main(["swap", "--data", "digits", "--levels", "0", "1", "2", "--seeds", "2",
                   "--epochs", "2", "--subset", "60", "--test-subset", "50", "--batch-size",
                   "20", "--reps", "2", "--threads", "1", "--no-progress", "--out", str(out)])
    assert status == 0
    printed = capsys.readouterr().out
    table = [line for line in printed.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| level | swapped | test accuracy (%) | parameters")
    assert [row.split(" | ")[0] for row in table[1:]] == ["| 0", "| 1", "| 2"]
    assert "(2 seeds)" in table[1] and "40,984" in table[3]  # 2 x 16383 + 10 + 8208
    with open(out / "swap.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["level"], r["seed"]) for r in rows] == [(str(lv), str(s)) for lv in (0, 1, 2)
                                                       for s in (0, 1)]
    assert all(r["train_images"] == "60" and r["test_images"] == "50" for r in rows)
    assert all(0 <= float(r["test_accuracy"]) <= 1 and float(r["seconds_per_epoch"]) > 0
               for r in rows)
    with open(out / "swap_epochs.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 3 * 2 * 2
    assert (out / "swap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temporary files


def test_level_zero_learns_digits(tmp_path) -> None:
    from phys.runs.swap import run_study

    rows, _ = run_study(SwapConfig(data="digits", levels=(0,), seeds=1, epochs=3,
                                   batch_size=50), tmp_path)
    assert rows[0]["test_accuracy"] > 0.8  # the classical model trains on 32x32 digits


def test_images_are_32x32_normalised_with_padding(shared_data, monkeypatch) -> None:
    x_tr, y_tr, x_te, y_te = load_images("digits", subset=30, test_subset=20)
    assert x_tr.shape == (30, 1, 32, 32) and x_te.shape == (20, 1, 32, 32)
    assert y_tr.shape == (30,) and y_tr.dtype == torch.int64
    for x in (x_tr, x_te):
        assert x.min() >= -1 and x.max() <= 1
        assert torch.all(x[..., :2, :] == -1) and torch.all(x[..., -2:] == -1)
    monkeypatch.setenv("PHYS_DATA", str(shared_data))
    x_tr, _, x_te, _ = load_images("mnist", subset=5, test_subset=4)
    assert x_tr.shape == (5, 1, 32, 32) and x_te.shape == (4, 1, 32, 32)
    assert torch.all(x_tr[..., :2, :] == -1) and x_tr.max() == 1  # MNIST has full-white pixels


def test_summary_and_paper_column() -> None:
    rows = [{"level": 0, "test_accuracy": a, "parameters": 5, "seconds_per_epoch": 1.0}
            for a in (0.9, 0.92)]
    summary = summarize(rows)
    assert summary[0]["test_accuracy_mean"] == pytest.approx(91.0)
    assert summary[0]["test_accuracy_std"] == pytest.approx(1.41421356)
    assert "| 92.30 |" in format_table(summary, "mnist")
    assert "paper" not in format_table(summary, "digits")


def test_gain_reaches_the_level_two_layer(tmp_path) -> None:
    from phys.quantum.creep import DataReUploadingLinear
    from phys.quantum.swap import HybridNet

    assert HybridNet(2, gain="uniform").fc.gain == 128.0  # 7 qubits
    assert HybridNet(2).fc.gain == 1.0
    assert main(["swap", "--data", "digits", "--levels", "2", "--seeds", "1", "--epochs", "1",
                 "--subset", "20", "--test-subset", "10", "--reps", "1", "--gain", "uniform",
                 "--torch-device", "cpu", "--test-every-epoch", "--no-progress",
                 "--out", str(tmp_path)]) == 0
    state = torch.load(tmp_path / "runs" / "level2-seed0" / "checkpoint.pt", weights_only=True)
    layer = HybridNet(2, reps=1, gain="uniform")
    layer.load_state_dict(state["model"])
    assert isinstance(layer.fc, DataReUploadingLinear)
    assert '"gain": "uniform"' in (tmp_path / "config.json").read_text()
    with open(tmp_path / "swap_epochs.csv", newline="") as fh:
        epochs = list(csv.DictReader(fh))
    with open(tmp_path / "swap.csv", newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    assert epochs[-1]["test_accuracy"] == row["test_accuracy"]  # measured after each epoch


@pytest.mark.parametrize(("argv", "message"), [
    (["--gain", "big"], "must be a number or 'uniform'"),
    (["--gain", "0"], "--gain must be a number > 0 or 'uniform'"),
    (["--torch-device", "nowhere"], "--torch-device 'nowhere' is not a torch device name"),
    (["--seeds", "0"], "--seeds must be >= 1, got 0"),
    (["--subset", "0"], "--subset must be >= 1, got 0"),
    (["--threads", "0"], "--threads must be >= 1"),
])
def test_bad_options_exit_2_with_a_message(argv, message, capsys) -> None:
    assert main(["swap", "--no-progress", "--out", "unused", *argv]) == 2
    assert message in capsys.readouterr().err
