"""PhysicalClassifier: physical layers and a linear head, trained end to end by the
baselines (in-silico backprop and physics-aware training)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from phys.layers import PhysicalLayer, check_chain, seeded_linear
from phys.train.base import TrainConfig, Trainer

__all__ = ["ClassifierTrainer", "PhysicalClassifier"]


class PhysicalClassifier(nn.Module):
    """A stack of :class:`~phys.PhysicalLayer` followed by a linear head giving logits.

    Args:
        layers: Physical layers (or any blocks with ``in_features`` and ``out_features``);
            layer ``i + 1`` takes layer ``i``'s output.
        n_classes: Number of labels.
        seed: Seeds the head's initial weights.

    Shape:
        - Input: ``(B, layers[0].in_features)``.
        - Output: logits ``(B, n_classes)``.
    """

    def __init__(self, layers: Sequence[PhysicalLayer], n_classes: int, *, seed: int = 0) -> None:
        super().__init__()
        check_chain(layers, "PhysicalClassifier")
        self.layers = nn.ModuleList(layers)
        self.n_features, self.n_classes = layers[0].in_features, n_classes
        gen = torch.Generator().manual_seed(seed)
        self.head = seeded_linear(layers[-1].out_features, n_classes, gen)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits; each layer's physics passes gradients by its own route
        (:class:`~phys.nn.DeviceLayer`)."""
        h = x
        for layer in self.layers:
            h = layer(h)
        return self.head(h)


class ClassifierTrainer(Trainer):
    """Cross-entropy training of a :class:`PhysicalClassifier` with one Adam optimiser.

    Subclasses choose the gradient route of every :class:`~phys.nn.DeviceLayer` in the
    network (``set_grad``) before training. Prediction runs without autograd, so it
    queries the devices whatever the route, as for any trainer.
    """

    network: PhysicalClassifier

    def __init__(self, network: PhysicalClassifier, config: TrainConfig) -> None:
        super().__init__(config)
        self.network = network
        self.n_features, self.n_classes = network.n_features, network.n_classes
        cfg = self.config
        self.optimizers = [torch.optim.Adam(network.parameters(), lr=cfg.lr,
                                            weight_decay=cfg.weight_decay)]

    def train_step(self, x: torch.Tensor, labels: torch.Tensor) -> float:
        loss = F.cross_entropy(self.network(x), labels)
        opt = self.optimizers[0]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x).argmax(dim=1)
