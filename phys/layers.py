"""PhysicalLayer: a fixed physical system followed by a small trainable digital map."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from phys.device import Device

__all__ = ["PhysicalLayer", "check_chain", "rms_normalize", "seeded_linear"]

_ACTIVATIONS = {"relu": torch.relu, "abs": torch.abs}


def rms_normalize(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Divide each row by its root-mean-square. Shape ``(B, n) -> (B, n)``."""
    return x / x.square().mean(dim=-1, keepdim=True).add(eps).sqrt()


def seeded_linear(in_features: int, out_features: int, generator: torch.Generator) -> nn.Linear:
    """``nn.Linear`` with its default initialisation drawn from ``generator`` (the global
    RNG is left alone)."""
    linear = nn.utils.skip_init(nn.Linear, in_features, out_features)
    bound = 1 / math.sqrt(in_features)
    with torch.no_grad():
        linear.weight.uniform_(-bound, bound, generator=generator)
        linear.bias.uniform_(-bound, bound, generator=generator)
    return linear


def check_chain(layers: Sequence[PhysicalLayer], network: str) -> None:
    """``ValueError`` unless there is a layer and each takes the previous one's output."""
    if not layers:
        raise ValueError(f"a {network} needs at least one layer")
    for i in range(1, len(layers)):
        if layers[i].in_features != layers[i - 1].out_features:
            raise ValueError(
                f"layer {i} takes {layers[i].in_features} inputs but layer {i - 1} "
                f"gives {layers[i - 1].out_features}"
            )


class PhysicalLayer(nn.Module):
    """One layer of a physical network (PhyLL): physics, skip, linear, nonlinearity.

    ``x`` is mapped into the device's input range, measured by the device without
    gradient, and the measurement ``m`` is concatenated with ``x`` (skip connection).
    Only the digital part is trainable::

        u = in_min + (in_max - in_min) * (1 + tanh(gain * rms_normalize(x @ P))) / 2
        m = device.query(u)                       # no autograd through the physics
        y = act(Linear([rms_normalize(m), rms_normalize(x)]))

    ``P`` is omitted (the identity) when ``in_features == device.info.n_in`` and otherwise a
    fixed random ``(in_features, n_in)`` projection (a buffer, part of the fixed physics).

    Args:
        device: The physical system; any :class:`~phys.Device`.
        in_features: Size of each input vector ``x``.
        out_features: Size of each output vector ``y``.
        activation: ``"relu"`` or ``"abs"``.
        gain: Slope of the tanh that maps normalised inputs into the device range.
        seed: Seeds the fixed projection and the initial digital weights.

    Shape:
        - Input: ``(B, in_features)``, any real values.
        - Output: ``(B, out_features)``, non-negative.

    Examples::

        >>> import phys, torch
        >>> layer = phys.PhysicalLayer(phys.open("cavity", n_in=8, n_out=16), 8, 32)
        >>> layer(torch.randn(4, 8)).shape
        torch.Size([4, 32])
    """

    def __init__(
        self,
        device: Device,
        in_features: int,
        out_features: int,
        *,
        activation: str = "relu",
        gain: float = 1.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}"
            )
        if not (math.isfinite(gain) and gain > 0):
            raise ValueError(f"gain must be a positive number, got {gain}")
        self.device = device
        self.in_features, self.out_features = in_features, out_features
        self.activation, self.gain = activation, gain
        info = device.info
        gen = torch.Generator().manual_seed(seed)
        projection: torch.Tensor | None = None  # equal widths: x drives the device directly
        if in_features != info.n_in:
            projection = torch.randn(in_features, info.n_in, generator=gen)
            projection /= math.sqrt(in_features)
        self.register_buffer("projection", projection)
        self.register_buffer("in_min", torch.tensor(info.in_min))
        self.register_buffer("in_max", torch.tensor(info.in_max))
        self.linear = seeded_linear(info.n_out + in_features, out_features, gen)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Map layer inputs ``(B, in_features)`` to device inputs ``(B, n_in)`` in range."""
        z = rms_normalize(x if self.projection is None else x @ self.projection)
        unit = (1 + torch.tanh(self.gain * z)) / 2
        u = self.in_min + (self.in_max - self.in_min) * unit
        return u.clamp(self.in_min, self.in_max)

    def measure(self, x: torch.Tensor) -> torch.Tensor:
        """Query the physics for inputs ``(B, in_features)``; returns ``(B, n_out)``."""
        with torch.no_grad():
            return self.device.query(self.encode(x.detach()))

    def skip(self, x: torch.Tensor) -> torch.Tensor:
        """The skip path's share of the linear map, ``W_x @ rms_normalize(x)``:
        ``(B, in_features) -> (B, out_features)``, without the bias."""
        return rms_normalize(x) @ self.linear.weight[:, self.device.info.n_out:].T

    def digital(self, measured: torch.Tensor, x: torch.Tensor | None, *,
                skip: torch.Tensor | None = None) -> torch.Tensor:
        """Trainable part on a measurement ``(B, n_out)`` and the layer input ``(B, in)``.

        ``skip``, when given, replaces ``self.skip(x)`` (and ``x`` may be ``None``): callers
        whose rows share most of their inputs compute it more cheaply.
        """
        if skip is None:
            if x is None:
                raise ValueError("digital() needs the layer input x or its skip term")
            skip = self.skip(x)
        n_out = self.device.info.n_out
        z = rms_normalize(measured) @ self.linear.weight[:, :n_out].T + skip + self.linear.bias
        return _ACTIVATIONS[self.activation](z)

    def forward(self, x: torch.Tensor,
                physics: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """``physics`` replaces the measurement for baselines that need gradients through
        it: a map from device inputs ``(B, n_in)`` (with autograd) to ``(B, n_out)``, e.g.
        ``layer.device.simulate``. ``None`` queries the device without gradient."""
        if physics is None:
            return self.digital(self.measure(x), x)
        return self.digital(physics(self.encode(x)), x)

    def extra_repr(self) -> str:
        return (f"device={self.device.info.name!r}, in_features={self.in_features}, "
                f"out_features={self.out_features}, activation={self.activation!r}")
