"""What every trainer shares: the epoch loop, evaluation, bookkeeping and checkpoints.

A trainer implements :meth:`Trainer.train_step` (one update on a batch) and
:meth:`Trainer.predict` (labels for a batch). :meth:`Trainer.fit` then reports, after
every epoch, the same metrics for every training method: loss, accuracies, device
queries and samples, digital FLOPs, wall seconds and estimated lab seconds.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from phys.device import Device
from phys.flops import FlopMeter
from phys.options import Options, option

__all__ = ["TrainConfig", "Trainer", "check_data"]

SCHEDULES = ("constant", "cosine")


@dataclass
class TrainConfig(Options):
    """Options every trainer takes (each field's help says what it does)."""

    epochs: int = option(10, min=1, help="train until this many epochs are done (a resumed "
                         "trainer continues)")
    batch_size: int = option(64, min=1, help="samples per step")
    lr: float = option(1e-3, min=1e-12, help="Adam learning rate (the peak, with a schedule)")
    schedule: str = option("constant", choices=SCHEDULES,
                           help="learning-rate schedule: constant, or cosine (anneals every "
                                "rate to 0 over the epochs; depends on the epoch only)")
    weight_decay: float = option(0.0, min=0.0, help="Adam weight decay")
    count_flops: bool = option(False, help="measure digital FLOPs of training with "
                               "torch.utils.flop_counter (slower; physical queries never count)")
    seed: int = option(0, min=0, help="seeds batch order and any sampling the trainer does")
    train_eval_samples: int | None = option(
        10_000, min=1, help="training accuracy after each epoch is measured on a fixed random "
        "subset of this many training samples (None: all), since evaluation queries the "
        "device too")


def check_data(x: Any, labels: Any, n_features: int, n_classes: int) -> None:
    """Raise ``ValueError`` unless ``x (N, n_features)`` is finite and ``labels (N,)`` are
    int64 in ``0 .. n_classes - 1``."""
    if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[1] != n_features:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"features must be a tensor (N, {n_features}), got {shape}")
    if not torch.isfinite(x).all():
        raise ValueError("features contain NaN or Inf")
    if not isinstance(labels, torch.Tensor) or labels.shape != (x.shape[0],):
        raise ValueError(f"labels must be a tensor ({x.shape[0]},) matching the features")
    if labels.dtype != torch.int64 or labels.min() < 0 or labels.max() >= n_classes:
        raise ValueError(f"labels must be int64 in 0..{n_classes - 1}")


