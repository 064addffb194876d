"""QuantumLayer backends: the batched torch state vector against PennyLane's TorchLayer.

Angle embedding, 2 strongly-entangling layers and <Z> on every wire, 4 and 8 qubits, a
batch of 64, forward plus backward (gradients of the weights and of the inputs), in
samples per second. PennyLane runs ``default.qubit`` with ``diff_method="backprop"`` in a
``qml.qnn.TorchLayer`` (it simulates the whole batch at once). Both first run on the same
inputs and weights and their outputs and gradients are compared. Target: the torch
backend at least 2x PennyLane. This script reports; it never fails on time.

    .venv/bin/python bench/quantum_backends.py [--batch 64] [--repeats 10] [--threads 1]
"""

from __future__ import annotations

import time

import pennylane as qml
import torch
from _common import machine, throughput_args

from phys.quantum.circuits import pennylane_circuit
from phys.quantum.layers import QuantumLayer

TARGET = 2.0
LAYERS = 2


def reference(n_qubits: int, weights: torch.Tensor) -> torch.nn.Module:
    qnode = qml.QNode(pennylane_circuit(n_qubits), qml.device("default.qubit", wires=n_qubits),
                      interface="torch", diff_method="backprop")
    layer = qml.qnn.TorchLayer(qnode, {"weights": tuple(weights.shape)})
    with torch.no_grad():
        layer.weights.copy_(weights)
    return layer


def step(module: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Forward and backward; returns outputs, input gradients and weight gradients."""
    module.zero_grad()
    x = x.clone().requires_grad_(True)
    y = module(x)
    y.sum().backward()
    return y.detach(), x.grad, module.weights.grad


def samples_per_second(module: torch.nn.Module, x: torch.Tensor, repeats: int) -> float:
    step(module, x)  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        step(module, x)
    return len(x) * repeats / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> None:
    args = throughput_args(__doc__.splitlines()[0], batch=64, argv=argv)
    print(f"batch {args.batch}, {LAYERS} layers, {args.repeats} repeats, torch "
          f"{torch.__version__}, PennyLane {qml.__version__}, threads {torch.get_num_threads()}, "
          f"{machine()}")
    gen = torch.Generator().manual_seed(args.seed)
    for n in (4, 8):
        fast = QuantumLayer(n, LAYERS)
        slow = reference(n, fast.weights.detach())
        x = torch.rand(args.batch, n, generator=gen) * 2 * torch.pi - torch.pi
        diff = max(float((a - b).abs().max()) for a, b in zip(step(fast, x), step(slow, x),
                                                               strict=True))
        ours = samples_per_second(fast, x, args.repeats)
        theirs = samples_per_second(slow, x, max(1, args.repeats // 2))
        print(f"{n} qubits: torch backend {ours:,.0f} samples/s, PennyLane default.qubit "
              f"backprop TorchLayer {theirs:,.0f} samples/s, ratio {ours / theirs:.2f} "
              f"(target {TARGET:g}); max |difference| of outputs and gradients {diff:.1e}")


if __name__ == "__main__":
    main()
