"""Physical local learning (PhyLL): model-free forward-forward training.

Momeni et al., Science 382:1297 (2023). Each block (a :class:`~phys.PhysicalLayer`, or
any module around a :class:`~phys.nn.DeviceLayer`) learns from a local goodness on
positive inputs (the true label embedded) and negative inputs (a wrong label embedded).
The physics is only queried: the loss depends on the trainable digital weights through
digital operations alone, with the measurement a constant, so no model of the physics
and no backpropagation through it is needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from phys.layers import PhysicalLayer, check_chain
from phys.nn import goodness as goodness_fns
from phys.nn.functional import seeded_linear
from phys.options import check_value, option, option_fields
from phys.train.base import TrainConfig, Trainer
from phys.train.physics import PerturbsPhysics, PhysicalParameters

__all__ = ["NETWORK_OPTIONS", "PhyLLConfig", "PhyLLNetwork", "PhyLLTrainer", "all_wrong_labels",
           "wrong_labels"]

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


#: Options that the network applies and :class:`PhyLLConfig` owns (default, allowed values).
NETWORK_OPTIONS = ("label_scale", "goodness")


def _network_option(name: str, value: Any) -> Any:
    """``value`` checked against :class:`PhyLLConfig`'s field ``name``; ``None`` gives the
    field's default."""
    field, hint = next((f, h) for f, h in option_fields(PhyLLConfig) if f.name == name)
    if value is None:
        return field.default
    check_value(name, value, hint, field.metadata)
    return value