class Trainer(ABC):
    """Base of the trainers.

    Subclasses set ``self.network`` (an ``nn.Module`` with a ``layers`` list of
    :class:`~phys.PhysicalLayer`), ``self.optimizers`` and the ints ``n_features`` and
    ``n_classes``, then implement :meth:`train_step` and :meth:`predict`.
    """

    network: nn.Module
    optimizers: list[torch.optim.Optimizer]
    n_features: int
    n_classes: int

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.generator = torch.Generator().manual_seed(config.seed)
        self.epoch = 0
        self.history: list[dict[str, float]] = []
        self.flops = FlopMeter()
        self._eval_usage: dict[str, float] = {
            "device_queries": 0, "device_samples": 0, "device_wall_seconds": 0.0,
            "lab_seconds": 0.0, "joules": 0.0}
        #: Runs every call that queries devices, as ``guard(kind, call)`` with ``kind``
        #: ``"step"`` (a training step) or ``"predict"`` (a batch of :meth:`evaluate`);
        #: :mod:`phys.runs` uses it to survive a device that stops answering.
        self.guard: Callable[[str, Callable[[], Any]], Any] | None = None
        self._progress: dict[str, Any] | None = None  # within an epoch: order, batches done

    # -- what a trainer implements ----------------------------------------------------
    @abstractmethod
    def train_step(self, x: torch.Tensor, labels: torch.Tensor) -> float:
        """Update on one batch ``x (B, n_features)``, ``labels (B,)``; returns the loss."""

    @abstractmethod
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Predicted labels ``(B,)`` for ``x (B, n_features)``."""

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

    def _step(self, x: torch.Tensor, labels: torch.Tensor) -> float:
        def step() -> float:
            if not self.config.count_flops:
                return self.train_step(x, labels)
            with self.flops.count():
                return self.train_step(x, labels)

        return step() if self.guard is None else self.guard("step", step)

    def fit(
        self,
        x: torch.Tensor,
        labels: torch.Tensor,
        x_test: torch.Tensor | None = None,
        labels_test: torch.Tensor | None = None,
        *,
        on_epoch: Callable[[dict[str, float]], None] | None = None,
        on_batch: Callable[[int], None] | None = None,
        progress: bool = False,
    ) -> list[dict[str, float]]:
        """Train until ``config.epochs`` epochs are done.

        Args:
            x: Training features ``(N, n_features)``.
            labels: Training labels ``(N,)``, int64 in ``0 .. C-1``.
            x_test, labels_test: Optional held-out set evaluated after every epoch.
            on_epoch: Called with each epoch's metrics.
            on_batch: Called with the number of batches done in the epoch after each
                step (:meth:`state_dict` then resumes after that batch).
            progress: Show a tqdm progress bar per epoch.

        Returns:
            One metrics dict per epoch: ``epoch``, ``loss``, ``train_accuracy`` (see
            ``config.train_eval_samples``),
            ``test_accuracy`` (with a test set), ``seconds`` (of the epoch) and the
            running totals of :meth:`device_usage`.
        """
        check_data(x, labels, self.n_features, self.n_classes)
        if x_test is not None:
            check_data(x_test, labels_test, self.n_features, self.n_classes)
        from tqdm.auto import tqdm

        cfg = self.config
        n = x.shape[0]
        train_eval = slice(None)
        if cfg.train_eval_samples is not None and cfg.train_eval_samples < n:
            pick = torch.Generator().manual_seed(cfg.seed)
            train_eval = torch.randperm(n, generator=pick)[:cfg.train_eval_samples]
        while self.epoch < cfg.epochs:
            t0 = time.perf_counter()
            self._set_learning_rate()
            starts = range(0, n, cfg.batch_size)
            if self._progress is None:  # a new epoch
                order, done, losses = torch.randperm(n, generator=self.generator), 0, []
                self._progress = {"order": order, "batches": 0, "losses": losses,
                                  "seconds": 0.0}
            else:  # resumed from a state taken within this epoch
                order, done = self._progress["order"], int(self._progress["batches"])
                losses, t0 = list(self._progress["losses"]), t0 - self._progress["seconds"]
                if order.shape != (n,) or not 0 <= done <= len(starts):
                    raise ValueError(f"the resumed epoch ordered {order.shape[0]} samples, "
                                     f"this data has {n}")
            # updated by hand: a tqdm iterator closes itself before the epoch's metrics
            bar = tqdm(total=len(starts), initial=done, unit="batch", disable=not progress,
                       desc=f"epoch {self.epoch + 1}/{cfg.epochs}", dynamic_ncols=True)
            for batch, start in enumerate(starts[done:], start=done + 1):
                idx = order[start:start + cfg.batch_size]
                losses.append(self._step(x[idx], labels[idx]))
                self._progress = {"order": order, "batches": batch, "losses": losses,
                                  "seconds": time.perf_counter() - t0}
                bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
                bar.update(1)
                if on_batch is not None:
                    on_batch(batch)
            # the epoch counts as done once evaluated: a state taken while evaluating
            # resumes with the evaluation
            row: dict[str, Any] = {
                "epoch": self.epoch + 1,
                "loss": sum(losses) / len(losses),
                "train_accuracy": self.evaluate(x[train_eval], labels[train_eval]),
            }
            if x_test is not None:
                row["test_accuracy"] = self.evaluate(x_test, labels_test)
            row["seconds"] = time.perf_counter() - t0
            usage = self.device_usage()
            for key in ("device_queries", "device_samples", "lab_seconds", "digital_flops"):
                if usage[key] is not None:
                    row[key] = usage[key]
            bar.set_postfix({name: f"{row[key]:.3f}" for key, name in (
                ("loss", "loss"), ("train_accuracy", "train"), ("test_accuracy", "test"))
                if key in row})
            bar.close()
            self._progress = None
            self.epoch += 1
            self.history.append(row)
            if on_epoch is not None:
                on_epoch(row)
        return self.history

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, labels: torch.Tensor, batch_size: int = 1024) -> float:
        """Accuracy of :meth:`predict` on ``x``; its device use is kept apart from
        training's in :meth:`device_usage`."""
        before = self._device_totals()
        correct = 0
        for start in range(0, x.shape[0], batch_size):
            chunk = x[start:start + batch_size]
            pred = (self.predict(chunk) if self.guard is None
                    else self.guard("predict", lambda chunk=chunk: self.predict(chunk)))
            correct += int((pred == labels[start:start + batch_size]).sum())
        after = self._device_totals()
        for key in self._eval_usage:
            if after[key] is not None:
                self._eval_usage[key] += after[key] - (before[key] if before[key] is not None
                                                       else 0)
        return correct / max(1, x.shape[0])

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
