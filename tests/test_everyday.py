"""``phys train`` as a user meets it: logs in a file, a subset of the data, resuming and
finished runs, PAT's twin fitting."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from phys.cli import main
from phys.experiment import TrainSpec
from phys.runs import train

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--layers", "1", "--hidden", "16", "--measurements", "8", "--no-tensorboard"]
SMALL_SPEC = {"layers": 1, "hidden": 16, "measurements": 8}


def test_a_log_in_a_file_has_a_line_per_epoch_and_no_carriage_return(tmp_path) -> None:
    log = tmp_path / "log.txt"
    with open(log, "w") as fh:
        done = subprocess.run(
            [sys.executable, "-m", "phys", "train", "--epochs", "3", "--subset", "200",
             *SMALL, "--out", str(tmp_path / "run")],
            stdout=fh, stderr=subprocess.STDOUT, timeout=300, cwd=ROOT,
            env={**os.environ, "OMP_NUM_THREADS": "1"})
    text = log.read_text()
    assert done.returncode == 0, text
    assert "\r" not in text
    epochs = [line for line in text.splitlines() if line.startswith("epoch ")]
    assert [line.split("  ")[0] for line in epochs] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert all("device samples" in line and " s  " in line for line in epochs)
    assert "test accuracy" in text.splitlines()[-3]  # the results follow the epochs


def test_subset_trains_on_that_many_samples(tmp_path, one_thread) -> None:
    results = train(TrainSpec(epochs=1, subset=100, negatives="random", **SMALL_SPEC))
    full = train(TrainSpec(epochs=1, subset=200, negatives="random", **SMALL_SPEC))
    # PhyLL with one random negative measures 2 inputs per training sample
    assert results["device_samples"] == 2 * 100
    assert full["device_samples"] == 2 * 200


def test_a_subset_larger_than_the_data_is_refused(capsys) -> None:
    assert main(["train", "--subset", "100000", "--out", "unused", *SMALL]) == 2
    err = capsys.readouterr().err
    assert "--subset must be an int in 1..1437 (the training samples of digits)" in err


def _stop_after_first_epoch(row) -> None:
    raise KeyboardInterrupt


def test_resuming_says_from_where(tmp_path, caplog, one_thread) -> None:
    out = tmp_path / "run"
    spec = TrainSpec(epochs=2, subset=100, **SMALL_SPEC)
    with pytest.raises(KeyboardInterrupt):
        train(spec, out=out, on_epoch=_stop_after_first_epoch, tensorboard=False)
    caplog.set_level(logging.INFO, logger="phys.progress")
    train(spec, out=out, resume=True, tensorboard=False)
    messages = [r.getMessage() for r in caplog.records]
    assert f"resuming {out} from epoch 2, batch 1 (1 epochs and 0 batches done)" in messages


def test_a_finished_run_is_not_resumed_without_overwrite(tmp_path, capsys, one_thread) -> None:
    out = str(tmp_path / "run")
    assert main(["train", "--epochs", "1", "--subset", "64", *SMALL, "--out", out]) == 0
    before = (tmp_path / "run" / "results.json").read_text()
    capsys.readouterr()
    assert main(["train", "--resume", out]) == 2
    err = capsys.readouterr().err
    assert "the run is finished (1 epochs); nothing to resume" in err
    assert f"phys train --resume {out} --overwrite" in err
    assert (tmp_path / "run" / "results.json").read_text() == before  # nothing rewritten
    assert main(["train", "--resume", out, "--overwrite", "--no-tensorboard"]) == 0
    again = json.loads((tmp_path / "run" / "results.json").read_text())
    assert again["epochs"] == 1 and again["config"]["subset"] == 64


def test_a_poor_twin_warns_and_its_fitting_counts_in_the_seconds(one_thread) -> None:
    spec = TrainSpec(trainer="pat", twin_samples=20, epochs=1, subset=64, **SMALL_SPEC)
    with pytest.warns(UserWarning, match=r"twin of layer 1 .* more twin_samples \(now 20\)"):
        results = train(spec)
    (twin,) = results["twins"]
    assert twin["rel_rmse"] > 0.25 and twin["seconds"] > 0
    assert results["seconds"] > twin["seconds"]


@pytest.mark.filterwarnings("ignore:the twin of layer 1")
def test_twin_fitting_logs_its_progress(caplog, one_thread) -> None:
    caplog.set_level(logging.INFO, logger="phys.progress")
    train(TrainSpec(trainer="pat", twin_samples=200, epochs=1, subset=64, **SMALL_SPEC))
    twin = [r.getMessage() for r in caplog.records if r.getMessage().startswith("twin of")]
    assert twin[0] == "twin of cavity: measuring 200 fitting samples"
    assert any("fitting epoch 6/30" in line for line in twin)
    assert "held-out relative RMSE" in twin[-1]


def _tensors(obj, depth: int = 0):
    """Every tensor held by a device's attributes (and those of the devices it wraps)."""
    import torch

    from phys.device import Device

    for value in vars(obj).values():
        if isinstance(value, torch.Tensor):
            yield value
        elif isinstance(value, Device) and depth < 3:
            yield from _tensors(value, depth + 1)


@pytest.mark.parametrize("trainer", ["phyll", "backprop"])
def test_torch_device_places_the_network_and_every_simulator(trainer) -> None:
    from phys import data
    from phys.experiment import build

    dataset = data.load("digits")
    opened: list = []
    t, _ = build(TrainSpec(trainer=trainer, **SMALL_SPEC), dataset.n_features,
                 dataset.n_classes, opened, torch_device="meta")
    assert t.torch_device.type == "meta"
    assert all(p.device.type == "meta" for p in t.network.parameters())
    assert all(b.device.type == "meta" for b in t.network.buffers())
    for dev in t.devices():
        assert dev.torch_device.type == "meta"
        assert all(x.device.type == "meta" for x in _tensors(dev))
    assert len(opened) == 1


def test_a_torch_device_this_machine_lacks_is_refused(capsys) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["train", "--torch-device", "cuda", "--out", "unused", *SMALL]) == 2
    assert "--torch-device 'cuda': CUDA is not available here" in capsys.readouterr().err


def test_phys_train_writes_event_files_and_labels_its_loss(tmp_path, monkeypatch,
                                                           one_thread) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from phys import report

    labels = []
    real = report.plot_curve
    monkeypatch.setattr(report, "plot_curve", lambda history, path, title, label:
                        labels.append(label) or real(history, path, title, label))
    out = tmp_path / "run"
    assert main(["train", "--epochs", "2", "--subset", "64", *SMALL[:-1], "--out",
                 str(out)]) == 0
    events = EventAccumulator(str(out))
    events.Reload()
    assert {"epoch/loss", "epoch/test_accuracy", "epoch/device_samples",
            "epoch/loss_layer0"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("epoch/loss")] == [1, 2]
    assert labels == ["goodness loss, summed over layers"]
