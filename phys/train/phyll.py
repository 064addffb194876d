"""Physical local learning (PhyLL): model-free forward-forward training.

Momeni et al., Science 382:1297 (2023). Each :class:`~phys.PhysicalLayer` learns from
a local goodness on positive inputs (the true label embedded) and negative inputs (a
wrong label embedded). The physics is only queried: the loss depends on the trainable
digital weights through digital operations alone, with the measurement a constant, so
no model of the physics and no backpropagation through it is needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from phys.layers import PhysicalLayer, check_chain, seeded_linear
from phys.options import option
from phys.train.base import TrainConfig, Trainer

__all__ = ["PhyLLConfig", "PhyLLNetwork", "PhyLLTrainer", "wrong_labels"]

GOODNESS = ("cosine", "meansquare")
LOSSES = ("contrast", "softmax", "threshold")
NEGATIVES = ("random", "all")
READOUTS = ("goodness", "linear")


@dataclass
class PhyLLConfig(TrainConfig):
    """Hyper-parameters of :class:`PhyLLTrainer`: those of
    :class:`~phys.train.base.TrainConfig` and PhyLL's own (each field's help says what it
    does). ``"softmax"`` loss is the cross-entropy of softmax(theta g) over a sample's
    positive and negatives, equal to ``"contrast"`` with one negative; ``"threshold"`` is
    Hinton's softplus(-(g_pos - threshold)) + softplus(g_neg - threshold)."""

    goodness: str = option("cosine", choices=GOODNESS,
                           help="cosine: cos(y, xi) with a fixed random xi per layer (PhyLL); "
                                "meansquare: mean(y^2) (Hinton)")
    loss: str = option("contrast", choices=LOSSES,
                       help="layer loss: contrast, softplus(-theta (g_pos - g_neg)) averaged "
                            "over the negatives; softmax, cross-entropy over a sample's "
                            "labels; threshold, Hinton's")
    theta: float = option(8.0, min=0.0, help="sharpness of the contrast and softmax losses "
                          "(the PhyLL paper uses about 4)")
    threshold: float = option(2.0, help="goodness threshold of the threshold loss")
    negatives: str = option("all", choices=NEGATIVES,
                            help="all: every wrong label per sample; random: one random wrong "
                                 "label per sample and step")
    label_scale: float = option(3.0, min=0.0,
                                help="hot value of the one-hot label embedding")
    readout: str = option("goodness", choices=READOUTS,
                          help="goodness: the label with the largest goodness summed over "
                               "layers (C queries per sample and layer); linear: a softmax "
                               "classifier on the layers' outputs for a neutral label (1 query)")
    readout_lr: float = option(1e-2, min=1e-12, help="Adam learning rate of the linear readout")
    dropout: float = option(0.0, min=0.0, max=0.99,
                            help="fraction of each layer's outputs zeroed at random in its "
                                 "goodness during training, the rest scaled by 1/(1-dropout)")


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
        check_chain(layers, "PhyLLNetwork")
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
        self.readout = seeded_linear(width, n_classes, gen)  # not the global RNG: reproducible

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

    def embedded_skip(self, x: torch.Tensor, labels: torch.Tensor, repeats: int) -> torch.Tensor:
        """The first layer's skip term for ``x`` with labels embedded, each sample's rows
        sharing one product with the weights.

        Equals ``layers[0].skip(embed(x.repeat_interleave(repeats, 0), labels))``: every
        one-hot embedding has the same norm, so the normaliser is one per sample, and the
        label adds one weight column. Trying ``k`` labels costs one ``(n_features, out)``
        product per sample instead of ``k``.

        Shape: ``(B, n_features), (B * repeats,) -> (B * repeats, out_features)``, rows
        grouped per sample.
        """
        layer = self.layers[0]
        weight = layer.linear.weight[:, layer.device.info.n_out:]
        n = self.n_features + self.n_classes
        norm = ((x.square().sum(dim=1) + self.label_scale**2) / n).add(1e-8).sqrt()
        shared = (x @ weight[:, :self.n_features].T) / norm.unsqueeze(1)
        label_columns = weight[:, self.n_features:].T[labels] * self.label_scale
        return (shared.repeat_interleave(repeats, 0) + label_columns
                / norm.repeat_interleave(repeats).unsqueeze(1))

    def first_layer(self, x: torch.Tensor, labels: torch.Tensor, repeats: int) -> torch.Tensor:
        """The first layer's output for ``x`` with ``labels`` embedded, with autograd on
        its digital weights. One device query covers every row.

        Shape: ``(B, n_features), (B * repeats,) -> (B * repeats, out_features)``.
        """
        layer = self.layers[0]
        measured = layer.measure(self.embed(x.repeat_interleave(repeats, 0), labels))
        return layer.digital(measured, None, skip=self.embedded_skip(x, labels, repeats))

    @torch.no_grad()
    def goodness(self, x: torch.Tensor, labels: torch.Tensor, repeats: int = 1) -> torch.Tensor:
        """Per-layer goodness for each sample of ``x`` repeated ``repeats`` times with
        ``labels`` embedded: ``(B, n_features), (B * repeats,) -> (B * repeats, n_layers)``."""
        h = self.first_layer(x, labels, repeats)
        scores = [self.layer_goodness(0, h)]
        for i, layer in enumerate(self.layers[1:], start=1):
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
        scores = self.goodness(x, labels, repeats=c).sum(dim=1)
        return scores.view(b, c).argmax(dim=1)


