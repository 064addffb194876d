"""TensorBoard logging: the event files hold the documented tags at the documented steps,
cost no device query, have no step twice after a resume, and a missing tensorboard package
only warns."""

from __future__ import annotations

import copy
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import phys
from phys.data import load
from phys.layers import PhysicalLayer
from phys.nn.device_layer import device_layers
from phys.runs.state import device_state, load_device_state
from phys.runs.tensorboard import TensorBoardLog
from phys.train.backprop import BackpropTrainer
from phys.train.base import TrainConfig
from phys.train.callbacks import Callback
from phys.train.network import PhysicalClassifier
from phys.train.pat import PATTrainer
from phys.train.phyll import PhyLLConfig, PhyLLNetwork, PhyLLTrainer

N_TRAIN, N_TEST, BATCH = 192, 64, 32  # 6 batches per epoch
PER_EPOCH = N_TRAIN // BATCH


@pytest.fixture(scope="module")
def digits():
    data = load("digits")
    return (data.x_train[:N_TRAIN], data.y_train[:N_TRAIN], data.x_test[:N_TEST],
            data.y_test[:N_TEST])


def cavity(n_in: int, seed: int) -> phys.Device:
    return phys.open("cavity", n_in=n_in, n_out=8, n_scatterers=8, seed=seed)


def phyll(epochs: int = 2) -> PhyLLTrainer:
    blocks = [PhysicalLayer(cavity(74, 0), 74, 16, seed=0),
              PhysicalLayer(cavity(16, 1), 16, 16, seed=1)]
    config = PhyLLConfig(epochs=epochs, batch_size=BATCH, lr=1e-2, train_eval_samples=32)
    return PhyLLTrainer(PhyLLNetwork(blocks, n_classes=10), config)


def classifier() -> PhysicalClassifier:
    return PhysicalClassifier([PhysicalLayer(cavity(64, 0), 64, 16, seed=0)], 10)


def backprop(epochs: int = 2) -> BackpropTrainer:
    config = TrainConfig(epochs=epochs, batch_size=BATCH, lr=1e-2, train_eval_samples=32)
    return BackpropTrainer(classifier(), config)


def pat(epochs: int = 2) -> PATTrainer:
    config = TrainConfig(epochs=epochs, batch_size=BATCH, lr=1e-2, train_eval_samples=32)
    return PATTrainer(classifier(), [cavity(64, 0)], config)


