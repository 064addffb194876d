"""The shared training loop: tensors or a DataLoader give the same training, callbacks
are called as documented, a DataLoader resumes within an epoch by skipping."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from phys.train.base import TrainConfig
from phys.train.batches import EpochShuffle
from phys.train.callbacks import Callback
from phys.train.supervised import SupervisedTrainer, drawing_from

N, FEATURES, CLASSES = 100, 6, 3


def task() -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(N + 40, FEATURES, generator=gen)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    return x[:N], y[:N], x[N:], y[N:]


def trainer(seed: int = 4, **options) -> SupervisedTrainer:
    with drawing_from(torch.Generator().manual_seed(seed)):
        model = nn.Sequential(nn.Linear(FEATURES, 16), nn.ReLU(), nn.Linear(16, CLASSES))
    config = TrainConfig(**{"epochs": 3, "batch_size": 16, "lr": 5e-2, "seed": seed,
                            **options})
    return SupervisedTrainer(model, CLASSES, FEATURES, config)


def loader(x, y, seed: int, batch_size: int = 16, shuffle: bool = True) -> DataLoader:
    sampler = EpochShuffle(len(x), torch.Generator().manual_seed(seed)) if shuffle else None
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, sampler=sampler,
                      generator=torch.Generator())


def assert_same(a: SupervisedTrainer, b: SupervisedTrainer) -> None:
    for key, tensor in a.network.state_dict().items():
        assert torch.equal(tensor, b.network.state_dict()[key]), key
    strip = [[{k: v for k, v in row.items() if k != "seconds"} for row in t.history]
             for t in (a, b)]
    assert strip[0] == strip[1]


@pytest.mark.parametrize("accuracy", ["running", "eval"])
def test_a_seeded_dataloader_trains_exactly_as_tensors(accuracy) -> None:
    x, y, x_te, y_te = task()
    options = {"train_accuracy": accuracy, "train_eval_samples": None}
    with_tensors, with_loader = trainer(**options), trainer(**options)
    with_tensors.fit(x, y, x_te, y_te)
    if accuracy == "running":
        with_loader.fit(loader(x, y, seed=4), x_test=loader(x_te, y_te, 0, shuffle=False))
    else:
        with_loader.fit(loader(x, y, seed=4), x_test=[(x_te, y_te)])
    assert with_tensors.history[-1]["test_accuracy"] > 0.6  # it learns something
    if accuracy == "eval":  # evaluating a pass over a shuffling loader draws its next order
        assert with_tensors.history[0] == {**with_loader.history[0],
                                           "seconds": with_tensors.history[0]["seconds"]}
        return
    assert_same(with_tensors, with_loader)
    other = trainer(**options)
    other.fit(loader(x, y, seed=5), x_test=[(x_te, y_te)])  # another order: other weights
    assert not torch.equal(other.network[0].weight, with_tensors.network[0].weight)


class Counting(Callback):
    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.batches: list[int] = []

    def count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def on_fit_start(self, trainer) -> None:
        self.count("fit_start")

    def on_batch_end(self, trainer, batch) -> None:
        self.count("batch_end")
        self.batches.append(batch)

    def on_epoch_end(self, trainer, row) -> None:
        self.count("epoch_end")
        assert row is trainer.history[-1] and row["epoch"] == trainer.epoch

    def on_fit_end(self, trainer) -> None:
        self.count("fit_end")

    def wrap(self, trainer, kind, call):
        self.count(kind)
        return call()


def test_callbacks_are_called_the_documented_number_of_times() -> None:
    x, y, x_te, y_te = task()
    first, second = Counting(), Counting()
    t = trainer(train_accuracy="eval", train_eval_samples=30)
    t.fit(x, y, x_te, y_te, callbacks=[first, second])
    batches = 7  # 100 samples in batches of 16
    # per epoch: one eval chunk of the 30 training samples and one of the 40 test samples
    expected = {"fit_start": 1, "fit_end": 1, "epoch_end": 3, "batch_end": 3 * batches,
                "step": 3 * batches, "predict": 3 * 2}
    assert first.calls == expected and second.calls == expected
    assert first.batches == list(range(1, batches + 1)) * 3


def test_fit_end_is_called_when_training_raises() -> None:
    class Boom(Exception):
        pass

    class Raise(Callback):
        def on_batch_end(self, trainer, batch):
            if batch == 2:
                raise Boom

    x, y, _, _ = task()
    counting = Counting()
    with pytest.raises(Boom):
        trainer().fit(x, y, callbacks=[counting, Raise()])
    assert counting.calls["fit_end"] == 1 and counting.calls["batch_end"] == 2


def test_a_dataloader_resumes_within_an_epoch_by_skipping_the_batches_done() -> None:
    x, y, x_te, y_te = task()
    whole = trainer()
    whole.fit(loader(x, y, 0, shuffle=False), x_test=[(x_te, y_te)])

    class Stop(Exception):
        pass

    class StopAt(Callback):
        def on_batch_end(self, trainer, batch):
            if trainer.epoch == 1 and batch == 3:
                self.state = trainer.state_dict()
                raise Stop

    stop, cut = StopAt(), trainer()
    with pytest.raises(Stop):
        cut.fit(loader(x, y, 0, shuffle=False), x_test=[(x_te, y_te)], callbacks=[stop])
    resumed = trainer()
    resumed.load_state_dict(stop.state)
    assert resumed.batches_done == 3 and resumed.epoch == 1
    resumed.fit(loader(x, y, 0, shuffle=False), x_test=[(x_te, y_te)])
    assert_same(whole, resumed)


def test_bad_data_is_refused_with_the_argument_named() -> None:
    x, y, _, _ = task()
    t = trainer()
    with pytest.raises(ValueError, match="x is a tensor: give its labels too"):
        t.fit(x)
    with pytest.raises(ValueError, match="not a one-shot iterator|re-iterable"):
        t.fit(iter([(x, y)]))
    with pytest.raises(ValueError, match=r"x: batch 1's features must be a tensor \(N, 6\)"):
        t.fit([(x[:10], y[:10]), (x[:10, :2], y[:10])])
    with pytest.raises(ValueError, match="labels must be int64 in 0..2"):
        t.fit([(x[:10], y[:10] + 5)])
    with pytest.raises(ValueError, match="x gave no batches"):
        t.fit([])

    class LossOnly(SupervisedTrainer):
        step_reports_correct = False

    model = nn.Linear(FEATURES, CLASSES)
    quiet = LossOnly(model, CLASSES, FEATURES, TrainConfig(train_accuracy="running"))
    with pytest.raises(ValueError, match="train_accuracy='running' needs a trainer whose"):
        quiet.fit(x, y)
