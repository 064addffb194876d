"""Local goodness and losses of physical local learning (PhyLL; Momeni et al., Science
382:1297, 2023, and Hinton's forward-forward).

A block's *goodness* scores its output for one input with a label embedded; its *loss*
pushes the goodness of the true label (positive) above that of wrong labels (negatives).

Examples::

    >>> import torch
    >>> y, xi = torch.rand(4, 8), torch.randn(8)
    >>> g = cosine(y, xi)
    >>> contrast_loss(g[:2], g[2:].view(2, 1), theta=8.0).ndim
    0
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["contrast_loss", "cosine", "meansquare", "softmax_loss", "threshold_loss"]


def cosine(y: torch.Tensor, xi: torch.Tensor) -> torch.Tensor:
    """Cosine between each output row and a fixed direction ``xi`` (PhyLL).

    Shape: ``y (B, n), xi (n,) -> (B,)``, in ``[-1, 1]``; blind to the scale of ``y``.
    """
    return F.cosine_similarity(y, xi.unsqueeze(0), dim=1, eps=1e-8)


def meansquare(y: torch.Tensor) -> torch.Tensor:
    """Mean of the squared outputs (Hinton's forward-forward). Shape: ``(B, n) -> (B,)``."""
    return y.square().mean(dim=1)


def _check_pair(g_pos: torch.Tensor, g_neg: torch.Tensor) -> None:
    if g_pos.ndim != 1 or g_neg.ndim != 2 or g_neg.shape[0] != g_pos.shape[0]:
        raise ValueError(f"g_pos must be (B,) and g_neg (B, K), got {tuple(g_pos.shape)} and "
                         f"{tuple(g_neg.shape)}")


def contrast_loss(g_pos: torch.Tensor, g_neg: torch.Tensor, theta: float) -> torch.Tensor:
    """``softplus(-theta (g_pos - g_neg))`` averaged over samples and negatives.

    Shape: ``g_pos (B,), g_neg (B, K) -> ()``.
    """
    _check_pair(g_pos, g_neg)
    return F.softplus(-theta * (g_pos.unsqueeze(1) - g_neg)).mean()


def softmax_loss(g_pos: torch.Tensor, g_neg: torch.Tensor, theta: float) -> torch.Tensor:
    """Cross-entropy of ``softmax(theta g)`` over a sample's positive and its negatives;
    equal to :func:`contrast_loss` with one negative.

    Shape: ``g_pos (B,), g_neg (B, K) -> ()``.
    """
    _check_pair(g_pos, g_neg)
    logits = theta * torch.cat([g_pos.unsqueeze(1), g_neg], dim=1)
    return F.cross_entropy(logits, logits.new_zeros(len(logits), dtype=torch.long))


def threshold_loss(g_pos: torch.Tensor, g_neg: torch.Tensor, threshold: float) -> torch.Tensor:
    """Hinton's ``softplus(threshold - g_pos) + softplus(g_neg - threshold)``, each averaged.

    Shape: ``g_pos (B,), g_neg (B, K) -> ()``.
    """
    _check_pair(g_pos, g_neg)
    return F.softplus(threshold - g_pos).mean() + F.softplus(g_neg - threshold).mean()