def events(log_dir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    return acc


def steps(acc, tag: str, kind: str = "scalars") -> list[int]:
    items = acc.Scalars(tag) if kind == "scalars" else acc.Histograms(tag)
    return sorted(e.step for e in items)


def strip(history):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


def queries(trainer) -> list[tuple[int, int]]:
    return [(d.stats.queries, d.stats.samples) for d in trainer.devices()]


@pytest.mark.parametrize("make, layers, layer_losses", [
    (phyll, 2, 2), (backprop, 1, 0), (pat, 1, 0)], ids=["phyll", "backprop", "pat"])
def test_event_files_hold_the_tags_and_steps_and_cost_no_query(tmp_path, digits, make,
                                                                layers, layer_losses):
    plain, logged = make(), make()
    plain.fit(*digits)
    logged.fit(*digits, callbacks=[TensorBoardLog(tmp_path, every=2)])
    assert strip(logged.history) == strip(plain.history)  # training is unchanged
    assert queries(logged) == queries(plain)  # and no extra device query
    acc = events(tmp_path)
    scalars, histograms = set(acc.Tags()["scalars"]), set(acc.Tags()["histograms"])
    epoch_tags = {"epoch/loss", "epoch/train_accuracy", "epoch/test_accuracy",
                  "epoch/device_samples", "epoch/device_queries", "epoch/queries_per_second",
                  *(f"epoch/loss_layer{i}" for i in range(layer_losses)),
                  *(["epoch/lab_seconds"] if logged.history[0].get("lab_seconds") is not None
                    else [])}
    rates = ({f"epoch/learning_rate{i}" for i in range(len(logged.optimizers))}
             if len(logged.optimizers) > 1 else {"epoch/learning_rate"})
    batch_tags = {"batch/loss", "batch/device_samples",
                  *(f"batch/loss_layer{i}" for i in range(layer_losses))}
    assert scalars == epoch_tags | rates | batch_tags
    for tag in epoch_tags | rates:
        assert steps(acc, tag) == [1, 2], tag
    for tag in batch_tags:
        assert steps(acc, tag) == list(range(2, 2 * PER_EPOCH + 1, 2)), tag
    weights = {f"weights/{name}" for name, _ in logged.network.named_parameters()}
    measured = {f"measurements/layer{i}" for i in range(layers)}
    assert histograms == weights | measured
    for tag in histograms:
        assert steps(acc, tag, "histograms") == [1, 2], tag
    loss = acc.Scalars("epoch/loss")
    assert [e.value for e in loss] == pytest.approx([r["loss"] for r in logged.history])
    samples = acc.Scalars("epoch/device_samples")
    assert [e.value for e in samples] == [r["device_samples"] for r in logged.history]
    if layer_losses:  # the epoch's layer losses are the means whose sum is the loss
        per_layer = [acc.Scalars(f"epoch/loss_layer{i}")[0].value for i in range(layers)]
        assert sum(per_layer) == pytest.approx(logged.history[0]["loss"], rel=1e-5)
    for layer in device_layers(logged.network):  # hooks removed
        assert not layer._forward_hooks and "measure" not in vars(layer)


def test_measurements_are_the_devices_outputs_of_the_last_batch(tmp_path, digits):
    trainer, seen = phyll(epochs=1), []
    device = trainer.network.layers[1].device
    query = device.query

    def spy(u):
        seen.append(query(u))
        return seen[-1]

    device.query = spy
    trainer.fit(*digits, callbacks=[TensorBoardLog(tmp_path, every=0)])
    assert len(seen) > PER_EPOCH  # training's queries come first, then evaluation's
    histogram = events(tmp_path).Histograms("measurements/layer1")[0].histogram_value
    last = seen[PER_EPOCH - 1]
    assert last.shape[0] == BATCH * 10  # every label for each sample of the batch
    assert (histogram.num, histogram.min, histogram.max) == (
        last.numel(), pytest.approx(float(last.min())), pytest.approx(float(last.max())))
    assert sum(histogram.bucket) == last.numel()
    assert histogram.sum == pytest.approx(float(last.double().sum()))


class StateAt(Callback):
    """Keeps a copy of the trainer's and its devices' state (as a checkpoint does) after
    batch ``batch`` of epoch ``epoch + 1`` (0: after epoch ``epoch``)."""

    def __init__(self, epoch: int, batch: int) -> None:
        self.at, self.state, self.devices = (epoch, batch), None, None

    def keep(self, trainer):
        self.state = copy.deepcopy(trainer.state_dict())
        self.devices = [copy.deepcopy(device_state(d)) for d in trainer.devices()]

    def restore(self, trainer):
        trainer.load_state_dict(self.state)
        for device, state in zip(trainer.devices(), self.devices, strict=True):
            load_device_state(device, state)

    def on_batch_end(self, trainer, batch):
        if (trainer.epoch, batch) == self.at:
            self.keep(trainer)

    def on_epoch_end(self, trainer, row):
        if (trainer.epoch, 0) == self.at:
            self.keep(trainer)


@pytest.mark.parametrize("epoch, batch", [(1, 0), (1, 3)], ids=["epoch-end", "mid-epoch"])
def test_a_resumed_run_has_every_step_once(tmp_path, digits, epoch, batch):
    """The first run trains past the state it leaves (as a run killed after its
    checkpoint); the resumed one writes the same steps again into the same directory."""
    first, keep = phyll(epochs=2), StateAt(epoch, batch)
    first.fit(*digits, callbacks=[TensorBoardLog(tmp_path, every=2), keep])
    resumed = phyll(epochs=2)
    keep.restore(resumed)
    resumed.fit(*digits, callbacks=[TensorBoardLog(tmp_path, every=2)])
    assert len(list(tmp_path.glob("*tfevents*"))) == 2
    acc = events(tmp_path)
    for tag in acc.Tags()["scalars"]:
        expected = [1, 2] if tag.startswith("epoch/") else list(range(2, 2 * PER_EPOCH + 1, 2))
        assert steps(acc, tag) == expected, tag
    for tag in acc.Tags()["histograms"]:
        assert steps(acc, tag, "histograms") == [1, 2], tag
    last = acc.Scalars("epoch/loss")
    assert sorted((e.step, e.value) for e in last)[-1][1] == pytest.approx(
        resumed.history[-1]["loss"])


def test_a_record_cut_short_by_a_kill_is_dropped_on_resume(tmp_path, digits):
    trainer = backprop(epochs=1)
    trainer.fit(*digits, callbacks=[TensorBoardLog(tmp_path, every=3)])
    (path,) = tmp_path.glob("*tfevents*")
    whole = path.read_bytes()
    path.write_bytes(whole + whole[-40:-10])  # half a record, as a killed writer leaves
    trainer.config.epochs = 2
    trainer.fit(*digits, callbacks=[TensorBoardLog(tmp_path, every=3)])
    assert path.read_bytes() == whole
    assert steps(events(tmp_path), "epoch/loss") == [1, 2]


def test_a_fresh_fit_of_a_finished_directory_replaces_its_events(tmp_path, digits):
    backprop(epochs=1).fit(*digits, callbacks=[TensorBoardLog(tmp_path, every=3)])
    backprop(epochs=2).fit(*digits, callbacks=[TensorBoardLog(tmp_path, every=3)])
    acc = events(tmp_path)
    assert steps(acc, "epoch/loss") == [1, 2]
    assert steps(acc, "batch/loss") == list(range(3, 2 * PER_EPOCH + 1, 3))


def test_without_tensorboard_it_warns_once_and_trains(tmp_path, digits, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    trainer, log = backprop(epochs=1), TensorBoardLog(tmp_path / "run", every=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = trainer.fit(*digits, callbacks=[log])
    messages = [str(w.message) for w in caught if "tensorboard" in str(w.message)]
    assert len(messages) == 1 and "pip install physnn[tensorboard]" in messages[0]
    assert len(history) == 1 and not (tmp_path / "run").exists()
    layer = trainer.network.layers[0].physics
    assert not layer._forward_hooks and "measure" not in vars(layer)


def test_hooks_are_removed_when_training_raises(tmp_path, digits):
    class Boom(Callback):
        def on_batch_end(self, trainer, batch):
            raise RuntimeError("boom")

    trainer = phyll(epochs=1)
    with pytest.raises(RuntimeError, match="boom"):
        trainer.fit(*digits, callbacks=[TensorBoardLog(tmp_path, every=1), Boom()])
    for block in trainer.network.layers:
        assert not block.physics._forward_hooks and "measure" not in vars(block.physics)
    assert steps(events(tmp_path), "batch/loss") == [1]


@pytest.mark.parametrize("kwargs, match", [
    ({"log_dir": None}, "log_dir must be a directory path"),
    ({"log_dir": ""}, "log_dir must be a directory path"),
    ({"log_dir": "x", "every": -1}, "every must be an int >= 0"),
    ({"log_dir": "x", "every": True}, "every must be an int >= 0"),
    ({"log_dir": "x", "every": 2.5}, "every must be an int >= 0"),
])
def test_bad_arguments_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TensorBoardLog(**kwargs)


def test_a_log_dir_that_cannot_be_made_is_named_before_training(tmp_path, digits):
    blocker = tmp_path / "file"
    blocker.write_text("")
    trainer = backprop(epochs=1)
    with pytest.raises(ValueError, match=r"log_dir .*file/run: cannot make the directory"):
        trainer.fit(*digits, callbacks=[TensorBoardLog(blocker / "run")])
    assert trainer.history == [] and trainer.last_loss is None


def test_importing_the_module_does_not_import_tensorboard():
    code = ("import sys, phys.runs, phys.runs.tensorboard; "
            "print(sorted(m for m in sys.modules if 'tensorboard' in m and "
            "not m.startswith('phys')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.strip() == "[]"
