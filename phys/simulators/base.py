"""Base class for numerical simulators: a :class:`~phys.Device` that is also differentiable."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import torch

from phys.device import SIZES, Device, DeviceInfo, validate_batch

__all__ = ["Simulator", "simulator_info"]

DTYPES = (torch.float32, torch.float64)


def simulator_info(name: str, n_in: int, n_out: int, *, in_range: tuple[float, float],
                   max_batch: int, noise: float, dtype: torch.dtype,
                   extra: dict[str, Any]) -> DeviceInfo:
    """The :class:`~phys.DeviceInfo` of a simulator: differentiable, stochastic when it has
    detector noise; checks the arithmetic ``dtype`` (float32 or float64)."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    lo, hi = (float(v) for v in in_range)
    return DeviceInfo(name=name, n_in=n_in, n_out=n_out, in_min=lo, in_max=hi,
                      max_batch=max_batch, differentiable=True, stochastic=noise > 0,
                      extra=extra)


class Simulator(Device):
    """A device computed in torch, so gradients through it exist.

    Subclasses implement :meth:`_forward`, a differentiable map from a validated batch
    ``(b, n_in)`` to ``(b, n_out)``. :meth:`query` runs it without autograd (as for any
    device); :meth:`simulate` runs it with autograd for in-silico baselines; :meth:`vjp`
    gives vector-Jacobian products.
    """

    sizes = SIZES

    @abstractmethod
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """Differentiable forward map on a validated batch."""

    def _query(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward(x)

    def simulate(self, x: Any) -> torch.Tensor:
        """Differentiable forward: like :meth:`query` but keeps the autograd graph.

        Input values are validated as in :meth:`query`; the batch is not split and
        :attr:`stats` is not updated (nothing is measured on hardware). As for
        :meth:`query`, the input moves to :attr:`torch_device` and the result back to
        the input's torch device (differentiably).
        """
        if self._closed:
            raise RuntimeError(f"device {self.info.name!r} is closed")
        x = x if isinstance(x, torch.Tensor) else torch.as_tensor(x)
        validate_batch(x, self.info)  # raises before any computation
        single = x.ndim == 1
        y = self._forward(x.reshape(-1, self.info.n_in).to(self.torch_device)).to(x.device)
        return y[0] if single else y

    def vjp(self, x: torch.Tensor, grad_out: torch.Tensor) -> torch.Tensor:
        """``grad_out @ J(x)``: shapes ``x (B, n_in)``, ``grad_out (B, n_out)`` -> ``(B, n_in)``."""
        x = torch.as_tensor(x).detach().clone().requires_grad_(True)
        with torch.enable_grad():
            y = self.simulate(x)
            (g,) = torch.autograd.grad(y, x, grad_out.to(y.dtype))
        return g
