"""Let the quantum creep in: swap a model's classical layers for quantum ones, train each.

A small hybrid model for the 8x8 digits - a convolution, a linear layer, a variational
circuit (QuantumLayer, 4 qubits) and a linear read-out - is trained as it is, with its 3x3
convolution swapped for a FlippedQuanv3x3, and with the linear layer before the circuit
also swapped (for a DataReUploadingLinear).
Run: python examples/quantum_swap.py [--epochs N]
"""

import argparse

import torch
from torch import nn

from phys.data import load
from phys.quantum.layers import QuantumLayer
from phys.quantum.swap import swap, swappable

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=15)
epochs = parser.parse_args().epochs

data = load("digits")  # 8x8 digits bundled with scikit-learn: no download
x_train, x_test = (x.reshape(-1, 1, 8, 8) * 2 - 1 for x in (data.x_train, data.x_test))

torch.manual_seed(0)
model = nn.Sequential(
    nn.Conv2d(1, 8, 3),            # (B, 8, 6, 6)
    nn.Flatten(),
    nn.Linear(8 * 6 * 6, 4),
    QuantumLayer(4, n_layers=2),   # angle embedding, 2 strongly-entangling layers, <Z>
    nn.Linear(4, data.n_classes),
)
print("swappable:", swappable(model))
variants = {
    "classical": model,
    "quantum conv": swap(model, "conv"),
    "quantum conv + linear": swap(model, ["0", "2"], reps=4),
}
for name, net in variants.items():
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    gen = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        for idx in torch.randperm(len(x_train), generator=gen).split(64):
            loss = nn.functional.cross_entropy(net(x_train[idx]), data.y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        accuracy = (net(x_test).argmax(1) == data.y_test).float().mean().item()
    params = sum(p.numel() for p in net.parameters())
    print(f"{name}: test accuracy {accuracy:.3f}, {params} parameters")
