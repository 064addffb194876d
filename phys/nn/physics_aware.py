"""Physics-aware training's gradient (Wright et al., Nature 601:549, 2022): the forward
pass measures the device, the backward pass asks a digital twin."""

from __future__ import annotations

from collections.abc import Mapping
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
    With physical parameters (``names`` and their ``values``, which the device measures
    with), the twin is differentiated at those values with respect to ``u`` and to them
    (``twin.simulate(u, params=...)``, one pass).
    """

    @staticmethod
    def forward(ctx: Any, u: torch.Tensor, device: Device, twin: Twin,
                names: tuple[str, ...] = (), *values: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(u, *values)
        ctx.twin, ctx.names = twin, names
        return device.query(u.detach())

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        u, *values = ctx.saved_tensors
        if not ctx.names:
            return ctx.twin.vjp(u, grad_out).to(u.dtype), None, None, None
        x = u.detach().clone().requires_grad_(True)
        leaves = [v.detach().clone().requires_grad_(True) for v in values]
        with torch.enable_grad():
            y = ctx.twin.simulate(x, params=dict(zip(ctx.names, leaves, strict=True)))
            grads = torch.autograd.grad(y, [x, *leaves], grad_out.to(y.dtype),
                                        allow_unused=True)
        grads = [torch.zeros_like(t) if g is None else g
                 for t, g in zip([x, *leaves], grads, strict=True)]
        return (grads[0].to(u.dtype), None, None, None,
                *(g.to(v.dtype) for g, v in zip(grads[1:], values, strict=True)))


def physics_aware(device: Device, twin: Twin, u: torch.Tensor,
                  params: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
    """Measure ``u`` on ``device``; differentiate through ``twin``.

    Args:
        device: The device measured in the forward pass (one query of ``B`` samples).
        twin: Any object with ``vjp(u, grad_out)``, e.g. a simulator with other
            parameters or a fitted :class:`~phys.train.twin.SurrogateTwin`.
        u: Device inputs, in the device's range.
        params: Physical parameters to differentiate too, by name: the values the
            device is set to (the caller keeps them so); the twin must be a simulator
            that takes them (``simulate(u, params=...)``).

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
        >>> phase = torch.zeros(8, requires_grad=True)
        >>> physics_aware(dev, twin, u, {"phase": phase}).sum().backward()
        >>> phase.grad.shape
        torch.Size([8])
    """
    params = dict(params or {})
    return PhysicsAware.apply(u, device, twin, tuple(params), *params.values())