class PhyLLTrainer(Trainer):
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
        super().__init__(config or PhyLLConfig())
        cfg = self.config
        self.network = network
        self.n_features, self.n_classes = network.n_features, network.n_classes
        self.layer_optimizers = [
            torch.optim.Adam(layer.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
            for layer in network.layers
        ]
        self.readout_optimizer = torch.optim.Adam(network.readout.parameters(),
                                                  lr=cfg.readout_lr)
        self.optimizers = [*self.layer_optimizers, self.readout_optimizer]

    def _negatives(self, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Negative labels and how many per sample (rows grouped per sample)."""
        c = self.network.n_classes
        if self.config.negatives == "all":
            return all_wrong_labels(labels, c).reshape(-1), c - 1
        return wrong_labels(labels, c, self.generator), 1

    def _drop(self, y: torch.Tensor) -> torch.Tensor:
        """``y`` with a ``dropout`` fraction of entries zeroed (from the trainer's seeded
        generator) and the rest scaled by ``1 / (1 - dropout)``; the cosine goodness is
        blind to that scale."""
        p = self.config.dropout
        if p == 0.0:
            return y
        keep = torch.rand(y.shape, generator=self.generator) >= p
        return y * keep / (1.0 - p)

    def _layer_loss(self, g_pos: torch.Tensor, g_neg: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if cfg.loss == "contrast":
            return F.softplus(-cfg.theta * (g_pos.unsqueeze(1) - g_neg)).mean()
        if cfg.loss == "softmax":
            logits = cfg.theta * torch.cat([g_pos.unsqueeze(1), g_neg], dim=1)
            return F.cross_entropy(logits, logits.new_zeros(len(logits), dtype=torch.long))
        return F.softplus(cfg.threshold - g_pos).mean() + F.softplus(g_neg - cfg.threshold).mean()

    def train_step(self, x: torch.Tensor, labels: torch.Tensor) -> float:
        """One local update of every layer on a batch; returns the summed layer loss."""
        net = self.network
        neg_labels, k = self._negatives(labels)
        b = x.shape[0]
        # rows: each sample with its own label, then its k wrong labels
        rows = torch.cat([labels.unsqueeze(1), neg_labels.view(b, k)], dim=1).reshape(-1)
        total, h = 0.0, x
        for i, (layer, opt) in enumerate(zip(net.layers, self.layer_optimizers, strict=True)):
            if i == 0:  # one device round trip for positives and negatives
                out = net.first_layer(x, rows, k + 1)
            else:
                out = layer.digital(layer.measure(h), h)
            g = net.layer_goodness(i, self._drop(out)).view(b, k + 1)
            loss = self._layer_loss(g[:, 0], g[:, 1:])
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

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Labels by the configured readout (see :meth:`PhyLLNetwork.predict`)."""
        return self.network.predict(x, self.config.readout)
