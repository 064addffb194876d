"""PhyLL keeps up with drifting physics; a model trained once and frozen does not.

Two identical two-layer cavity networks are trained together until the detectors
start to drift (per-channel gains change linearly with time, measured in epochs). Then
one network keeps training with PhyLL on the drifting devices while the other is
frozen; both are tested after every epoch. Writes drift.png and prints the accuracies.

    python examples/drift_tracking.py [--warmup 8] [--epochs 12] [--rate 0.3] [--out DIR]
"""

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import phys  # noqa: E402
from phys.data import load  # noqa: E402
from phys.devices.wrappers import Drifting, LinearDrift  # noqa: E402
from phys.train.phyll import PhyLLNetwork, PhyLLTrainer  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--warmup", type=int, default=8, help="epochs before the drift starts")
parser.add_argument("--epochs", type=int, default=12, help="epochs of drift")
parser.add_argument("--rate", type=float, default=0.3, help="relative gain drift per epoch")
parser.add_argument("--out", default="runs/drift")
args = parser.parse_args()

data = load("digits")
clock = {"epoch": 0.0}  # the world's time, shared by every drifting device


def network() -> PhyLLNetwork:
    width, layers = data.n_features + data.n_classes, []
    for i in range(2):
        cavity = phys.open("cavity", n_in=width, n_out=64, seed=i)
        drift = LinearDrift(out_rate=args.rate, in_rate=args.rate / 3, scale=1.0,
                            start=args.warmup, seed=i)
        device = Drifting(cavity, drift, clock=lambda: clock["epoch"])
        layers.append(phys.PhysicalLayer(device, width, 256, seed=i))
        width = 256
    return PhyLLNetwork(layers, data.n_classes)


online, frozen = PhyLLTrainer(network()), PhyLLTrainer(network())
online.config.epochs = args.warmup
online.fit(data.x_train, data.y_train)
frozen.network.load_state_dict(online.network.state_dict())

times, acc_online, acc_frozen = [], [], []
for epoch in range(args.warmup, args.warmup + args.epochs + 1):
    clock["epoch"] = float(epoch)
    times.append(epoch)
    acc_online.append(online.evaluate(data.x_test, data.y_test))
    acc_frozen.append(frozen.evaluate(data.x_test, data.y_test))
    print(f"epoch {epoch:3d}  drift {max(0, epoch - args.warmup) * args.rate:4.1f}  "
          f"online PhyLL {acc_online[-1]:.3f}  frozen {acc_frozen[-1]:.3f}", flush=True)
    online.config.epochs = epoch + 1
    online.fit(data.x_train, data.y_train)  # one more epoch on the drifting devices

out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)
plt.figure(figsize=(6, 3.5))
plt.plot(times, acc_online, marker="o", label="PhyLL, training on")
plt.plot(times, acc_frozen, marker="s", label="trained once, frozen")
plt.xlabel(f"epoch (drift starts at {args.warmup})")
plt.ylabel("test accuracy")
plt.grid(alpha=0.3)
plt.legend()
plt.tight_layout()
plt.savefig(out / "drift.png", dpi=110)
print(f"final: online {acc_online[-1]:.3f}, frozen {acc_frozen[-1]:.3f}; wrote {out}/drift.png")
