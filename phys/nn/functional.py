"""Stateless pieces of physical layers: normalisation and seeded initialisation."""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["rms_normalize", "seeded_linear"]


def rms_normalize(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Divide each row by its root-mean-square.

    Shape: ``(B, n) -> (B, n)``; an all-zero row stays zero (``eps`` keeps it finite).
    """
    return x / x.square().mean(dim=-1, keepdim=True).add(eps).sqrt()


def seeded_linear(in_features: int, out_features: int, generator: torch.Generator) -> nn.Linear:
    """``nn.Linear`` with its default initialisation drawn from ``generator`` (the global
    RNG is left alone).

    Examples::

        >>> gen = torch.Generator().manual_seed(0)
        >>> seeded_linear(4, 2, gen).weight.shape
        torch.Size([2, 4])
    """
    linear = nn.utils.skip_init(nn.Linear, in_features, out_features)
    bound = 1 / math.sqrt(in_features)
    with torch.no_grad():
        linear.weight.uniform_(-bound, bound, generator=generator)
        linear.bias.uniform_(-bound, bound, generator=generator)
    return linear
