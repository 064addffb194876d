"""QuantumLayer: the torch backend equals PennyLane on values and gradients."""

from __future__ import annotations

import math

import pennylane as qml
import pytest
import torch

from phys.quantum.circuits import pennylane_circuit
from phys.quantum.layers import QuantumLayer
from phys.quantum.statevector import cnot_ring_permutation


def reference(n_qubits: int, n_layers: int, weights: torch.Tensor) -> torch.nn.Module:
    """PennyLane's own TorchLayer on default.qubit with backprop, holding ``weights``."""
    qnode = qml.QNode(pennylane_circuit(n_qubits), qml.device("default.qubit", wires=n_qubits),
                      interface="torch", diff_method="backprop")
    layer = qml.qnn.TorchLayer(qnode, {"weights": (n_layers, n_qubits, 3)})
    with torch.no_grad():
        layer.weights.copy_(weights)
    return layer


def run(module: torch.nn.Module, x: torch.Tensor, grad_out: torch.Tensor):
    x = x.clone().requires_grad_(True)
    y = module(x)
    (y * grad_out).sum().backward()
    return y.detach(), x.grad, module.weights.grad.clone()


@pytest.mark.parametrize(("n_qubits", "n_layers"), [(1, 2), (2, 1), (3, 3), (4, 2), (5, 4)])
def test_torch_backend_equals_pennylane_values_and_gradients(n_qubits: int, n_layers: int):
    layer = QuantumLayer(n_qubits, n_layers)
    ref = reference(n_qubits, n_layers, layer.weights.detach())
    gen = torch.Generator().manual_seed(n_qubits)
    x = (torch.rand(9, n_qubits, generator=gen) * 2 - 1) * math.pi
    grad_out = torch.randn(9, n_qubits, generator=gen)
    ours, theirs = run(layer, x, grad_out), run(ref, x, grad_out)
    names = ("outputs", "input gradients", "weight gradients")
    for name, a, b in zip(names, ours, theirs, strict=True):
        assert a.dtype == torch.float32 == b.dtype
        assert torch.allclose(a, b, atol=1e-5, rtol=0), (name, float((a - b).abs().max()))
    assert ours[1].abs().max() > 1e-3  # the gradients compared are not all zero


def test_pennylane_backend_shares_the_weights_and_state_dict() -> None:
    fast = QuantumLayer(3, 2)
    slow = QuantumLayer(3, 2, backend="pennylane")
    assert list(slow.state_dict()) == ["weights"] == list(fast.state_dict())
    assert [p.shape for p in slow.parameters()] == [torch.Size([2, 3, 3])]
    slow.load_state_dict(fast.state_dict())
    x = torch.rand(4, 3)
    assert torch.allclose(fast(x), slow(x), atol=1e-6)
    gen = torch.Generator().manual_seed(0)
    g = torch.randn(4, 3, generator=gen)
    a, b = run(fast, x, g), run(slow, x, g)
    assert all(torch.allclose(p, q, atol=1e-5) for p, q in zip(a, b, strict=True))


def test_float64_leading_dimensions_and_gradcheck() -> None:
    layer = QuantumLayer(2, 2).double()
    x = torch.rand(2, 3, 2, dtype=torch.float64, requires_grad=True)
    y = layer(x)
    assert y.shape == (2, 3, 2) and y.dtype == torch.float64
    assert torch.autograd.gradcheck(lambda a, w: _functional(layer, a, w),
                                    (x, layer.weights.detach().clone().requires_grad_(True)))


def _functional(layer: QuantumLayer, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    from phys.quantum.circuits import torch_circuit

    return torch_circuit(x.reshape(-1, 2), w, layer.permutations)


def test_cnot_ring_permutation_matches_pennylane() -> None:
    n = 4
    for rng in (1, 2, 3):
        ops = [qml.CNOT(wires=[w, (w + rng) % n]) for w in range(n)]
        matrix = qml.matrix(qml.prod(*reversed(ops)), wire_order=range(n))
        perm = cnot_ring_permutation(n, rng)
        state = torch.randn(2 ** n, dtype=torch.float64)
        expected = torch.as_tensor(matrix.real, dtype=torch.float64) @ state
        assert torch.equal(state[perm], expected)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="n_qubits"):
        QuantumLayer(0, 1)
    with pytest.raises(ValueError, match="backend"):
        QuantumLayer(2, 1, backend="qiskit")
    with pytest.raises(ValueError, match=r"needs exact expectations.*shots=100"):
        QuantumLayer(2, 1, backend="pennylane", diff_method="backprop", shots=100)
    with pytest.raises(ValueError, match="shots need backend='pennylane'"):
        QuantumLayer(2, 1, shots=100)
    with pytest.raises(ValueError, match=r"'no.such' is not installed.*default\.qubit"):
        QuantumLayer(2, 1, backend="pennylane", device="no.such")
    with pytest.raises(ValueError, match=r"60 qubits .*: 8 EiB; this machine has"):
        QuantumLayer(60, 1)
    with pytest.raises(ValueError, match=r"shape \(\*, 2\)"):
        QuantumLayer(2, 1)(torch.zeros(3, 4))


def test_parameter_shift_with_shots_trains_weights_but_refuses_input_gradients() -> None:
    layer = QuantumLayer(2, 1, backend="pennylane", diff_method="parameter-shift", shots=200,
                         device_options={"seed": 1})
    y = layer(torch.rand(3, 2))
    y.sum().backward()
    assert layer.weights.grad is not None and layer.weights.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="cannot differentiate a batch of inputs"):
        layer(torch.rand(3, 2, requires_grad=True))
