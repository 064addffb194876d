"""QuantumLayer: a trainable variational circuit as a torch module, on two backends."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from phys.quantum.circuits import (
    EXACT_DIFF_METHODS,
    entangler_permutations,
    pennylane_circuit,
    pennylane_device,
    torch_circuit,
)
from phys.quantum.statevector import check_state_memory

__all__ = ["BACKENDS", "QuantumLayer"]

BACKENDS = ("torch", "pennylane")
#: Diff methods that differentiate a circuit by re-running it; PennyLane cannot yet apply
#: them to broadcast (batched) inputs that need gradients (PennyLane issues 4462, 6078).
_SHIFT_DIFF_METHODS = ("parameter-shift", "finite-diff", "spsa", "hadamard")


class QuantumLayer(nn.Module):
    r"""A variational quantum circuit with trainable weights.

    Each input vector is angle-embedded (``RX(x_w)`` on wire ``w``), then ``n_layers``
    strongly-entangling layers act (``Rot(phi, theta, omega)`` on every wire, then a ring of
    CNOTs), and the output is ``<Z>`` on every wire. The circuit is PennyLane's
    ``AngleEmbedding`` + ``StronglyEntanglingLayers``.

    Both backends hold the same parameter, ``weights``, so a state dict moves between them:

    * ``"torch"``: a batched state vector simulated gate by gate in torch (complex64 for
      float32 inputs, complex128 for float64), differentiated by autograd. Exact; fast.
    * ``"pennylane"``: a QNode in a :class:`pennylane.qnn.TorchLayer` on any installed
      PennyLane device (simulator or hardware plugin) with any diff method that handles
      batches; ``shots`` estimates the expectations from samples.

    Args:
        n_qubits: Wires; also the input and output size.
        n_layers: Strongly-entangling layers.
        backend: ``"torch"`` or ``"pennylane"``.
        device: PennyLane device name (``"pennylane"`` backend).
        diff_method: PennyLane diff method (``"pennylane"`` backend), e.g. ``"backprop"``,
            ``"adjoint"``, ``"parameter-shift"``.
        shots: Samples per expectation (``"pennylane"`` backend); ``None``: exact.
        device_options: More keyword options of the PennyLane device.

    Shape:
        - Input: ``(*, n_qubits)`` angles in radians.
        - Output: ``(*, n_qubits)`` in ``[-1, 1]``, the dtype of the input.

    Attributes:
        weights: ``(n_layers, n_qubits, 3)`` ``Rot`` angles, initialised uniformly in
            ``[0, 2 pi)`` (as ``TorchLayer`` does).

    Examples::

        >>> import torch
        >>> layer = QuantumLayer(3, 2)
        >>> layer(torch.rand(5, 3)).shape
        torch.Size([5, 3])
    """

    def __init__(self, n_qubits: int, n_layers: int = 1, *, backend: str = "torch",
                 device: str = "default.qubit", diff_method: str = "backprop",
                 shots: int | None = None,
                 device_options: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        for key, value in (("n_qubits", n_qubits), ("n_layers", n_layers)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"QuantumLayer: {key} must be an int >= 1, got {value!r}")
        if backend not in BACKENDS:
            raise ValueError(f"QuantumLayer: backend must be one of {BACKENDS}, got {backend!r}")
        if shots is not None:
            if isinstance(shots, bool) or not isinstance(shots, int) or shots < 1:
                raise ValueError(f"QuantumLayer: shots must be None or an int >= 1, "
                                 f"got {shots!r}")
            if backend == "torch":
                raise ValueError("QuantumLayer: the 'torch' backend computes exact "
                                 "expectations; shots need backend='pennylane'")
            if diff_method in EXACT_DIFF_METHODS:
                raise ValueError(
                    f"QuantumLayer: diff_method={diff_method!r} needs exact expectations, "
                    f"but shots={shots} estimates them from samples; use "
                    f"diff_method='parameter-shift' or shots=None"
                )
        check_state_memory(n_qubits, 1, where="QuantumLayer")
        self.n_qubits, self.n_layers, self.backend = n_qubits, n_layers, backend
        self.diff_method, self.shots = diff_method, shots
        self.weights = nn.Parameter(
            torch.empty(n_layers, n_qubits, 3).uniform_(0, 2 * math.pi))
        self.register_buffer("permutations", entangler_permutations(n_qubits, n_layers),
                             persistent=False)
        # kept out of the module tree: it shares ``weights`` and must not register it twice
        torch_layer = self._make_torch_layer(device, device_options) if backend == "pennylane" \
            else None
        object.__setattr__(self, "_torch_layer", torch_layer)

    def _make_torch_layer(self, device: str, options: Mapping[str, Any] | None) -> Any:
        """A ``TorchLayer`` whose weight is this module's ``weights`` (one parameter, not
        registered twice)."""
        import pennylane as qml

        dev = pennylane_device(device, self.n_qubits, options=options)
        qnode = qml.QNode(pennylane_circuit(self.n_qubits), dev, interface="torch",
                          diff_method=self.diff_method, shots=self.shots)
        layer = qml.qnn.TorchLayer(qnode, {"weights": tuple(self.weights.shape)},
                                   init_method={"weights": self.weights.detach()})
        layer.qnode_weights["weights"] = self.weights
        layer.register_parameter("weights", self.weights)
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1:] != (self.n_qubits,):
            raise ValueError(f"QuantumLayer: input must have shape (*, {self.n_qubits}), "
                             f"got {tuple(x.shape)}")
        lead = x.shape[:-1]
        flat = x.reshape(-1, self.n_qubits)
        if self.backend == "pennylane":
            out = self._pennylane_forward(flat)
        else:
            check_state_memory(self.n_qubits, flat.shape[0], where="QuantumLayer",
                               copies=self.n_layers * (self.n_qubits + 1) + 2)
            out = torch_circuit(flat, self.weights, self.permutations)
        return out.reshape(*lead, self.n_qubits)

    def _pennylane_forward(self, x: torch.Tensor) -> torch.Tensor:
        method = self.diff_method
        if method == "best" and self.shots is not None:
            method = "parameter-shift"
        if (x.requires_grad and torch.is_grad_enabled()
                and method in _SHIFT_DIFF_METHODS):
            raise ValueError(
                f"QuantumLayer: diff_method={method!r} cannot differentiate a batch of "
                f"inputs in PennyLane (broadcast tapes, PennyLane issue 4462); use "
                f"diff_method='backprop' or 'adjoint' with shots=None, backend='torch', or "
                f"inputs that need no gradient"
            )
        return self._torch_layer(x).reshape(x.shape[0], self.n_qubits).to(x.dtype)

    def extra_repr(self) -> str:
        text = f"n_qubits={self.n_qubits}, n_layers={self.n_layers}, backend={self.backend!r}"
        if self.backend == "pennylane":
            text += f", diff_method={self.diff_method!r}, shots={self.shots}"
        return text
