"""PhysicalClassifier: physical layers and a linear head, trained end to end by the
baselines (in-silico backprop and physics-aware training)."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from phys.layers import PhysicalLayer, check_chain, seeded_linear
from phys.train.base import Trainer

__all__ = ["ClassifierTrainer", "PhysicalClassifier"]

PhysicsFor = Callable[[PhysicalLayer], Callable[[torch.Tensor], torch.Tensor]]


class PhysicalClassifier(nn.Module):
    """A stack of :class:`~phys.PhysicalLayer` followed by a linear head giving logits.

    Args:
        layers: Physical layers; layer ``i + 1`` takes layer ``i``'s output.
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

    def forward(self, x: torch.Tensor, physics_for: PhysicsFor | None = None) -> torch.Tensor:
        """Logits. ``physics_for(layer)`` gives each layer's differentiable physics; by
        default every layer queries its device without gradient."""
        h = x
        for layer in self.layers:
            h = layer(h, None if physics_for is None else physics_for(layer))
        return self.head(h)


class ClassifierTrainer(Trainer):
    """Cross-entropy training of a :class:`PhysicalClassifier` with one Adam optimiser;
    subclasses say how each layer's physics is differentiated (:meth:`physics_for`).
    Prediction queries the devices, as for any trainer."""

    network: PhysicalClassifier

    @abstractmethod
    def physics_for(self, layer: PhysicalLayer) -> Callable[[torch.Tensor], torch.Tensor]:
        """The differentiable map ``u (B, n_in) -> (B, n_out)`` used for ``layer``."""

    def train_step(self, x: torch.Tensor, labels: torch.Tensor) -> float:
        loss = F.cross_entropy(self.network(x, physics_for=self.physics_for), labels)
        opt = self.optimizers[0]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x).argmax(dim=1)
