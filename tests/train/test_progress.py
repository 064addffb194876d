"""What training says while it runs, and evaluation thinned by ``eval_every`` and
``eval_samples``."""

from __future__ import annotations

import logging

import pytest
import torch
from test_loop import task, trainer

from phys import data
from phys.experiment import TrainSpec, build
from phys.train import progress
from phys.train.base import TrainConfig


def _lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "phys.progress"]


def test_a_line_per_epoch_without_a_terminal(caplog) -> None:
    x, y, x_te, y_te = task()
    caplog.set_level(logging.INFO, logger="phys.progress")
    trainer(epochs=3).fit(x, y, x_te, y_te, progress=True)  # stderr is not a terminal here
    lines = _lines(caplog)
    assert [line.split("  ")[0] for line in lines] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert all("loss " in line and "test " in line and "\r" not in line for line in lines)


def test_long_epochs_also_log_every_interval(caplog, monkeypatch) -> None:
    x, y, x_te, y_te = task()
    caplog.set_level(logging.INFO, logger="phys.progress")
    monkeypatch.setattr(progress, "INTERVAL", 0.0)
    monkeypatch.setattr(progress.ProgressLog.__init__, "__defaults__", (0.0, progress.LOG))
    trainer(epochs=1).fit(x, y, x_te, y_te)
    lines = _lines(caplog)
    batches = [line for line in lines if " batch " in line]
    assert len(batches) == 7  # 100 samples in batches of 16
    assert batches[0].startswith("epoch 1/1  batch 1/7  loss ")
    assert any("evaluating on" in line for line in lines)
    assert lines[-1].startswith("epoch 1/1  loss ")


def test_a_bar_on_a_terminal_and_no_lines(caplog, capsys, monkeypatch) -> None:
    x, y, x_te, y_te = task()
    caplog.set_level(logging.INFO, logger="phys.progress")
    monkeypatch.setattr(progress, "interactive", lambda stream=None: True)
    trainer(epochs=2).fit(x, y, x_te, y_te, progress=True)
    assert _lines(caplog) == []
    err = capsys.readouterr().err
    assert "epoch 1/2" in err and "epoch 2/2" in err and "7/7" in err


def test_interactive_is_false_for_files(tmp_path) -> None:
    with open(tmp_path / "log", "w") as fh:
        assert progress.interactive(fh) is False


def test_eval_every_measures_every_kth_epoch_and_the_last() -> None:
    x, y, x_te, y_te = task()
    t = trainer(epochs=5, eval_every=2)
    history = t.fit(x, y, x_te, y_te)
    assert ["test_accuracy" in row for row in history] == [False, True, False, True, True]
    assert ["train_accuracy" in row for row in history] == [False, True, False, True, True]


@pytest.mark.parametrize("bad", [0, 1.5])
def test_eval_every_is_checked(bad) -> None:
    with pytest.raises(ValueError, match="eval_every"):
        TrainConfig(eval_every=bad)


def _cavity_trainer(**options):
    spec = TrainSpec(data="digits", layers=1, hidden=16, measurements=8, epochs=2,
                     **options)
    dataset = data.load("digits").subset(128)
    opened: list = []
    t, _ = build(spec, dataset.n_features, dataset.n_classes, opened)
    return t, dataset


def test_thinned_evaluation_spends_fewer_device_samples() -> None:
    full, dataset = _cavity_trainer()
    thin, _ = _cavity_trainer(eval_every=2, eval_samples=50)
    args = (dataset.x_train, dataset.y_train, dataset.x_test, dataset.y_test)
    full.fit(*args)
    thin.fit(*args)
    used, thinned = full.device_usage(), thin.device_usage()
    assert thinned["device_samples"] == used["device_samples"]  # training is the same
    n_test, classes = len(dataset.y_test), dataset.n_classes
    # the goodness readout queries every label: (train 128 + test) x classes per epoch
    assert used["eval_device_samples"] == 2 * (128 + n_test) * classes
    assert thinned["eval_device_samples"] == (128 + 50) * classes
    for key, tensor in full.network.state_dict().items():
        assert torch.equal(tensor, thin.network.state_dict()[key]), key


def test_progress_none_reports_nothing(caplog, capsys) -> None:
    x, y, x_te, y_te = task()
    caplog.set_level(logging.INFO, logger="phys.progress")
    trainer(epochs=2).fit(x, y, x_te, y_te, progress=None)
    assert _lines(caplog) == [] and capsys.readouterr().err == ""