class PhyLLNetwork(nn.Module):
    """A sequence of blocks trained layer-locally, with the label embedded in the input.

    A block is any ``nn.Module`` with int attributes ``in_features`` and ``out_features``
    that holds its physics in a :class:`~phys.nn.DeviceLayer` and has a trainable digital
    part, e.g. :class:`~phys.PhysicalLayer` or a block of one's own
    (``examples/custom_blocks.py``).

    Args:
        layers: The blocks; block ``i + 1`` takes block ``i``'s output. The first takes
            ``n_features + n_classes`` inputs (features and label embedding).
        n_classes: Number of labels ``C``.
        label_scale: Hot value of the one-hot label embedding.
        goodness: ``"cosine"`` or ``"meansquare"`` (:mod:`phys.nn.goodness`).
            :class:`PhyLLConfig` owns both options (defaults and allowed values): leave
            them ``None`` to take the trainer's config (its defaults until then); a value
            given here that differs from the config is refused by :class:`PhyLLTrainer`.
        seed: Seeds the fixed goodness directions ``xi`` and the linear readout.

    Shape:
        - ``goodness(x, labels)``: ``(B, n_features), (B,) -> (B, n_layers)``.
        - ``predict(x)``: ``(B, n_features) -> (B,)``.

    Examples::

        >>> import phys
        >>> block = phys.PhysicalLayer(phys.open("cavity", n_in=9, n_out=4), 9, 8)
        >>> PhyLLNetwork([block], n_classes=3).n_features
        6
    """

    def __init__(self, layers: Sequence[nn.Module], n_classes: int, *,
                 label_scale: float | None = None, goodness: str | None = None,
                 seed: int = 0) -> None:
        super().__init__()
        check_chain(layers, "PhyLLNetwork")
        if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 2:
            raise ValueError(f"n_classes must be an int >= 2, got {n_classes!r}")
        self.layers = nn.ModuleList(layers)
        self.n_classes = n_classes
        given = {"label_scale": label_scale, "goodness": goodness}
        self._chosen = {k: _network_option(k, v) for k, v in given.items() if v is not None}
        self.label_scale = _network_option("label_scale", label_scale)
        self.goodness_kind = _network_option("goodness", goodness)
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

    def configure(self, *, label_scale: float, goodness: str) -> None:
        """Apply a trainer's options (:data:`NETWORK_OPTIONS` of :class:`PhyLLConfig`).

        Raises:
            ValueError: naming the option, when the network was built with another value.
        """
        wanted = {"label_scale": label_scale, "goodness": goodness}
        for name, value in wanted.items():
            if name in self._chosen and self._chosen[name] != value:
                raise ValueError(f"{name}: the network was built with {self._chosen[name]!r} "
                                 f"but the config has {value!r}; give it once, in the config")
        self.label_scale = _network_option("label_scale", label_scale)
        self.goodness_kind = _network_option("goodness", goodness)

    def embed(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """Append the label embedding; ``labels=None`` appends the neutral label."""
        if labels is None:
            onehot = torch.full((x.shape[0], self.n_classes), self.label_scale / self.n_classes)
        else:
            onehot = F.one_hot(labels, self.n_classes).to(x.dtype) * self.label_scale
        return torch.cat([x, onehot], dim=1)

    def layer_goodness(self, i: int, y: torch.Tensor) -> torch.Tensor:
        """Goodness of block ``i``'s outputs ``(B, out) -> (B,)``
        (:mod:`phys.nn.goodness`)."""
        if self.goodness_kind == "cosine":
            return goodness_fns.cosine(y, self.get_buffer(f"xi{i}"))
        return goodness_fns.meansquare(y)

    def embedded_skip(self, x: torch.Tensor, labels: torch.Tensor, repeats: int) -> torch.Tensor:
        """A :class:`~phys.PhysicalLayer` first block's skip term for ``x`` with labels
        embedded, each sample's rows sharing one product with the weights.

        Equals ``layers[0].skip(embed(x.repeat_interleave(repeats, 0), labels))``: every
        one-hot embedding has the same norm, so the normaliser is one per sample, and the
        label adds one weight column. Trying ``k`` labels costs one ``(n_features, out)``
        product per sample instead of ``k``.

        Shape: ``(B, n_features), (B * repeats,) -> (B * repeats, out_features)``, rows
        grouped per sample.
        """
        weight = self.layers[0].skip_weight
        n = self.n_features + self.n_classes
        norm = ((x.square().sum(dim=1) + self.label_scale**2) / n).add(1e-8).sqrt()
        shared = (x @ weight[:, :self.n_features].T) / norm.unsqueeze(1)
        label_columns = weight[:, self.n_features:].T[labels] * self.label_scale
        return (shared.repeat_interleave(repeats, 0) + label_columns
                / norm.repeat_interleave(repeats).unsqueeze(1))

    def first_layer(self, x: torch.Tensor, labels: torch.Tensor, repeats: int) -> torch.Tensor:
        """The first block's output for ``x`` with ``labels`` embedded, with autograd on
        its digital weights. One device query covers every row; a
        :class:`~phys.PhysicalLayer` also shares its skip product (:meth:`embedded_skip`).

        Shape: ``(B, n_features), (B * repeats,) -> (B * repeats, out_features)``.
        """
        block = self.layers[0]
        embedded = self.embed(x.repeat_interleave(repeats, 0), labels)
        if not isinstance(block, PhysicalLayer) or not block.has_skip:
            return block(embedded)
        return block.digital(block.measure(embedded), None,
                             skip=self.embedded_skip(x, labels, repeats))

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


class PhyLLTrainer(PerturbsPhysics, Trainer):
    """Trains a :class:`PhyLLNetwork` block by block: one optimiser and one local loss
    per block, inputs detached between blocks.

    The config owns the options the network applies (:data:`NETWORK_OPTIONS`): the
    trainer configures the network with them and refuses a network built with others.

    Args:
        network: The blocks to train (their devices are only queried).
        config: Hyper-parameters.
        physics: Also trains the devices' physical parameters, model-free, on each block's
            local loss (:class:`~phys.train.physics.PhysicalParameters`).

    Raises:
        ValueError: the network was built with another ``label_scale`` or ``goodness``
            than the config's, or a block has no trainable parameters.

    Attributes:
        layer_losses: The latest training step's local loss of each block (its
            ``config.loss`` on its goodness); ``last_loss`` is their sum. ``None`` before
            the first step.

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

    #: What :attr:`last_loss` and the epoch's ``loss`` are, for plots.
    loss_label: ClassVar[str] = "goodness loss, summed over layers"

    def __init__(self, network: PhyLLNetwork, config: PhyLLConfig | None = None, *,
                 physics: PhysicalParameters | None = None) -> None:
        super().__init__(config or PhyLLConfig())
        self.layer_losses: list[float] | None = None
        self.physics = physics
        cfg = self.config
        network.configure(label_scale=cfg.label_scale, goodness=cfg.goodness)
        self.network = network
        self.n_features, self.n_classes = network.n_features, network.n_classes
        for i, block in enumerate(network.layers):
            if not any(p.requires_grad for p in block.parameters()):
                raise ValueError(f"block {i} ({type(block).__name__}) has no trainable "
                                 f"parameters for its optimiser")
        self.layer_optimizers = [
            torch.optim.Adam(block.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
            for block in network.layers
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

    def layer_loss(self, g_pos: torch.Tensor, g_neg: torch.Tensor) -> torch.Tensor:
        """The configured local loss (:mod:`phys.nn.goodness`) of one block's goodness on
        positives ``(B,)`` and negatives ``(B, K)``."""
        cfg = self.config
        if cfg.loss == "threshold":
            return goodness_fns.threshold_loss(g_pos, g_neg, cfg.threshold)
        sharp = goodness_fns.contrast_loss if cfg.loss == "contrast" else goodness_fns.softmax_loss
        return sharp(g_pos, g_neg, cfg.theta)

    def train_step(self, x: torch.Tensor, labels: torch.Tensor) -> float:
        """One local update of every block on a batch; returns the summed block loss
        (each block's in :attr:`layer_losses`)."""
        net = self.network
        neg_labels, k = self._negatives(labels)
        b = x.shape[0]
        # rows: each sample with its own label, then its k wrong labels
        rows = torch.cat([labels.unsqueeze(1), neg_labels.view(b, k)], dim=1).reshape(-1)
        losses: list[float] = []
        h = x
        for i, (block, opt) in enumerate(zip(net.layers, self.layer_optimizers, strict=True)):
            # the first block: one device round trip for positives and negatives
            out = net.first_layer(x, rows, k + 1) if i == 0 else block(h)
            g = net.layer_goodness(i, self._drop(out)).view(b, k + 1)
            loss = self.layer_loss(g[:, 0], g[:, 1:])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            if self.physics is not None:
                self.physics.after_layer(i, self._measured(i, x, h, rows, k + 1))
            h = out.detach()
        if self.physics is not None:
            self.physics.end_batch()
        if self.config.readout == "linear":
            self._readout_step(x, labels)
        self.layer_losses = losses
        return sum(losses, 0.0)

    def _measured(self, i: int, x: torch.Tensor, h: torch.Tensor, rows: torch.Tensor,
                  repeats: int) -> Any:
        """Measures block ``i``'s local loss on this batch (its first ``physics.batch``
        samples) at its device's settings."""
        net = self.network
        n = x.shape[0] if self.physics.batch is None else min(self.physics.batch, x.shape[0])
        x, h, rows = x[:n], h[:n * repeats] if i else h, rows[:n * repeats]

        def measure() -> float:
            out = net.first_layer(x, rows, repeats) if i == 0 else net.layers[i](h)
            g = net.layer_goodness(i, out).view(x.shape[0], repeats)
            return float(self.layer_loss(g[:, 0], g[:, 1:]))
        return measure

    def _readout_step(self, x: torch.Tensor, labels: torch.Tensor) -> None:
        logits = self.network.readout(self.network.features(x))
        loss = F.cross_entropy(logits, labels)
        self.readout_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.readout_optimizer.step()

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Labels by the configured readout (see :meth:`PhyLLNetwork.predict`)."""
        return self.network.predict(x, self.config.readout)
