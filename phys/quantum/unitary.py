"""Unitaries that stay unitary: ``exp(i H)`` of a Hermitian ``H`` built from real numbers.

Pauli-string generators ``H = sum_k theta_k P_k`` with real ``theta`` are Hermitian, and
:func:`hermitian_exp` computes ``exp(i t H)`` as ``V diag(exp(i t lambda)) V^dagger`` from
the eigendecomposition ``H = V diag(lambda) V^dagger``: unit-modulus phases between a
unitary ``V`` and its inverse, so the result is unitary to the precision of ``V`` whatever
the size of ``H`` or how far training moves ``theta``.
"""

from __future__ import annotations

import itertools
import math

import torch

__all__ = ["hermitian_exp", "pauli_strings", "pauli_sum", "reupload", "unitarity_error"]

_PAULI = {
    "I": ((1, 0), (0, 1)),
    "X": ((0, 1), (1, 0)),
    "Y": ((0, -1j), (1j, 0)),
    "Z": ((1, 0), (0, -1)),
}


def pauli_strings(n_qubits: int) -> list[str]:
    """The ``4**n - 1`` non-identity Pauli strings in ``itertools.product("IXYZ")`` order."""
    return ["".join(s) for s in itertools.product("IXYZ", repeat=n_qubits)][1:]


