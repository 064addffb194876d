"""Train a model of your own blocks with PhyLL: each block a device and a digital part.

A block is any ``nn.Module`` with ``in_features`` and ``out_features`` that drives its
physics through :class:`phys.nn.DeviceLayer` (which maps any input into the device's
range and, with ``grad="none"``, passes no gradient through the physics) and has a
trainable digital part written as plain torch. The PhyLL trainer embeds the label in
the first block's input, gives every block its own optimiser and local loss, and
detaches inputs between blocks. Run: python examples/custom_blocks.py [--epochs N]
"""

import argparse

import torch
import torch.nn.functional as F
from torch import nn

import phys
from phys.data import load
from phys.nn import DeviceLayer
from phys.train.phyll import PhyLLConfig, PhyLLNetwork, PhyLLTrainer


class CavityBlock(nn.Module):
    """A scattering cavity, then a layer norm over [measurement, input], a linear map
    and a ReLU (the digital part, the only trainable one)."""

    def __init__(self, in_features: int, out_features: int, seed: int) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        cavity = phys.open("cavity", n_in=64, n_out=48, seed=seed)
        self.physics = DeviceLayer(cavity, in_features, seed=seed)  # fixed projection to 64
        width = cavity.info.n_out + in_features
        self.norm = nn.LayerNorm(width)
        self.linear = nn.Linear(width, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        measured = self.physics(x)  # queried, never differentiated
        return F.relu(self.linear(self.norm(torch.cat([measured, x], dim=1))))


parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=10)
epochs = parser.parse_args().epochs

torch.manual_seed(0)  # the digital parts' initial weights
data = load("digits")  # 8x8 digits bundled with scikit-learn: no download
blocks = [CavityBlock(data.n_features + data.n_classes, 128, seed=0), CavityBlock(128, 128, seed=1)]
trainer = PhyLLTrainer(PhyLLNetwork(blocks, data.n_classes), PhyLLConfig(epochs=epochs, lr=3e-3))
trainer.fit(data.x_train, data.y_train)
print(f"test accuracy {trainer.evaluate(data.x_test, data.y_test):.3f}, "
      f"device queries {trainer.device_usage()['device_queries']}")
