"""Physics-aware training (PAT; Wright et al., Nature 601:549, 2022).

The forward pass runs on the device itself (whatever its flaws); the backward pass uses
the vector-Jacobian product of a digital twin evaluated at the same inputs. Training
therefore costs device queries *and* digital compute for the twin.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from phys.device import Device
from phys.layers import PhysicalLayer
from phys.train.base import TrainConfig
from phys.train.network import ClassifierTrainer, PhysicalClassifier
from phys.train.twin import Twin

__all__ = ["PATTrainer", "physics_aware"]


class _PhysicsAware(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, u: torch.Tensor, device: Device, twin: Twin) -> torch.Tensor:
        ctx.save_for_backward(u)
        ctx.twin = twin
        return device.query(u.detach())

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, None, None]:
        (u,) = ctx.saved_tensors
        return ctx.twin.vjp(u, grad_out).to(u.dtype), None, None


def physics_aware(device: Device, twin: Twin, u: torch.Tensor) -> torch.Tensor:
    """``device.query(u)`` in the forward pass, ``twin.vjp`` in the backward pass.

    Shape: ``u (B, n_in) -> (B, n_out)``.
    """
    return _PhysicsAware.apply(u, device, twin)


class PATTrainer(ClassifierTrainer):
    """Cross-entropy training of a :class:`PhysicalClassifier`: forward on the devices,
    backward through one digital twin per layer.

    Args:
        network: The classifier; its layers' devices are queried in every forward pass.
        twins: One twin per layer (``vjp(u, grad_out)``), e.g. a simulator with other
            parameters or a fitted :class:`~phys.train.twin.SurrogateTwin`. FLOPs a twin
            spent on fitting (its ``flops`` meter) are added to the digital FLOPs.
        config: Options (:class:`~phys.train.base.TrainConfig`).
    """

    def __init__(self, network: PhysicalClassifier, twins: Sequence[Twin],
                 config: TrainConfig | None = None) -> None:
        super().__init__(config or TrainConfig())
        if len(twins) != len(network.layers):
            raise ValueError(f"pat needs one twin per layer: {len(network.layers)} layers, "
                             f"{len(twins)} twins")
        for i, twin in enumerate(twins):
            if not callable(getattr(twin, "vjp", None)):
                raise ValueError(f"twin {i} ({type(twin).__name__}) has no vjp(u, grad_out)")
        self.network, self.twins = network, list(twins)
        self.n_features, self.n_classes = network.n_features, network.n_classes
        cfg = self.config
        self.optimizers = [torch.optim.Adam(network.parameters(), lr=cfg.lr,
                                            weight_decay=cfg.weight_decay)]
        if cfg.count_flops:
            self.flops.total += sum(getattr(getattr(t, "flops", None), "total", 0)
                                    for t in self.twins)
        self._twin_of = {id(layer): twin for layer, twin in zip(network.layers, self.twins,
                                                                strict=True)}

    def physics_for(self, layer: PhysicalLayer) -> Callable[[torch.Tensor], torch.Tensor]:
        twin = self._twin_of[id(layer)]
        return lambda u: physics_aware(layer.device, twin, u)