def pauli_sum(theta: torch.Tensor, n_qubits: int) -> torch.Tensor:
    """``H = sum_k theta_k P_k`` over :func:`pauli_strings` (``P_1 = I..IX``, ...).

    Built axis by axis (one qubit's Pauli index at a time), never storing the ``4**n - 1``
    matrices: ``O(4**n * n)`` work.

    Shape: ``theta (..., 4**n - 1)`` real -> ``(..., 2**n, 2**n)`` complex, Hermitian
    (complex128 for float64 ``theta``, else complex64).
    """
    if theta.shape[-1] != 4 ** n_qubits - 1:
        raise ValueError(f"pauli_sum: {n_qubits} qubits take {4 ** n_qubits - 1} "
                         f"coefficients, got {theta.shape[-1]}")
    cdtype = torch.complex128 if theta.dtype == torch.float64 else torch.complex64
    lead = theta.shape[:-1]
    full = torch.cat([theta.new_zeros(*lead, 1), theta], dim=-1).to(cdtype)
    sigma = torch.tensor([_PAULI[p] for p in "IXYZ"], dtype=cdtype, device=theta.device)
    out = full.reshape(-1, 4 ** n_qubits, 1, 1)  # (L, paulis left, rows so far, cols so far)
    for _ in range(n_qubits):
        batch, rest, rows, cols = out.shape
        out = torch.einsum("larxy,aij->lrxiyj", out.reshape(batch, 4, rest // 4, rows, cols),
                           sigma).reshape(batch, rest // 4, rows * 2, cols * 2)
    dim = 2 ** n_qubits
    return out.reshape(*lead, dim, dim)


def _divided_differences(lam: torch.Tensor, t: float) -> torch.Tensor:
    """``(f(l_j) - f(l_k)) / (l_j - l_k)`` of ``f(x) = exp(i t x)``, finite at ``l_j = l_k``."""
    mean = (lam.unsqueeze(-1) + lam.unsqueeze(-2)) / 2
    diff = lam.unsqueeze(-1) - lam.unsqueeze(-2)
    return (t * torch.sinc(t * diff / (2 * math.pi))) \
        * torch.polar(torch.ones_like(mean), t * mean + math.pi / 2)


class _HermitianExp(torch.autograd.Function):
    """``exp(i t H)`` through ``eigh``, with the Daleckii-Krein derivative in backward.

    For ``f(x) = exp(i t x)`` the derivative in direction ``E`` is
    ``V (Phi * (V^H E V)) V^H`` with ``Phi_jk = (f(l_j) - f(l_k)) / (l_j - l_k)``
    ``= i t exp(i t (l_j + l_k) / 2) sinc(t (l_j - l_k) / 2)``: finite for equal
    eigenvalues, where differentiating ``eigh`` itself would divide by zero.
    """

    @staticmethod
    def forward(ctx, h: torch.Tensor, t: float) -> torch.Tensor:  # type: ignore[override]
        lam, vec = torch.linalg.eigh(h)
        cdtype = torch.complex128 if lam.dtype == torch.float64 else torch.complex64
        phase = torch.polar(torch.ones_like(lam), lam * t)
        v = vec.to(cdtype)
        ctx.save_for_backward(lam, vec)
        ctx.t = t
        return (v * phase.unsqueeze(-2)) @ v.mH

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        lam, vec = ctx.saved_tensors
        phi = _divided_differences(lam, ctx.t)
        v = vec.to(grad.dtype)
        inner = v.mH @ grad @ v
        g = v @ (phi.conj().to(grad.dtype) * inner) @ v.mH
        return (g.real if not vec.is_complex() else g), None


def hermitian_exp(h: torch.Tensor, t: float = 1.0) -> torch.Tensor:
    """``exp(i t H)`` for Hermitian (or real symmetric) ``H``, differentiable.

    Only the lower triangle of ``H`` is read (as :func:`torch.linalg.eigh` does) and the
    gradient is that of the matrix function of the whole ``H``: build ``H`` Hermitian by
    construction, e.g. ``(M + M^H) / 2``.

    Shape: ``(..., d, d)`` -> ``(..., d, d)`` complex (complex128 from float64 or complex128).

    Examples::

        >>> import torch
        >>> h = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
        >>> u = hermitian_exp(h, torch.pi / 2)  # exp(i pi/2 X) = i X
        >>> torch.allclose(u, torch.tensor([[0, 1j], [1j, 0]]), atol=1e-6)
        True
    """
    return _HermitianExp.apply(h, float(t))


def _orthogonal_apply(v: torch.Tensor, z: torch.Tensor, transpose: bool = False) -> torch.Tensor:
    """``V z`` (or ``V^T z``) per sample for real ``V (B, d, d)`` and complex ``z (B, d)``,
    as one real batched product on the real and imaginary parts."""
    m = v.mT if transpose else v
    return torch.view_as_complex((m @ torch.view_as_real(z)).contiguous())


class _Reupload(torch.autograd.Function):
    """``psi <- W_r exp(i t H) psi`` for ``r = 0 .. R-1`` from ``|+>^n``, never forming
    ``exp(i t H)``: with ``H = V diag(l) V^T`` (real symmetric ``H``, so real ``V``) each
    data step is ``V (exp(i t l) * (V^T psi))``. Backward gathers the data steps' gradient
    in the eigenbasis, ``S = sum_r (V^T g_r)(V^T psi_r)^H`` (rank ``R``), and returns
    ``V Re(conj(Phi) * S) V^T`` (Daleckii-Krein, as :class:`_HermitianExp`): two real
    products per sample instead of forming and differentiating the matrix exponential.
    """

    @staticmethod
    def forward(ctx, h: torch.Tensor, trained: torch.Tensor,  # type: ignore[override]
                t: float) -> torch.Tensor:
        lam, vec = torch.linalg.eigh(h)  # (B, d), (B, d, d) real
        vec = vec.to(trained.real.dtype)
        phase = torch.polar(torch.ones_like(lam), lam * t).to(trained.dtype)  # (B, d)
        batch, dim = lam.shape
        psi = torch.full((batch, dim), dim ** -0.5, dtype=trained.dtype, device=h.device)
        data_in, trained_in = [], []
        for w in trained:
            a = _orthogonal_apply(vec, psi, transpose=True)  # the state in H's eigenbasis
            data_in.append(a)
            psi = _orthogonal_apply(vec, phase * a)
            trained_in.append(psi)
            psi = psi @ w.mT
        ctx.save_for_backward(lam, vec, phase, trained, torch.stack(data_in, -1),
                              torch.stack(trained_in))
        ctx.t = t
        return psi

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        lam, vec, phase, trained, data_in, trained_in = ctx.saved_tensors
        g = grad
        grad_trained = torch.empty_like(trained) if ctx.needs_input_grad[1] else None
        data_out = []
        for r in range(len(trained) - 1, -1, -1):
            if grad_trained is not None:  # sum over the batch of g psi^H
                grad_trained[r] = g.mT @ trained_in[r].conj()
            g = g @ trained[r].conj()  # W_r^H g, row-wise
            a = _orthogonal_apply(vec, g, transpose=True)
            data_out.append(a)
            if r:  # the gradient reaching the previous step (none for the fixed |+>^n)
                g = _orthogonal_apply(vec, phase.conj() * a)
        grad_h = None
        if ctx.needs_input_grad[0]:
            s = torch.stack(data_out[::-1], -1) @ data_in.mH  # (B, d, d)
            phi = _divided_differences(lam, ctx.t).to(s.dtype)
            grad_h = (vec @ (phi.conj() * s).real @ vec.mT).to(lam.dtype)
        return grad_h, grad_trained, None


def reupload(h: torch.Tensor, trained: torch.Tensor, t: float) -> torch.Tensor:
    """Data re-uploading from ``|+>^n``: ``psi <- trained[r] @ exp(i t H) @ psi`` for each
    ``r``, differentiable in ``H`` and ``trained``.

    The data unitary is applied through the eigendecomposition of ``H`` and never formed;
    the gradient with respect to ``H`` is that of the matrix function (finite for equal
    eigenvalues), as with :func:`hermitian_exp`.

    Shape: ``h (B, d, d)`` real symmetric, ``trained (R, d, d)`` complex -> ``(B, d)``
    complex, of ``trained``'s dtype.
    """
    if h.is_complex():
        raise ValueError("reupload: H must be real symmetric")
    return _Reupload.apply(h, trained, float(t))


def unitarity_error(u: torch.Tensor) -> float:
    """``max |U^dagger U - I|`` over all entries and all matrices of ``u (..., d, d)``."""
    eye = torch.eye(u.shape[-1], dtype=u.dtype, device=u.device)
    u = u.detach()
    return float((u.mH @ u - eye).abs().max()) if u.numel() else 0.0
