"""Physics-aware training's gradient (Wright et al., Nature 601:549, 2022): the forward
pass measures the device, the backward pass asks a digital twin."""

from __future__ import annotations

from typing import Any, Protocol

import torch

from phys.device import Device

__all__ = ["PhysicsAware", "Twin", "physics_aware"]


class Twin(Protocol):
    """What physics-aware training needs of a digital model of a device."""

    def vjp(self, x: torch.Tensor, grad_out: torch.Tensor) -> torch.Tensor:
        """``grad_out (B, n_out) @ J(x)`` with ``x (B, n_in)``, returns ``(B, n_in)``."""
        ...


class PhysicsAware(torch.autograd.Function):
    """``device.query(u)`` forward, ``twin.vjp(u, grad_out)`` backward.

    Call it through :func:`physics_aware`. The device is measured once per forward pass;
    the twin is evaluated at the same inputs ``u`` in the backward pass, so the gradient
    is the twin's Jacobian applied to the upstream gradient of the *measured* output.
    """

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
    """Measure ``u`` on ``device``; differentiate through ``twin``.

    Args:
        device: The device measured in the forward pass (one query of ``B`` samples).
        twin: Any object with ``vjp(u, grad_out)``, e.g. a simulator with other
            parameters or a fitted :class:`~phys.train.twin.SurrogateTwin`.
        u: Device inputs, in the device's range.

    Shape:
        ``u (B, n_in) -> (B, n_out)``.

    Examples::

        >>> import phys, torch
        >>> dev = phys.open("cavity", n_in=5, n_out=3, n_scatterers=8, noise=0.05)
        >>> twin = phys.open("cavity", n_in=5, n_out=3, n_scatterers=8)
        >>> u = torch.rand(4, 5, requires_grad=True)
        >>> physics_aware(dev, twin, u).sum().backward()
        >>> u.grad.shape
        torch.Size([4, 5])
    """
    return PhysicsAware.apply(u, device, twin)
