"""Physical local learning (PhyLL): model-free forward-forward training.

Momeni et al., Science 382:1297 (2023). Each :class:`~phys.PhysicalLayer` learns from
a local goodness on positive inputs (the true label embedded) and negative inputs (a
wrong label embedded). The physics is only queried: the loss depends on the trainable
digital weights through digital operations alone, with the measurement a constant, so
no model of the physics and no backpropagation through it is needed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from phys.device import Device
from phys.layers import PhysicalLayer

__all__ = ["PhyLLConfig", "PhyLLNetwork", "PhyLLTrainer", "wrong_labels"]

GOODNESS = ("cosine", "meansquare")
LOSSES = ("contrast", "threshold")
NEGATIVES = ("random", "all")
READOUTS = ("goodness", "linear")
SCHEDULES = ("constant", "cosine")


@dataclass
class PhyLLConfig:
    """Hyper-parameters of :class:`PhyLLTrainer`.

    Args:
        epochs: Passes over the training set.
        batch_size: Positive samples per step.
        lr: Adam learning rate of every layer's optimiser (the peak, with a schedule).
        schedule: ``"constant"`` or ``"cosine"`` (anneals the learning rate from ``lr``
            to 0 over ``epochs``; it depends on the epoch number only, so a resumed run
            continues it).
        weight_decay: Adam weight decay.
        goodness: ``"cosine"`` (PhyLL: cos(y, xi) with a fixed random xi per layer) or
            ``"meansquare"`` (Hinton: mean(y^2)).
        loss: ``"contrast"``: softplus(-theta (g_pos - g_neg)); ``"threshold"``:
            Hinton's softplus(-(g_pos - threshold)) + softplus(g_neg - threshold).
        theta: Sharpness of the contrast loss (the PhyLL paper uses about 4; 8 is
            better on digits).
        threshold: Goodness threshold of Hinton's loss.
        negatives: ``"random"``: one random wrong label per sample and step;
            ``"all"``: every wrong label (C - 1 negatives per sample).
        label_scale: Value of the hot entry of the one-hot label embedding.
        readout_lr: Adam learning rate of the linear readout (a convex problem on
            features that keep moving, so it is given a larger rate).
        readout: ``"goodness"``: predict the label with the largest goodness summed
            over layers (C queries per sample and layer); ``"linear"``: a softmax
            classifier on the layers' outputs for a neutral label (1 query).
        seed: Seeds negative sampling and batch order.
    """

    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    schedule: str = "constant"
    weight_decay: float = 0.0
    goodness: str = "cosine"
    loss: str = "contrast"
    theta: float = 8.0
    threshold: float = 2.0
    negatives: str = "all"
    label_scale: float = 3.0
    readout: str = "goodness"
    readout_lr: float = 1e-2
    seed: int = 0

    def __post_init__(self) -> None:
        for key, allowed in (("goodness", GOODNESS), ("loss", LOSSES),
                             ("negatives", NEGATIVES), ("readout", READOUTS),
                             ("schedule", SCHEDULES)):
            if getattr(self, key) not in allowed:
                raise ValueError(f"{key} must be one of {allowed}, got {getattr(self, key)!r}")
        for key in ("epochs", "batch_size"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def wrong_labels(labels: torch.Tensor, n_classes: int, generator: torch.Generator) -> torch.Tensor:
    """One uniformly random label per sample that is never the sample's own.

    Shape: ``(B,) -> (B,)``. Adding an offset in ``1 .. C-1`` modulo ``C`` can never
    return the true label (the bug of shuffling labels to make negatives).
    """
    offset = torch.randint(1, n_classes, labels.shape, generator=generator)
    return (labels + offset) % n_classes


def all_wrong_labels(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Every wrong label: ``(B,) -> (B, C - 1)``."""
    offsets = torch.arange(1, n_classes)
    return (labels.unsqueeze(1) + offsets) % n_classes


