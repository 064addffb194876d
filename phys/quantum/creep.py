"""Quantum replacements for classical layers ("Let the Quantum Creep In", arXiv 2409.17583).

:class:`FlippedQuanv3x3` stands in for a 3x3 ``nn.Conv2d`` and
:class:`DataReUploadingLinear` for an ``nn.Linear``. Their parameters are real and every
unitary is ``exp(i H)`` of a Hermitian ``H`` (:mod:`phys.quantum.unitary`), so the layers
stay exactly unitary however long they train.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812 - torch's convention

from phys.quantum.statevector import check_memory
from phys.quantum.unitary import hermitian_exp, pauli_sum, reupload

__all__ = ["DataReUploadingLinear", "FlippedQuanv3x3", "quanv_direct"]


def _pair(value: int | tuple[int, int], name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, int) for v in pair):
        raise ValueError(f"FlippedQuanv3x3: {name} must be an int or a pair of ints, "
                         f"got {value!r}")
    return pair  # type: ignore[return-value]


def _check_features(cls: str, **values: int) -> None:
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{cls}: {key} must be an int >= 1, got {value!r}")


def _unitaries(theta: torch.Tensor, n_qubits: int) -> torch.Tensor:
    """``exp(i sum_k theta_k P_k)`` over the last axis of real ``theta``, in complex128,
    returned as complex64 unless ``theta`` is float64."""
    u = hermitian_exp(pauli_sum(theta.double(), n_qubits))
    return u if theta.dtype == torch.float64 else u.to(torch.complex64)


class FlippedQuanv3x3(nn.Module):
    r"""A 3x3 convolution whose kernels are two-qubit quantum states ("flipped" quanvolution).

    For every (output, input) channel pair a two-qubit state
    :math:`|\psi\rangle = \exp(i \sum_k \theta_k P_k)|00\rangle` is prepared, the sum over the 15
    non-identity two-qubit Pauli strings (``itertools.product("IXYZ", repeat=2)`` order, real
    :math:`\theta`). The data is the observable: each 3x3 input patch ``M``, zero-padded on the
    right and bottom to 4x4 and symmetrised, :math:`H = (M + M^T)/2`. An output pixel is the
    mean over input channels of :math:`\langle\psi|H|\psi\rangle`, plus a bias.

    That expectation is linear in the patch:
    :math:`\langle\psi|H|\psi\rangle = \sum_{ab} \mathrm{Re}(\rho)_{ab} M_{ab}` with
    :math:`\rho = |\psi\rangle\langle\psi|`, so the layer runs as one ``conv2d`` whose kernel is
    the top-left 3x3 block of :math:`\mathrm{Re}(\rho)` divided by ``in_channels``.
    :func:`quanv_direct` computes the same patch by patch.

    Args:
        in_channels: Input channels ``C_in``.
        out_channels: Output channels ``C_out``.
        stride: Convolution stride (as in ``nn.Conv2d``).
        padding: Zero padding added to both sides (as in ``nn.Conv2d``).

    Shape:
        - Input: ``(B, C_in, H, W)``.
        - Output: ``(B, C_out, H_out, W_out)`` with
          ``H_out = (H + 2 padding - 3) // stride + 1`` (likewise ``W_out``).

    Attributes:
        weight: ``(C_out, C_in, 15)`` real Pauli coefficients :math:`\theta`, standard normal
            at initialisation.
        bias: ``(C_out,)``, standard normal at initialisation.

    Examples::

        >>> import torch
        >>> conv = FlippedQuanv3x3(1, 4)
        >>> conv(torch.rand(2, 1, 8, 8)).shape
        torch.Size([2, 4, 6, 6])
    """

    kernel_size = (3, 3)

    def __init__(self, in_channels: int, out_channels: int, *,
                 stride: int | tuple[int, int] = 1,
                 padding: int | tuple[int, int] = 0) -> None:
        super().__init__()
        _check_features("FlippedQuanv3x3", in_channels=in_channels, out_channels=out_channels)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.stride, self.padding = _pair(stride, "stride"), _pair(padding, "padding")
        if min(self.stride) < 1 or min(self.padding) < 0:
            raise ValueError(f"FlippedQuanv3x3: stride must be >= 1 and padding >= 0, got "
                             f"stride={stride!r}, padding={padding!r}")
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 15))
        self.bias = nn.Parameter(torch.randn(out_channels))

    def unitaries(self) -> torch.Tensor:
        """``(C_out, C_in, 4, 4)``: ``exp(i sum_k theta_k P_k)`` per channel pair (computed in
        complex128; complex64 for float32 weights)."""
        return _unitaries(self.weight, 2)

    def states(self) -> torch.Tensor:
        r"""``(C_out, C_in, 4)``: :math:`|\psi\rangle`, the first column of each unitary."""
        return self.unitaries()[..., 0]

    def kernel(self) -> torch.Tensor:
        """``(C_out, C_in, 3, 3)``: the effective convolution kernel ``Re(rho)[:3, :3] / C_in``."""
        psi = self.states()[..., :3]
        re_rho = (psi.unsqueeze(-1) * psi.conj().unsqueeze(-2)).real
        return re_rho / self.in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.kernel().to(x.dtype), self.bias.to(x.dtype),
                        stride=self.stride, padding=self.padding)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size=(3, 3), "
                f"stride={self.stride}, padding={self.padding}")


def quanv_direct(x: torch.Tensor, layer: FlippedQuanv3x3) -> torch.Tensor:
    r""":class:`FlippedQuanv3x3` computed as written, patch by patch: each 3x3 patch is padded
    to 4x4 and symmetrised into an observable ``H`` and :math:`\langle\psi|H|\psi\rangle` is
    evaluated for every (output, input) channel pair (vectorised over patches).

    For tests and benchmarks: it builds a complex 4x4 matrix per patch and channel, which
    the layer's ``conv2d`` never does. Same shapes as the layer.
    """
    batch, channels, height, width = x.shape
    ph, pw = layer.padding
    sh, sw = layer.stride
    h_out, w_out = (height + 2 * ph - 3) // sh + 1, (width + 2 * pw - 3) // sw + 1
    patches = F.unfold(x, 3, padding=layer.padding, stride=layer.stride)  # (B, C*9, L)
    patches = patches.view(batch, channels, 3, 3, -1).permute(0, 4, 1, 2, 3)  # (B, L, C, 3, 3)
    m = F.pad(patches, (0, 1, 0, 1))  # (B, L, C, 4, 4): padded right and bottom
    psi = layer.states()  # (O, C, 4)
    observable = ((m + m.transpose(-1, -2)) / 2).to(psi.dtype)
    h_psi = torch.einsum("blcij,ocj->bloci", observable, psi)  # (B, L, O, C, 4)
    expect = (psi.conj() * h_psi).sum(-1).real  # (B, L, O, C)
    out = expect.mean(-1) + layer.bias  # (B, L, O)
    return out.permute(0, 2, 1).reshape(batch, layer.out_channels, h_out, w_out)


class DataReUploadingLinear(nn.Module):
    r"""A linear layer replaced by a data re-uploading circuit on ``n`` qubits.

    The input vector is zero-padded to :math:`4^n`, reshaped to :math:`2^n \times 2^n` and
    symmetrised into a Hermitian :math:`H(x) = (M + M^T)/2`. From :math:`|+\rangle^{\otimes n}`
    each of ``reps`` repetitions applies :math:`\exp(i H(x) / \mathrm{reps})` and then a
    trainable :math:`\exp(i \sum_k \theta_{r,k} P_k)` over all :math:`4^n - 1` non-identity
    Pauli strings (real :math:`\theta`). The outputs are the probabilities of the basis states
    ``0 .. out_features - 1``, times ``gain``, plus a bias.

    Probabilities lie in ``[0, 1]`` and the ten of a 7-qubit state start near
    :math:`2^{-7}`, so with ``gain=1`` the logits hardly differ and cross-entropy training
    is slow. ``gain=2**n`` reads each probability relative to the uniform state's (1 for
    :math:`|+\rangle^{\otimes n}`): a fixed classical factor after the measurement, so the
    circuit stays exactly unitary. The paper's code gets a gain of that size differently:
    its complex-typed coefficients let the "unitaries" grow the state's norm.

    Args:
        in_features: Input size.
        out_features: Output size.
        reps: Repetitions (data unitary, trainable unitary).
        n_qubits: Qubits; by default the fewest with :math:`4^n \geq` ``in_features + 1`` and
            :math:`2^n \geq` ``out_features``.
        gain: Factor on the measured probabilities: a number (default 1: the probabilities
            themselves) or ``"uniform"`` for ``2**n_qubits``, which makes the uniform state
            read 1.

    Shape:
        - Input: ``(*, in_features)``.
        - Output: ``(*, out_features)``.

    Attributes:
        weight: ``(reps, 4**n - 1)`` real Pauli coefficients, standard normal at
            initialisation.
        bias: ``(out_features,)``, standard normal at initialisation.

    Examples::

        >>> import torch
        >>> layer = DataReUploadingLinear(12, 3, reps=2)
        >>> layer.n_qubits, layer(torch.rand(5, 12)).shape
        (2, torch.Size([5, 3]))
    """

    def __init__(self, in_features: int, out_features: int, reps: int = 10, *,
                 n_qubits: int | None = None, gain: float | str = 1.0) -> None:
        super().__init__()
        _check_features("DataReUploadingLinear", in_features=in_features,
                        out_features=out_features, reps=reps)
        least = 1
        while 4 ** least < in_features + 1 or 2 ** least < out_features:
            least += 1
        if n_qubits is None:
            n_qubits = least
        _check_features("DataReUploadingLinear", n_qubits=n_qubits)
        if n_qubits < least:
            raise ValueError(f"DataReUploadingLinear: {in_features} inputs and {out_features} "
                             f"outputs need n_qubits >= {least}, got {n_qubits}")
        check_memory(4 ** n_qubits * 8, f"DataReUploadingLinear: {n_qubits} qubits need a "
                     f"2**{n_qubits} x 2**{n_qubits} complex64 unitary per sample")
        if gain == "uniform":
            gain = 2 ** n_qubits
        if isinstance(gain, bool) or not isinstance(gain, int | float) \
                or not math.isfinite(gain) or gain <= 0:
            raise ValueError(f"DataReUploadingLinear: gain must be a finite number > 0 or "
                             f"'uniform', got {gain!r}")
        self.in_features, self.out_features = in_features, out_features
        self.reps, self.n_qubits, self.gain = reps, n_qubits, float(gain)
        self.weight = nn.Parameter(torch.randn(reps, 4 ** n_qubits - 1))
        self.bias = nn.Parameter(torch.randn(out_features))

    def unitaries(self) -> torch.Tensor:
        """``(reps, 2**n, 2**n)``: the trainable unitaries (computed in complex128; complex64
        for float32 weights)."""
        return _unitaries(self.weight, self.n_qubits)

    def hamiltonian(self, x: torch.Tensor) -> torch.Tensor:
        """``H(x)``: ``(B, in_features) -> (B, 2**n, 2**n)`` real symmetric."""
        dim = 2 ** self.n_qubits
        m = F.pad(x, (0, dim * dim - self.in_features)).reshape(-1, dim, dim)
        return (m + m.transpose(-1, -2)) / 2

    def data_unitaries(self, x: torch.Tensor) -> torch.Tensor:
        """``exp(i H(x) / reps)`` per sample: ``(B, in_features) -> (B, 2**n, 2**n)``."""
        h = self.hamiltonian(x)
        return hermitian_exp(h.float() if h.dtype != torch.float64 else h, 1.0 / self.reps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1:] != (self.in_features,):
            raise ValueError(f"DataReUploadingLinear: input must have shape "
                             f"(*, {self.in_features}), got {tuple(x.shape)}")
        lead = x.shape[:-1]
        flat = x.reshape(-1, self.in_features)
        h = self.hamiltonian(flat)
        h = h.float() if h.dtype != torch.float64 else h
        trained = self.unitaries()  # (reps, d, d)
        state = reupload(h, trained.to(torch.complex128 if h.dtype == torch.float64
                                       else torch.complex64), 1.0 / self.reps)  # (B, d)
        amplitudes = state[:, :self.out_features]
        probs = torch.view_as_real(amplitudes).square().sum(-1)
        out = self.gain * probs.to(x.dtype) + self.bias.to(x.dtype)
        return out.reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"reps={self.reps}, n_qubits={self.n_qubits}, gain={self.gain:g}")
