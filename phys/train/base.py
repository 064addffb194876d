"""What every trainer shares: the epoch loop, evaluation, bookkeeping and checkpoints.

A trainer implements :meth:`Trainer.train_step` (one update on a batch) and
:meth:`Trainer.predict` (labels for a batch). :meth:`Trainer.fit` then reports, after
every epoch, the same metrics for every training method: loss, accuracies, device
queries and samples, digital FLOPs, wall seconds and estimated lab seconds. What else
happens during training (checkpoints, progress reports, handling a lost device) is a
:class:`~phys.train.callbacks.Callback`.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from phys.device import Device
from phys.flops import FlopMeter
from phys.options import Options, option
from phys.train import batches
from phys.train.batches import check_data
from phys.train.callbacks import Callback, CallbackList
from phys.train.progress import progress_callback

__all__ = ["TrainConfig", "Trainer", "check_data"]

#: What :meth:`Trainer.fit` takes as data: tensors with their labels, or a re-iterable of
#: ``(x, labels)`` batches with ``labels=None``.
Data = torch.Tensor | Iterable[tuple[torch.Tensor, torch.Tensor]]
Batches = Iterator[tuple[torch.Tensor, torch.Tensor]]

SCHEDULES = ("constant", "cosine")
TRAIN_ACCURACY = ("eval", "running")


@dataclass
class TrainConfig(Options):
    """Options every trainer takes (each field's help says what it does)."""

    epochs: int = option(20, min=1, max=100_000, help="train until this many epochs are "
                         "done (a resumed trainer continues)")
    batch_size: int = option(64, min=1, max=1_000_000, help="samples per step")
    lr: float = option(1e-3, min=1e-12, help="Adam learning rate (the peak, with a schedule)")
    schedule: str = option("constant", choices=SCHEDULES,
                           help="learning-rate schedule: constant, or cosine (anneals every "
                                "rate to 0 over the epochs; depends on the epoch only)")
    weight_decay: float = option(0.0, min=0.0, help="Adam weight decay")
    count_flops: bool = option(False, help="measure digital FLOPs of training with "
                               "torch.utils.flop_counter (slower; physical queries never count)")
    seed: int = option(0, min=0, max=2**62,
                       help="seeds batch order and any sampling the trainer does")
    train_accuracy: str = option(
        "eval", choices=TRAIN_ACCURACY, help="the training accuracy after each epoch: eval "
        "(predictions on train_eval_samples training samples, which queries the device) or "
        "running (the predictions the epoch's training steps made; for trainers whose "
        "train_step reports them)")
    train_eval_samples: int | None = option(
        10_000, min=1, help="training accuracy after each epoch is measured on a fixed random "
        "subset of this many training samples (None: all), since evaluation queries the "
        "device too")
    eval_every: int = option(1, min=1, max=100_000, help="measure the accuracies every this "
                             "many epochs, and after the last (evaluation queries the device)")
    eval_samples: int | None = option(
        None, min=1, help="test accuracy is measured on a fixed random subset of this many "
        "test samples (None: all)")


class Trainer(ABC):
    """Base of the trainers.

    Subclasses set ``self.network`` (an ``nn.Module``; its submodules' ``device``
    attributes are the devices trained with), ``self.optimizers``, ``n_features`` (an
    int, or the shape of one sample) and ``n_classes``, then implement
    :meth:`train_step` and :meth:`predict`.
    """

    network: nn.Module
    optimizers: list[torch.optim.Optimizer]
    n_features: int | tuple[int, ...]
    n_classes: int
    #: Whether :meth:`train_step` returns ``(loss, correct predictions)`` (needed for
    #: ``train_accuracy="running"``) instead of the loss alone.
    step_reports_correct: bool = False
    #: What :attr:`last_loss` is, in words (plots label their loss axis with it).
    loss_label: str = "loss"

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.generator = torch.Generator().manual_seed(config.seed)
        self.epoch = 0
        self.history: list[dict[str, float]] = []
        self.flops = FlopMeter()
        self._eval_usage: dict[str, float] = {
            "device_queries": 0, "device_samples": 0, "device_wall_seconds": 0.0,
            "lab_seconds": 0.0, "joules": 0.0}
        #: Batches in an epoch of the data being fitted (``None``: not known).
        self.batches_per_epoch: int | None = None
        #: The loss of the latest training step (``None`` before the first).
        self.last_loss: float | None = None
        #: The latest training step's loss of each layer, for trainers that train layers
        #: by local losses (``None``: one loss for the whole network).
        self.layer_losses: list[float] | None = None
        self._callbacks = CallbackList()  # those of the running fit
        self._progress: dict[str, Any] | None = None  # within an epoch: order, batches done

    # -- what a trainer implements ----------------------------------------------------
    @abstractmethod
    def train_step(self, x: torch.Tensor, labels: torch.Tensor) -> float | tuple[float, int]:
        """Update on one batch ``x (B, *n_features)``, ``labels (B,)``; returns the loss
        (and the number of correct predictions, see :attr:`step_reports_correct`)."""

    @abstractmethod
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Predicted labels ``(B,)`` for ``x (B, *n_features)``."""

    # -- bookkeeping ------------------------------------------------------------------
    def devices(self) -> list[Device]:
        """The distinct devices held by the network's modules (as a ``device``
        attribute), in module order."""
        seen: dict[int, Device] = {}
        for module in self.network.modules():
            device = getattr(module, "device", None)
            if isinstance(device, Device):
                seen.setdefault(id(device), device)
        return list(seen.values())

    def _device_totals(self) -> dict[str, float | None]:
        stats = [d.stats for d in self.devices()]
        lab = [s.lab_seconds for s in stats if s.lab_seconds is not None]
        joules = [s.joules for s in stats if s.joules is not None]
        return {
            "device_queries": sum(s.queries for s in stats),
            "device_samples": sum(s.samples for s in stats),
            "device_wall_seconds": sum(s.wall_seconds for s in stats),
            "lab_seconds": sum(lab) if lab else None,
            "joules": sum(joules) if joules else None,
        }

    def device_usage(self) -> dict[str, float | None]:
        """What training cost: device round trips, samples, wall and lab seconds, joules
        (summed over :meth:`devices`, including queries made before training, such as a
        twin's fitting) and digital FLOPs. Queries made by :meth:`evaluate` are left out
        and reported as ``eval_device_queries`` and ``eval_device_samples``."""
        usage = self._device_totals()
        for key, spent in self._eval_usage.items():
            if usage[key] is not None:
                usage[key] -= spent
        usage["digital_flops"] = self.flops.total if self.config.count_flops else None
        usage["eval_device_queries"] = self._eval_usage["device_queries"]
        usage["eval_device_samples"] = self._eval_usage["device_samples"]
        return usage

    @property
    def batches_done(self) -> int:
        """Batches done in the current epoch (0 between epochs)."""
        return 0 if self._progress is None else int(self._progress["batches"])

    # -- training ---------------------------------------------------------------------
    def _set_learning_rate(self) -> None:
        cfg = self.config
        factor = 1.0
        if cfg.schedule == "cosine":
            factor = 0.5 * (1 + math.cos(math.pi * self.epoch / cfg.epochs))
        for opt in self.optimizers:
            for group in opt.param_groups:
                group.setdefault("initial_lr", group["lr"])
                group["lr"] = group["initial_lr"] * factor

    def _step(self, x: torch.Tensor, labels: torch.Tensor) -> float | tuple[float, int]:
        def step() -> float | tuple[float, int]:
            if not self.config.count_flops:
                return self.train_step(x, labels)
            with self.flops.count():
                return self.train_step(x, labels)

        return self._callbacks.wrap(self, "step", step)

    def fit(
        self,
        x: Data,
        labels: torch.Tensor | None = None,
        x_test: Data | None = None,
        labels_test: torch.Tensor | None = None,
        *,
        callbacks: Sequence[Callback] = (),
        progress: bool | None = False,
    ) -> list[dict[str, float]]:
        """Train until ``config.epochs`` epochs are done.

        Args:
            x: Training features ``(N, *n_features)`` with ``labels``, or a re-iterable of
                ``(x, labels)`` batches (a ``torch.utils.data.DataLoader``, a list) with
                ``labels=None``.
            labels: Training labels ``(N,)``, int64 in ``0 .. C-1``.
            x_test, labels_test: Optional held-out set, in either form.
            callbacks: :class:`~phys.train.callbacks.Callback` objects, called in order.
            progress: A progress bar per epoch on a terminal or in a notebook; else a
                line per epoch to the logger ``phys.progress`` (``None``: neither).

        Returns:
            One metrics dict per epoch: ``epoch``, ``loss`` (mean over the batches),
            ``train_accuracy`` (see ``config.train_accuracy``), ``test_accuracy`` (with a
            test set), ``seconds`` (of the epoch) and the running totals of
            :meth:`device_usage`. The accuracies are in the rows of the epochs that
            :meth:`evaluates`.

        Tensors are shuffled each epoch by ``torch.randperm`` from the trainer's
        generator; an iterable orders its batches itself (with
        :class:`~phys.train.batches.EpochShuffle`, a ``DataLoader`` gives the tensors'
        batches). A state taken within an epoch (:meth:`state_dict`) resumes after the
        batches done: tensors in the saved order; an iterable is iterated again and as
        many batches as were done are drawn and skipped (exact when it gives the same
        batches again: no shuffling, or a sampler generator restored by the caller).

        Raises:
            ValueError: bad data (checked before any step: tensors whole, an iterable's
                batches one by one), or ``train_accuracy="running"`` with a trainer whose
                steps do not report their predictions.
        """
        cfg = self.config
        train = batches.source(x, labels, self.n_features, self.n_classes, cfg.batch_size)
        test = None if x_test is None else batches.source(
            x_test, labels_test, self.n_features, self.n_classes, 1024, "x_test")
        if cfg.train_accuracy == "running" and not self.step_reports_correct:
            raise ValueError(f"train_accuracy='running' needs a trainer whose train_step "
                             f"reports its correct predictions; {type(self).__name__} does "
                             f"not (use train_accuracy='eval')")
        calls = self._callbacks = CallbackList([*callbacks, progress_callback(progress)])
        calls.on_fit_start(self)
        try:
            while self.epoch < cfg.epochs:
                row = self._fit_epoch(train, test)
                calls.on_epoch_end(self, row)
        finally:
            self._callbacks = CallbackList()
            calls.on_fit_end(self)
        return self.history

    def _fit_epoch(self, train: batches.TensorBatches | batches.IterableBatches,
                   test: batches.TensorBatches | batches.IterableBatches | None
                   ) -> dict[str, Any]:
        """Train and evaluate one epoch (the rest of one, when resumed within it)."""
        self._set_learning_rate()
        t0 = self._begin_epoch(train, time.perf_counter())
        done = int(self._progress["batches"])
        self.batches_per_epoch = train.n_batches
        for x, labels in train.epoch(self._progress["order"], done):
            self._train_batch(x, labels, t0)
            self._callbacks.on_batch_end(self, int(self._progress["batches"]))
        if not self._progress["losses"]:
            raise ValueError(f"{getattr(train, 'name', 'x')} gave no batches")
        # the epoch counts as done once evaluated: a state taken while evaluating
        # resumes with the evaluation
        row = self._epoch_row(train, test, t0)
        self._progress = None
        self.epoch += 1
        self.history.append(row)
        return row

    def evaluates(self, epoch: int) -> bool:
        """Whether the accuracies are measured after ``epoch`` (1-based): every
        ``config.eval_every``-th epoch and the last."""
        return epoch % self.config.eval_every == 0 or epoch >= self.config.epochs

    def _begin_epoch(self, train: batches.TensorBatches | batches.IterableBatches,
                     t0: float) -> float:
        """Start an epoch's progress, or check the one resumed; returns the epoch's start
        time (earlier by the seconds already spent in a resumed epoch)."""
        if self._progress is None:
            self._progress = {"order": train.new_order(self.generator), "batches": 0,
                              "losses": [], "seconds": 0.0, "correct": 0, "samples": 0}
            return t0
        progress = self._progress
        progress.setdefault("correct", 0)
        progress.setdefault("samples", 0)
        train.check_resume(progress["order"], int(progress["batches"]))
        return t0 - float(progress["seconds"])

    @property
    def torch_device(self) -> torch.device:
        """Where the network's parameters are (batches are moved there)."""
        for tensor in self.network.parameters():
            return tensor.device
        return torch.device("cpu")

    def _train_batch(self, x: torch.Tensor, labels: torch.Tensor, t0: float) -> float:
        """One step, recorded in the epoch's progress; returns its loss."""
        where = self.torch_device
        out = self._step(x.to(where), labels.to(where))
        loss, correct = out if isinstance(out, tuple) else (out, 0)
        progress = self._progress  # read after the step: a guard may have restored it
        progress["losses"].append(float(loss))
        progress["batches"] = int(progress["batches"]) + 1
        progress["correct"] = int(progress["correct"]) + int(correct)
        progress["samples"] = int(progress["samples"]) + int(x.shape[0])
        progress["seconds"] = time.perf_counter() - t0
        self.last_loss = float(loss)
        return self.last_loss

    def _epoch_row(self, train: batches.TensorBatches | batches.IterableBatches,
                   test: batches.TensorBatches | batches.IterableBatches | None,
                   t0: float) -> dict[str, Any]:
        cfg, progress = self.config, self._progress
        losses = progress["losses"]
        row: dict[str, Any] = {"epoch": self.epoch + 1, "loss": sum(losses) / len(losses)}
        if cfg.train_accuracy == "running":
            row["train_accuracy"] = int(progress["correct"]) / max(1, int(progress["samples"]))
        elif self.evaluates(self.epoch + 1):
            self._callbacks.on_evaluate(self, "train", cfg.train_eval_samples)
            row["train_accuracy"] = self._accuracy(
                train.for_evaluation(cfg.train_eval_samples, cfg.seed))
        if test is not None and self.evaluates(self.epoch + 1):
            self._callbacks.on_evaluate(self, "test", cfg.eval_samples)
            row["test_accuracy"] = self._accuracy(test.for_evaluation(cfg.eval_samples,
                                                                      cfg.seed))
        row["seconds"] = time.perf_counter() - t0
        usage = self.device_usage()
        for key in ("device_queries", "device_samples", "lab_seconds", "digital_flops"):
            if usage[key] is not None:
                row[key] = usage[key]
        return row

    def evaluate(self, x: torch.Tensor, labels: torch.Tensor, batch_size: int = 1024) -> float:
        """Accuracy of :meth:`predict` on ``x``; its device use is kept apart from
        training's in :meth:`device_usage`."""
        return self._accuracy(batches.chunks(x, labels, batch_size))

    @torch.no_grad()
    def _accuracy(self, pairs: Batches) -> float:
        before = self._device_totals()
        correct = total = 0
        where = self.torch_device
        for x, labels in pairs:
            x = x.to(where)
            pred = self._callbacks.wrap(self, "predict", lambda x=x: self.predict(x))
            correct += int((pred.to(labels.device) == labels).sum())
            total += x.shape[0]
        after = self._device_totals()
        for key in self._eval_usage:
            if after[key] is not None:
                self._eval_usage[key] += after[key] - (before[key] if before[key] is not None
                                                       else 0)
        return correct / max(1, total)

    # -- checkpoints ------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume; loadable with ``torch.load(weights_only=True)``."""
        return {
            "model": self.network.state_dict(),
            "optimizers": [opt.state_dict() for opt in self.optimizers],
            "generator": self.generator.get_state(),
            "epoch": self.epoch,
            "digital_flops": self.flops.total,
            "eval_usage": dict(self._eval_usage),
            "config": self.config.as_dict(),
            "history": self.history,
            # within an epoch: its sample order and the batches done (None between epochs)
            "progress": None if self._progress is None else {
                **self._progress, "losses": list(self._progress["losses"])},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.network.load_state_dict(state["model"])
        if len(state["optimizers"]) != len(self.optimizers):
            raise ValueError(
                f"checkpoint has {len(state['optimizers'])} optimisers, this trainer "
                f"{len(self.optimizers)}"
            )
        for opt, s in zip(self.optimizers, state["optimizers"], strict=True):
            opt.load_state_dict(s)
        self.generator.set_state(state["generator"])
        self.epoch = int(state["epoch"])
        self.flops.total = int(state["digital_flops"])
        self._eval_usage = dict(state["eval_usage"])
        self.history = list(state["history"])
        progress = state.get("progress")
        self._progress = None if progress is None else {
            **progress, "losses": list(progress["losses"])}
