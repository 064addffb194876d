"""The variational circuit shared by the quantum device and :class:`QuantumLayer`.

Angle embedding (``RX(x_w)`` on wire ``w``), ``L`` strongly-entangling layers (a ``Rot`` on
every wire, then a ring of CNOTs whose range cycles through ``1 .. n-1``), and ``<Z>`` on
every wire. Two implementations compute it: PennyLane (any installed device) and a
batched state vector in torch (:func:`torch_circuit`), which equal each other.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch

from phys.quantum.statevector import (
    angle_embedding,
    apply_single,
    check_state_memory,
    cnot_ring_permutation,
    expval_z,
    rot,
)

__all__ = [
    "EXACT_DIFF_METHODS",
    "entangler_ranges",
    "entangler_permutations",
    "installed_devices",
    "pennylane_circuit",
    "pennylane_device",
    "torch_circuit",
]

#: Diff methods that need exact expectation values (no ``shots``).
EXACT_DIFF_METHODS = ("backprop", "adjoint")
#: PennyLane devices that hold a state vector (``default.mixed``: a density matrix) in memory.
_STATE_VECTOR_DEVICES = ("default.qubit", "lightning.qubit", "lightning.gpu", "lightning.kokkos",
                         "default.mixed")


def entangler_ranges(n_qubits: int, n_layers: int) -> tuple[int, ...]:
    """CNOT range of each strongly-entangling layer: PennyLane's default
    ``(l % (n - 1)) + 1`` (no CNOTs on one qubit)."""
    if n_qubits < 2:
        return (0,) * n_layers
    return tuple((layer % (n_qubits - 1)) + 1 for layer in range(n_layers))


def entangler_permutations(n_qubits: int, n_layers: int) -> torch.Tensor | None:
    """``(L, 2**n)`` basis permutations of the layers' CNOT rings, ``None`` for one qubit."""
    if n_qubits < 2:
        return None
    return torch.stack([cnot_ring_permutation(n_qubits, r)
                        for r in entangler_ranges(n_qubits, n_layers)])


def torch_circuit(x: torch.Tensor, weights: torch.Tensor,
                  permutations: torch.Tensor | None) -> torch.Tensor:
    """The circuit on a batch, as a state vector in torch, gate by gate.

    Each layer's CNOT ring is one basis permutation (CNOTs only permute basis states).

    Args:
        x: Angles ``(B, n)``; float32 gives a complex64 state, float64 complex128.
        weights: ``(L, n, 3)`` ``Rot`` angles ``(phi, theta, omega)``.
        permutations: :func:`entangler_permutations` of ``(n, L)``.

    Returns:
        ``(B, n)`` expectation values ``<Z_w>`` in the dtype of ``x``.
    """
    n_layers, n_qubits = weights.shape[0], weights.shape[1]
    cdtype = torch.complex128 if x.dtype == torch.float64 else torch.complex64
    state = angle_embedding(x, cdtype)
    gates = rot(weights.to(x.dtype), cdtype)
    for layer in range(n_layers):
        for wire in range(n_qubits):
            state = apply_single(state, gates[layer, wire], wire, n_qubits)
        if permutations is not None:
            state = state[:, permutations[layer]]
    return expval_z(state, n_qubits).to(x.dtype)


def pennylane_circuit(n_qubits: int) -> Callable[[Any, Any], list[Any]]:
    """The circuit as a PennyLane quantum function ``circuit(inputs, weights)``."""
    import pennylane as qml

    wires = range(n_qubits)

    def circuit(inputs: Any, weights: Any) -> list[Any]:
        qml.AngleEmbedding(inputs, wires=wires, rotation="X")
        qml.StronglyEntanglingLayers(weights, wires=wires)
        return [qml.expval(qml.PauliZ(w)) for w in wires]

    return circuit


def installed_devices() -> list[str]:
    """Names of the installed PennyLane devices (built-in and plugins)."""
    import pennylane as qml

    return sorted(qml.plugin_devices)


def pennylane_device(name: str, wires: int, *, seed: int | None = None,
                     options: Mapping[str, Any] | None = None, batch: int = 1) -> Any:
    """Open PennyLane device ``name`` with ``wires`` wires.

    Args:
        name: An installed PennyLane device, e.g. ``"default.qubit"``.
        wires: Number of wires.
        seed: Passed as the device's ``seed`` (sampling) when it takes one.
        options: More keyword options of the device.
        batch: Circuits a simulator holds at once (for the memory check).

    Raises:
        ValueError: ``name`` is not installed (the message lists those that are), or a
            simulator's state for ``batch`` circuits would not fit in memory.
    """
    import pennylane as qml

    known = installed_devices()
    if name not in known:
        raise ValueError(f"PennyLane device {name!r} is not installed; installed devices: "
                         f"{', '.join(known)}")
    if name in _STATE_VECTOR_DEVICES:
        qubits = 2 * wires if name == "default.mixed" else wires
        check_state_memory(qubits, batch, dtype=torch.complex128,
                           where=f"PennyLane device {name!r}")
    kwargs = dict(options or {})
    if seed is not None and "seed" not in kwargs:
        try:
            params = inspect.signature(qml.plugin_devices[name].load()).parameters
        except (TypeError, ValueError):  # pragma: no cover - a device without a signature
            params = {}
        if "seed" in params:
            kwargs["seed"] = seed
    try:
        return qml.device(name, wires=wires, **kwargs)
    except TypeError as err:
        raise ValueError(f"bad options for PennyLane device {name!r}: {err}") from None
