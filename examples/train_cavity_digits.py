"""Train a two-layer physical network on simulated cavities with PhyLL.

Each layer is a chaotic scattering cavity (queried, never differentiated) followed by
a small trainable linear map. Run: python examples/train_cavity_digits.py [--epochs N]
"""

import argparse

import phys
from phys.data import load
from phys.train.phyll import PhyLLConfig, PhyLLNetwork, PhyLLTrainer

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=20)
epochs = parser.parse_args().epochs

data = load("digits")  # 8x8 digits bundled with scikit-learn: no download
width, layers = data.n_features + data.n_classes, []
for i in range(2):
    cavity = phys.open("cavity", n_in=width, n_out=64, seed=i)
    layers.append(phys.PhysicalLayer(cavity, width, 256, seed=i))
    width = 256
network = PhyLLNetwork(layers, data.n_classes)
trainer = PhyLLTrainer(network, PhyLLConfig(epochs=epochs, lr=1e-3))
trainer.fit(data.x_train, data.y_train)
print(f"test accuracy {trainer.evaluate(data.x_test, data.y_test):.3f}, "
      f"device queries {trainer.device_usage()['device_queries']}")
