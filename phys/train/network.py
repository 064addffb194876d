"""PhysicalClassifier: physical layers and a linear head, trained end to end by the
baselines (in-silico backprop and physics-aware training)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from phys.layers import PhysicalLayer

__all__ = ["PhysicalClassifier"]

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
        if not layers:
            raise ValueError("a PhysicalClassifier needs at least one layer")
        for i in range(1, len(layers)):
            if layers[i].in_features != layers[i - 1].out_features:
                raise ValueError(
                    f"layer {i} takes {layers[i].in_features} inputs but layer {i - 1} "
                    f"gives {layers[i - 1].out_features}"
                )
        self.layers = nn.ModuleList(layers)
        self.n_features, self.n_classes = layers[0].in_features, n_classes
        self.head = nn.utils.skip_init(nn.Linear, layers[-1].out_features, n_classes)
        gen = torch.Generator().manual_seed(seed)
        bound = 1 / math.sqrt(layers[-1].out_features)
        with torch.no_grad():
            self.head.weight.uniform_(-bound, bound, generator=gen)
            self.head.bias.uniform_(-bound, bound, generator=gen)

    def forward(self, x: torch.Tensor, physics_for: PhysicsFor | None = None) -> torch.Tensor:
        """Logits. ``physics_for(layer)`` gives each layer's differentiable physics; by
        default every layer queries its device without gradient."""
        h = x
        for layer in self.layers:
            h = layer(h, None if physics_for is None else physics_for(layer))
        return self.head(h)
