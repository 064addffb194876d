"""Digital twins for physics-aware training: a model of a device that gives gradients.

A twin is anything with ``vjp(u, grad_out)``: a differentiable simulator with other
parameters than the device (a sim-to-real gap), or a :class:`SurrogateTwin`, a small
network fitted to the device's own answers.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from phys.device import Device, DeviceInfo, validate_batch
from phys.flops import FlopMeter
from phys.nn.functional import seeded_linear
from phys.nn.physics_aware import Twin

__all__ = ["POOR_REL_RMSE", "SurrogateTwin", "Twin"]

LOG = logging.getLogger("phys.progress")
#: Held-out relative RMSE above which a surrogate twin's gradients are called poor.
POOR_REL_RMSE = 0.25
#: Progress lines a twin's fitting logs (evenly over its epochs).
_FIT_LINES = 5


class SurrogateTwin(nn.Module):
    """An MLP ``u -> y`` fitted to a device's answers; its gradients stand in for the
    device's.

    Args:
        info: The device's info (sizes and input range).
        hidden: Width of the hidden layers.
        depth: Number of hidden layers.
        seed: Seeds the weights and the fitting inputs.

    Shape:
        - ``simulate(u)``: ``(B, n_in) -> (B, n_out)``.

    Examples::

        >>> import phys
        >>> dev = phys.open("cavity", n_in=6, n_out=4, n_scatterers=16)
        >>> twin = SurrogateTwin(dev.info, hidden=32)
        >>> report = twin.fit(dev, n_samples=512, epochs=5)
        >>> report["device_samples"]
        512
    """

    def __init__(self, info: DeviceInfo, *, hidden: int = 256, depth: int = 2,
                 seed: int = 0) -> None:
        super().__init__()
        if hidden < 1 or depth < 1:
            raise ValueError(f"hidden and depth must be >= 1, got {hidden}, {depth}")
        self.info, self.seed = info, seed
        sizes = [info.n_in, *([hidden] * depth), info.n_out]
        gen = torch.Generator().manual_seed(seed)
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            layers.append(seeded_linear(a, b, gen))
            if i < depth:
                layers.append(nn.SiLU())
        self.net = nn.Sequential(*layers)
        self.register_buffer("y_mean", torch.zeros(info.n_out))
        self.register_buffer("y_std", torch.ones(info.n_out))
        self.flops = FlopMeter()

    def _unit(self, u: torch.Tensor) -> torch.Tensor:
        """Inputs scaled from the device range to ``[-1, 1]``."""
        lo, hi = self.info.in_min, self.info.in_max
        return (2 * u - (lo + hi)) / (hi - lo)

    def simulate(self, u: torch.Tensor) -> torch.Tensor:
        """Differentiable prediction of the device's answer to ``u``."""
        return self.net(self._unit(u)) * self.y_std + self.y_mean

    def vjp(self, x: torch.Tensor, grad_out: torch.Tensor) -> torch.Tensor:
        x = x.detach().float().requires_grad_(True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(self.simulate(x), x, grad_out.float())
        return g

    def fit(self, device: Device, *, n_samples: int = 8192, epochs: int = 30,
            batch_size: int = 256, lr: float = 2e-3,
            inputs: torch.Tensor | None = None, count_flops: bool = True) -> dict[str, Any]:
        """Query ``device`` on ``inputs`` (default: ``n_samples`` uniform in range) and fit
        the MLP to its answers by mean-squared error. The queries count in
        ``device.stats``; the fitting FLOPs in ``self.flops`` (unless ``count_flops`` is
        false: counting slows a fit several times). Progress goes to the logger
        ``phys.progress``, a few lines per fit.

        Returns:
            ``device_samples`` used, the final relative error ``rel_rmse`` on a held-out
            tenth, and the ``seconds`` the fit took (queries included).
        """
        t0 = time.perf_counter()
        gen = torch.Generator().manual_seed(self.seed + 1)
        if inputs is None:
            lo, hi = self.info.in_min, self.info.in_max
            inputs = lo + (hi - lo) * torch.rand(n_samples, self.info.n_in, generator=gen)
        u = validate_batch(inputs, self.info, where="twin fitting inputs")
        u = u.to(self.y_mean.device)  # answers come back where the inputs are
        LOG.info("twin of %s: measuring %d fitting samples", self.info.name, len(u))
        y = device.query(u)
        self.y_mean.copy_(y.mean(0))
        self.y_std.copy_(y.std(0).clamp_min(1e-6))
        n_val = max(1, len(u) // 10)
        with self.flops.count() if count_flops else contextlib.nullcontext():
            self._train(u[n_val:], y[n_val:], epochs, batch_size, lr, gen)
        with torch.no_grad():
            u_val, y_val = u[:n_val], y[:n_val]
            err = (self.simulate(u_val) - y_val).square().mean().sqrt()
            rel = float(err / y_val.square().mean().sqrt().clamp_min(1e-12))
        seconds = time.perf_counter() - t0
        LOG.info("twin of %s: held-out relative RMSE %.3f (%.1f s)", self.info.name, rel,
                 seconds)
        return {"device_samples": len(u), "rel_rmse": rel, "seconds": seconds}

    def _train(self, u_fit: torch.Tensor, y_fit: torch.Tensor, epochs: int,
               batch_size: int, lr: float, gen: torch.Generator) -> None:
        """Fit the MLP to ``(u_fit, y_fit)`` by Adam on the mean-squared error."""
        opt = torch.optim.Adam(self.net.parameters(), lr=lr)
        steps = epochs * math.ceil(len(u_fit) / batch_size)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, steps))
        target = (y_fit - self.y_mean) / self.y_std
        report_every = max(1, epochs // _FIT_LINES)
        for epoch in range(epochs):
            order = torch.randperm(len(u_fit), generator=gen)
            for start in range(0, len(u_fit), batch_size):
                idx = order[start:start + batch_size]
                loss = F.mse_loss(self.net(self._unit(u_fit[idx])), target[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
            if (epoch + 1) % report_every == 0 and epoch + 1 < epochs:
                LOG.info("twin of %s: fitting epoch %d/%d, loss %.4f", self.info.name,
                         epoch + 1, epochs, loss.item())
