"""Physics-aware training (PAT; Wright et al., Nature 601:549, 2022).

The forward pass runs on the device itself (whatever its flaws); the backward pass uses
the vector-Jacobian product of a digital twin evaluated at the same inputs
(:func:`phys.nn.physics_aware`). Training therefore costs device queries *and* digital
compute for the twin.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from phys.nn.device_layer import device_layers
from phys.nn.physics_aware import Twin, physics_aware
from phys.train.base import TrainConfig
from phys.train.network import ClassifierTrainer, PhysicalClassifier
from phys.train.physics import GradientPhysics, TrainsPhysics

__all__ = ["PATTrainer", "physics_aware"]


class PATTrainer(TrainsPhysics, ClassifierTrainer):
    """Cross-entropy training of a :class:`PhysicalClassifier`: forward on the devices,
    backward through one digital twin per layer.

    Sets the gradient route of the ``i``-th :class:`~phys.nn.DeviceLayer` in the network
    to ``"twin"`` with ``twins[i]``.

    Args:
        network: The classifier; its layers' devices are queried in every forward pass.
        twins: One twin per layer (``vjp(u, grad_out)``), e.g. a simulator with other
            parameters or a fitted :class:`~phys.train.twin.SurrogateTwin`. FLOPs a twin
            spent on fitting (its ``flops`` meter) are added to the digital FLOPs.
        config: Options (:class:`~phys.train.base.TrainConfig`).
        train_physics: Also train the devices' physical parameters (``info.params``),
            measured on the devices set to them and differentiated through the twins at
            the same values, with the same optimiser and loss
            (:class:`~phys.train.physics.GradientPhysics`); no extra queries. The twins
            must be simulators declaring the same parameters; they are kept at the
            devices' values.
        physics_lr: Their learning rate in units of each parameter's range (``None``:
            ``config.lr``).

    Raises:
        ValueError: one twin per layer is not given, a twin has no ``vjp``, or with
            ``train_physics`` no device declares parameters or a twin cannot
            differentiate with respect to them (a surrogate).
    """

    #: What the loss is, for plots; one loss for the whole network, so ``layer_losses``
    #: stays ``None``.
    loss_label: ClassVar[str] = "cross-entropy"

    def __init__(self, network: PhysicalClassifier, twins: Sequence[Twin],
                 config: TrainConfig | None = None, *, train_physics: bool = False,
                 physics_lr: float | None = None) -> None:
        physics = device_layers(network)
        if len(twins) != len(physics):
            raise ValueError(f"pat needs one twin per layer: {len(physics)} layers, "
                             f"{len(twins)} twins")
        for i, twin in enumerate(twins):
            if not callable(getattr(twin, "vjp", None)):
                raise ValueError(f"twin {i} ({type(twin).__name__}) has no vjp(u, grad_out)")
        for layer, twin in zip(physics, twins, strict=True):
            layer.set_grad("twin", twin)
        self.physics = GradientPhysics(physics, lr=physics_lr) if train_physics else None
        super().__init__(network, config or TrainConfig())
        self._physics_optimizer()
        self.twins = list(twins)
        if self.config.count_flops:
            self.flops.total += sum(getattr(getattr(t, "flops", None), "total", 0)
                                    for t in self.twins)
