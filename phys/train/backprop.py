"""In-silico backpropagation: end-to-end training through differentiable simulators.

The baseline that needs a perfect model of the physics: gradients flow through
``device.simulate``. Training performs no device queries; evaluation queries the
device as any trainer does.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from phys.layers import PhysicalLayer
from phys.train.base import TrainConfig
from phys.train.network import ClassifierTrainer, PhysicalClassifier

__all__ = ["BackpropTrainer"]


class BackpropTrainer(ClassifierTrainer):
    """Cross-entropy training of a :class:`PhysicalClassifier` through its simulators.

    Args:
        network: Every layer's device must be differentiable (``info.differentiable``).
        config: Options (:class:`~phys.train.base.TrainConfig`).

    Raises:
        ValueError: a layer's device is not differentiable.
    """

    def __init__(self, network: PhysicalClassifier, config: TrainConfig | None = None) -> None:
        super().__init__(config or TrainConfig())
        for i, layer in enumerate(network.layers):
            info = layer.device.info
            if not info.differentiable or not hasattr(layer.device, "simulate"):
                raise ValueError(
                    f"backprop needs a differentiable device, but layer {i}'s device "
                    f"{info.name!r} can only be queried; use the phyll trainer, or pat with "
                    f"a digital twin"
                )
        self.network = network
        self.n_features, self.n_classes = network.n_features, network.n_classes
        cfg = self.config
        self.optimizers = [torch.optim.Adam(network.parameters(), lr=cfg.lr,
                                            weight_decay=cfg.weight_decay)]

    def physics_for(self, layer: PhysicalLayer) -> Callable[[torch.Tensor], torch.Tensor]:
        return layer.device.simulate
