"""Model-free end-to-end training: cross-entropy through the digital operations alone.

The devices are only queried and pass no gradient (``grad="none"``), so no model of
the physics is used: the digital weights after the last device (and those reaching it
through skip connections) train by autograd, as the readout of a reservoir or an
extreme learning machine does. With one physics-dominant layer (``skip=False``) every
digital weight sits after the physics and trains exactly as in PAT or backprop. With
``physics`` (:class:`~phys.train.physics.PhysicalParameters`) the devices' physical
parameters follow the same loss, measured at perturbed settings.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from phys.nn.device_layer import device_layers
from phys.train.base import TrainConfig
from phys.train.network import ClassifierTrainer, PhysicalClassifier
from phys.train.physics import PerturbsPhysics, PhysicalParameters

__all__ = ["ReadoutTrainer"]


class ReadoutTrainer(PerturbsPhysics, ClassifierTrainer):
    """Cross-entropy training of a :class:`PhysicalClassifier` whose devices pass no
    gradient; sets every :class:`~phys.nn.DeviceLayer`'s route to ``"none"``.

    Args:
        network: The classifier; its devices are queried in every forward pass. Digital
            weights that reach the loss only through a device (a layer before another
            layer, without skip) get no gradient and keep their initial values.
        config: Options (:class:`~phys.train.base.TrainConfig`).
        physics: Also trains the devices' physical parameters, model-free, on the
            network's cross-entropy measured on (part of) each batch at perturbed
            settings, one layer after another (each step costs ``2 x directions`` batch
            measurements per layer, counted in ``physics_device_samples``).

    Examples::

        >>> import phys, torch
        >>> from phys.train.network import PhysicalClassifier
        >>> layer = phys.PhysicalLayer(phys.open("cavity", n_in=8, n_out=8), 4, 16,
        ...                            skip=False)
        >>> trainer = ReadoutTrainer(PhysicalClassifier([layer], 3))
        >>> float(trainer.train_step(torch.randn(8, 4), torch.arange(8) % 3)) > 0
        True
    """

    #: What the loss is, for plots; one loss for the whole network.
    loss_label: ClassVar[str] = "cross-entropy"

    def __init__(self, network: PhysicalClassifier, config: TrainConfig | None = None, *,
                 physics: PhysicalParameters | None = None) -> None:
        self.device_layers = device_layers(network)
        for layer in self.device_layers:
            layer.set_grad("none")
        if physics is not None and len(physics.devices) != len(self.device_layers):
            raise ValueError(f"physics has parameters of {len(physics.devices)} layers, the "
                             f"network {len(self.device_layers)}")
        self.physics = physics
        super().__init__(network, config or TrainConfig())

    def train_step(self, x: torch.Tensor, labels: torch.Tensor) -> float:
        loss = super().train_step(x, labels)
        if self.physics is not None:
            n = x.shape[0] if self.physics.batch is None else min(self.physics.batch,
                                                                   x.shape[0])
            xs, ls = x[:n], labels[:n]

            def measure() -> float:
                with torch.no_grad():
                    return float(F.cross_entropy(self.network(xs), ls))

            for i in range(len(self.device_layers)):
                self.physics.after_layer(i, measure)
            self.physics.end_batch()
        return loss