class PhyLLNetwork(nn.Module):
    """A stack of :class:`~phys.PhysicalLayer` trained layer-locally.

    Args:
        layers: Physical layers; layer ``i + 1`` takes layer ``i``'s output. The first
            takes ``n_features + n_classes`` inputs (features and label embedding).
        n_classes: Number of labels ``C``.
        label_scale: Hot value of the one-hot label embedding.
        seed: Seeds the fixed goodness directions ``xi``.

    Shape:
        - ``goodness(x, labels)``: ``(B, n_features), (B,) -> (B, n_layers)``.
        - ``predict(x)``: ``(B, n_features) -> (B,)``.
    """

    def __init__(self, layers: Sequence[PhysicalLayer], n_classes: int, *,
                 label_scale: float = 1.0, goodness: str = "cosine", seed: int = 0) -> None:
        super().__init__()
        if not layers:
            raise ValueError("a PhyLLNetwork needs at least one layer")
        for i in range(1, len(layers)):
            if layers[i].in_features != layers[i - 1].out_features:
                raise ValueError(
                    f"layer {i} takes {layers[i].in_features} inputs but layer {i - 1} "
                    f"gives {layers[i - 1].out_features}"
                )
        if n_classes < 2:
            raise ValueError(f"n_classes must be >= 2, got {n_classes}")
        self.layers = nn.ModuleList(layers)
        self.n_classes, self.label_scale, self.goodness_kind = n_classes, label_scale, goodness
        self.n_features = layers[0].in_features - n_classes
        if self.n_features < 1:
            raise ValueError(
                f"the first layer takes {layers[0].in_features} inputs, too few for "
                f"{n_classes} label entries plus features"
            )
        gen = torch.Generator().manual_seed(seed)
        for i, layer in enumerate(layers):
            self.register_buffer(f"xi{i}", torch.randn(layer.out_features, generator=gen))
        width = sum(layer.out_features for layer in layers)
        self.readout = nn.Linear(width, n_classes)

    def embed(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """Append the label embedding; ``labels=None`` appends the neutral label."""
        if labels is None:
            onehot = torch.full((x.shape[0], self.n_classes), self.label_scale / self.n_classes)
        else:
            onehot = F.one_hot(labels, self.n_classes).to(x.dtype) * self.label_scale
        return torch.cat([x, onehot], dim=1)

    def layer_goodness(self, i: int, y: torch.Tensor) -> torch.Tensor:
        """Goodness of layer ``i``'s outputs ``(B, out) -> (B,)``."""
        if self.goodness_kind == "cosine":
            return F.cosine_similarity(y, getattr(self, f"xi{i}").unsqueeze(0), dim=1, eps=1e-8)
        return y.square().mean(dim=1)

    @torch.no_grad()
    def goodness(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Per-layer goodness for ``x`` with ``labels`` embedded: ``(B, n_layers)``."""
        h, scores = self.embed(x, labels), []
        for i, layer in enumerate(self.layers):
            h = layer(h)
            scores.append(self.layer_goodness(i, h))
        return torch.stack(scores, dim=1)

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Concatenated layer outputs for the neutral label: ``(B, sum of widths)``."""
        h, outs = self.embed(x, None), []
        for layer in self.layers:
            h = layer(h)
            outs.append(h)
        return torch.cat(outs, dim=1)

    @torch.no_grad()
    def predict(self, x: torch.Tensor, readout: str = "goodness") -> torch.Tensor:
        """Predicted labels ``(B,)``.

        ``"goodness"`` tries every label (one query per sample, class and layer);
        ``"linear"`` uses the trained linear readout (one query per sample and layer).
        """
        if readout == "linear":
            return self.readout(self.features(x)).argmax(dim=1)
        if readout != "goodness":
            raise ValueError(f"readout must be one of {READOUTS}, got {readout!r}")
        b, c = x.shape[0], self.n_classes
        labels = torch.arange(c).repeat(b)
        scores = self.goodness(x.repeat_interleave(c, dim=0), labels).sum(dim=1)
        return scores.view(b, c).argmax(dim=1)


class PhyLLTrainer:
    """Trains a :class:`PhyLLNetwork` with one optimiser per layer, inputs detached.

    Args:
        network: The network to train (its layers' devices are only queried).
        config: Hyper-parameters.

    Examples::

        >>> import phys
        >>> from phys.data import load
        >>> data = load("digits")
        >>> cavity = phys.open("cavity", n_in=74, n_out=32)
        >>> network = PhyLLNetwork([phys.PhysicalLayer(cavity, 74, 64)], n_classes=10)
        >>> trainer = PhyLLTrainer(network, PhyLLConfig(epochs=2))
        >>> history = trainer.fit(data.x_train, data.y_train, data.x_test, data.y_test)
        >>> trainer.evaluate(data.x_test, data.y_test) > 0.5
        True
    """

    def __init__(self, network: PhyLLNetwork, config: PhyLLConfig | None = None) -> None:
        self.network = network
        self.config = config or PhyLLConfig()
        cfg = self.config
        self.optimizers = [
            torch.optim.Adam(layer.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
            for layer in network.layers
        ]
        self.readout_optimizer = torch.optim.Adam(network.readout.parameters(),
                                                  lr=cfg.readout_lr)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.epoch = 0
        self.history: list[dict[str, float]] = []

    # -- bookkeeping ------------------------------------------------------------------
    def devices(self) -> list[Device]:
        """The distinct devices of the network's layers."""
        seen: dict[int, Device] = {}
        for layer in self.network.layers:
            seen.setdefault(id(layer.device), layer.device)
        return list(seen.values())

    def device_usage(self) -> dict[str, float | None]:
        """Device round trips, samples and lab estimates summed over the layers' devices."""
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

    # -- training ---------------------------------------------------------------------
    def _negatives(self, x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Negative labels and how many per sample (rows grouped per sample)."""
        c = self.network.n_classes
        if self.config.negatives == "all":
            return all_wrong_labels(labels, c).reshape(-1), c - 1
        return wrong_labels(labels, c, self.generator), 1

    def _layer_loss(self, g_pos: torch.Tensor, g_neg: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if cfg.loss == "contrast":
            return F.softplus(-cfg.theta * (g_pos.unsqueeze(1) - g_neg)).mean()
        return F.softplus(cfg.threshold - g_pos).mean() + F.softplus(g_neg - cfg.threshold).mean()

    def train_step(self, x: torch.Tensor, labels: torch.Tensor) -> float:
        """One local update of every layer on a batch; returns the summed layer loss."""
        net = self.network
        neg_labels, k = self._negatives(x, labels)
        b = x.shape[0]
        h = torch.cat([net.embed(x, labels), net.embed(x.repeat_interleave(k, 0), neg_labels)])
        total = 0.0
        for i, (layer, opt) in enumerate(zip(net.layers, self.optimizers, strict=True)):
            measured = layer.measure(h)  # one device round trip for positives and negatives
            out = layer.digital(measured, h)
            g = net.layer_goodness(i, out)
            loss = self._layer_loss(g[:b], g[b:].view(b, k))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach())
            h = out.detach()
        if self.config.readout == "linear":
            self._readout_step(x, labels)
        return total

    def _readout_step(self, x: torch.Tensor, labels: torch.Tensor) -> None:
        logits = self.network.readout(self.network.features(x))
        loss = F.cross_entropy(logits, labels)
        self.readout_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.readout_optimizer.step()

    def fit(
        self,
        x: torch.Tensor,
        labels: torch.Tensor,
        x_test: torch.Tensor | None = None,
        labels_test: torch.Tensor | None = None,
        *,
        on_epoch: Callable[[dict[str, float]], None] | None = None,
        progress: bool = False,
    ) -> list[dict[str, float]]:
        """Train until ``config.epochs`` epochs are done (a resumed trainer continues).

        Args:
            x: Training features ``(N, n_features)``.
            labels: Training labels ``(N,)``, int64 in ``0 .. C-1``.
            x_test, labels_test: Optional held-out set evaluated after every epoch.
            on_epoch: Called with each epoch's metrics dict.
            progress: Show a tqdm progress bar per epoch.

        Returns:
            One metrics dict per epoch: ``epoch``, ``loss``, ``train_accuracy``,
            ``test_accuracy`` (when a test set is given), ``seconds``, ``device_queries``,
            ``device_samples``.
        """
        _check_data(x, labels, self.network)
        if x_test is not None:
            _check_data(x_test, labels_test, self.network)
        from tqdm.auto import tqdm

        cfg = self.config
        n = x.shape[0]
        while self.epoch < cfg.epochs:
            t0 = time.perf_counter()
            self._set_learning_rate()
            order = torch.randperm(n, generator=self.generator)
            starts = range(0, n, cfg.batch_size)
            # updated by hand: a tqdm iterator closes itself before the epoch's metrics
            bar = tqdm(total=len(starts), desc=f"epoch {self.epoch + 1}/{cfg.epochs}",
                       unit="batch", disable=not progress, dynamic_ncols=True)
            losses = []
            for start in starts:
                idx = order[start:start + cfg.batch_size]
                losses.append(self.train_step(x[idx], labels[idx]))
                bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
                bar.update(1)
            self.epoch += 1
            row: dict[str, float] = {
                "epoch": self.epoch,
                "loss": sum(losses) / len(losses),
                "train_accuracy": self.evaluate(x, labels),
            }
            if x_test is not None:
                row["test_accuracy"] = self.evaluate(x_test, labels_test)
            row["seconds"] = time.perf_counter() - t0
            usage = self.device_usage()
            row["device_queries"] = usage["device_queries"]
            row["device_samples"] = usage["device_samples"]
            bar.set_postfix({name: f"{row[key]:.3f}" for key, name in (
                ("loss", "loss"), ("train_accuracy", "train"), ("test_accuracy", "test"))
                if key in row})
            bar.close()
            self.history.append(row)
            if on_epoch is not None:
                on_epoch(row)
        return self.history

    def _set_learning_rate(self) -> None:
        cfg = self.config
        factor = 1.0
        if cfg.schedule == "cosine":
            factor = 0.5 * (1 + math.cos(math.pi * self.epoch / cfg.epochs))
        for opt, lr in [*((o, cfg.lr) for o in self.optimizers),
                        (self.readout_optimizer, cfg.readout_lr)]:
            for group in opt.param_groups:
                group["lr"] = lr * factor

    def evaluate(self, x: torch.Tensor, labels: torch.Tensor, batch_size: int = 1024) -> float:
        """Accuracy of :meth:`PhyLLNetwork.predict` with the configured readout."""
        correct = 0
        for start in range(0, x.shape[0], batch_size):
            pred = self.network.predict(x[start:start + batch_size], self.config.readout)
            correct += int((pred == labels[start:start + batch_size]).sum())
        return correct / max(1, x.shape[0])

    # -- checkpoints ------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: loadable with ``torch.load(weights_only=True)``."""
        return {
            "model": self.network.state_dict(),
            "optimizers": [opt.state_dict() for opt in self.optimizers],
            "readout_optimizer": self.readout_optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "epoch": self.epoch,
            "config": self.config.as_dict(),
            "history": self.history,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.network.load_state_dict(state["model"])
        for opt, s in zip(self.optimizers, state["optimizers"], strict=True):
            opt.load_state_dict(s)
        self.readout_optimizer.load_state_dict(state["readout_optimizer"])
        self.generator.set_state(state["generator"])
        self.epoch = int(state["epoch"])
        self.history = list(state["history"])


def _check_data(x: Any, labels: Any, network: PhyLLNetwork) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[1] != network.n_features:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"features must be a tensor (N, {network.n_features}), got {shape}")
    if not torch.isfinite(x).all():
        raise ValueError("features contain NaN or Inf")
    if not isinstance(labels, torch.Tensor) or labels.shape != (x.shape[0],):
        raise ValueError(f"labels must be a tensor ({x.shape[0]},) matching the features")
    if labels.dtype != torch.int64 or labels.min() < 0 or labels.max() >= network.n_classes:
        raise ValueError(f"labels must be int64 in 0..{network.n_classes - 1}")
