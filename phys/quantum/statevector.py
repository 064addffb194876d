"""Batched state vectors in torch: the primitives of the ``"torch"`` quantum backend.

A state of ``n`` qubits for a batch of ``B`` circuits is a complex tensor of shape
``(B, 2**n)``; viewed as ``(B, 2, ..., 2)`` its axis ``1 + w`` is wire ``w``, and wire 0 is
the most significant bit of the basis index, as in PennyLane. Every function here is
vectorised over the batch and differentiable with autograd.
"""

from __future__ import annotations

import functools
import os

import torch

__all__ = [
    "angle_embedding",
    "apply_single",
    "check_memory",
    "check_state_memory",
    "cnot_ring_permutation",
    "expval_z",
    "rot",
    "state_bytes",
]


def state_bytes(n_qubits: int, batch: int = 1, dtype: torch.dtype = torch.complex64) -> int:
    """Bytes of a batch of ``n_qubits``-qubit state vectors of ``dtype``."""
    itemsize = torch.empty(0, dtype=dtype).element_size()
    return batch * (2 ** n_qubits) * itemsize


@functools.lru_cache(maxsize=1)
def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return None


def _human(n_bytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if n_bytes < 1024 or unit == "EiB":
            return f"{n_bytes:.3g} {unit}"
        n_bytes /= 1024
    return f"{n_bytes:.3g} EiB"  # pragma: no cover


def check_memory(need: int, what: str) -> None:
    """``ValueError`` starting with ``what`` when ``need`` bytes exceed this machine's memory."""
    have = _memory_bytes()
    if have is not None and need > have:
        raise ValueError(f"{what}: {_human(need)}; this machine has {_human(have)} of memory")


def check_state_memory(n_qubits: int, batch: int = 1, *, dtype: torch.dtype = torch.complex64,
                       where: str = "state vector", copies: int = 1) -> None:
    """``ValueError`` when ``copies`` batched state vectors would not fit in this machine's
    memory, saying how much they would take."""
    check_memory(copies * state_bytes(n_qubits, batch, dtype),
                 f"{where}: {n_qubits} qubits for a batch of {batch} need {copies} x 2**"
                 f"{n_qubits} amplitudes of {dtype}")


def angle_embedding(x: torch.Tensor, dtype: torch.dtype = torch.complex64) -> torch.Tensor:
    """``RX(x_w)`` on every wire ``w`` of ``|0...0>``: the product state, ``(B, n) -> (B, 2**n)``.

    ``RX(a)|0> = cos(a/2)|0> - i sin(a/2)|1>``; this equals PennyLane's
    ``AngleEmbedding(x, rotation="X")``.
    """
    half = x / 2
    zero = torch.zeros_like(half)
    qubits = torch.stack([torch.complex(half.cos(), zero), torch.complex(zero, -half.sin())],
                         dim=-1).to(dtype)  # (B, n, 2)
    state = qubits[:, 0]
    for w in range(1, x.shape[-1]):
        state = (state[:, :, None] * qubits[:, w, None, :]).reshape(x.shape[0], -1)
    return state


def rot(weights: torch.Tensor, dtype: torch.dtype = torch.complex64) -> torch.Tensor:
    """PennyLane's ``Rot(phi, theta, omega) = RZ(omega) RY(theta) RZ(phi)`` as 2x2 matrices.

    Shape: ``(..., 3) -> (..., 2, 2)``.
    """
    phi, theta, omega = weights.unbind(-1)
    c, s = (theta / 2).cos(), (theta / 2).sin()
    one = torch.ones_like(phi)
    a = torch.polar(one, -(phi + omega) / 2).to(dtype)  # e^{-i(phi+omega)/2}
    b = torch.polar(one, (phi - omega) / 2).to(dtype)   # e^{ i(phi-omega)/2}
    c, s = c.to(dtype), s.to(dtype)
    top = torch.stack([a * c, -b * s], dim=-1)
    bottom = torch.stack([b.conj() * s, a.conj() * c], dim=-1)
    return torch.stack([top, bottom], dim=-2)


def apply_single(state: torch.Tensor, gate: torch.Tensor, wire: int, n_qubits: int
                 ) -> torch.Tensor:
    """Apply a 2x2 ``gate`` (shared by the batch) to ``wire``: ``(B, 2**n) -> (B, 2**n)``.

    The state is viewed as ``(B * 2**wire, 2, 2**(n - wire - 1))`` so the target axis is the
    middle one, and all blocks are multiplied at once.
    """
    batch = state.shape[0]
    blocks = state.reshape(batch * 2 ** wire, 2, 2 ** (n_qubits - wire - 1))
    return torch.matmul(gate, blocks).reshape(batch, -1)


def cnot_ring_permutation(n_qubits: int, rng: int) -> torch.Tensor:
    """The CNOTs ``CNOT(w, (w + rng) % n)`` for ``w = 0 .. n-1`` (in that order), the
    entangler of one strongly-entangling layer, as one permutation of basis indices.

    CNOTs permute basis states, so their product is a permutation ``p``: the state after
    the gates is ``state[:, p]``.
    """
    index = torch.arange(2 ** n_qubits)
    target = index.clone()  # basis state b goes to target[b]
    for w in range(n_qubits):
        control_bit = (target >> (n_qubits - 1 - w)) & 1
        target ^= control_bit << (n_qubits - 1 - (w + rng) % n_qubits)
    perm = torch.empty_like(target)
    perm[target] = index
    return perm


def expval_z(state: torch.Tensor, n_qubits: int) -> torch.Tensor:
    """``<Z_w>`` on every wire ``w`` of states ``(B, 2**n)``; returns ``(B, n)``, real."""
    probs = torch.view_as_real(state).square().sum(-1)
    batch = probs.shape[0]
    out = []
    for w in range(n_qubits):
        p = probs.reshape(batch, 2 ** w, 2, -1).sum((1, 3))  # (B, 2): P(wire w = 0), P(= 1)
        out.append(p[:, 0] - p[:, 1])
    return torch.stack(out, dim=-1)
