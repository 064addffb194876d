"""In-silico backpropagation: end-to-end training through differentiable simulators.

The baseline that needs a perfect model of the physics: gradients flow through
``device.simulate``. Training performs no device queries; evaluation queries the
device as any trainer does.
"""

from __future__ import annotations

from typing import ClassVar

from phys.nn.device_layer import device_layers
from phys.train.base import TrainConfig
from phys.train.network import ClassifierTrainer, PhysicalClassifier
from phys.train.physics import GradientPhysics, TrainsPhysics

__all__ = ["BackpropTrainer"]


class BackpropTrainer(TrainsPhysics, ClassifierTrainer):
    """Cross-entropy training of a :class:`PhysicalClassifier` through its simulators.

    Sets the gradient route of every :class:`~phys.nn.DeviceLayer` in the network to
    ``"simulator"``.

    Args:
        network: Every layer's device must be differentiable (``info.differentiable``).
        config: Options (:class:`~phys.train.base.TrainConfig`).
        train_physics: Also train the devices' physical parameters (``info.params``)
            through ``simulate(u, params=...)``, with the same optimiser and loss
            (:class:`~phys.train.physics.GradientPhysics`); no extra queries.
        physics_lr: Their learning rate in units of each parameter's range (``None``:
            ``config.lr``).

    Raises:
        ValueError: a layer's device is not differentiable, or ``train_physics`` and no
            device declares parameters.
    """

    #: What the loss is, for plots; one loss for the whole network, so ``layer_losses``
    #: stays ``None``.
    loss_label: ClassVar[str] = "cross-entropy"

    def __init__(self, network: PhysicalClassifier, config: TrainConfig | None = None, *,
                 train_physics: bool = False, physics_lr: float | None = None) -> None:
        physics = device_layers(network)
        for i, layer in enumerate(physics):
            info = layer.device.info
            if not info.differentiable or not hasattr(layer.device, "simulate"):
                raise ValueError(
                    f"backprop needs a differentiable device, but layer {i}'s device "
                    f"{info.name!r} can only be queried; use the phyll trainer, or pat with "
                    f"a digital twin"
                )
        for layer in physics:
            layer.set_grad("simulator")
        self.physics = GradientPhysics(physics, lr=physics_lr) if train_physics else None
        super().__init__(network, config or TrainConfig())
        self._physics_optimizer()
