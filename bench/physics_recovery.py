"""After a sudden change of the physics (`StepChange`: the detectors' gains jump), does
in-situ training of the physical parameters recover the accuracy it had before?

A one-layer physics-dominant network (no skip) on digits, trained by `--trainer readout`
(cross-entropy through the digital map) or `phyll`, trains `--warmup` epochs,
then the change happens and it trains `--epochs` more, in two copies from the same
state: one training its physical parameters model-free (`spsa`) beside its digital
weights, one with the physics as it is. Prints the test accuracy before the change,
just after it and at the end, for both, and the final shortfall against the target
(within 1 point of the accuracy before the change). Never asserts.

    .venv/bin/python bench/physics_recovery.py [--warmup 10] [--epochs 10] [--spread 0.5]
        [--trainer readout|phyll]
"""

from __future__ import annotations

import argparse
import copy

TARGET_POINTS = 1.0


def _network(clock: dict[str, float], spread: float, at: float, args: argparse.Namespace):
    import phys
    from phys.devices.wrappers import Drifting, StepChange
    from phys.train.network import PhysicalClassifier
    from phys.train.phyll import PhyLLNetwork

    n_in = 74 if args.trainer == "phyll" else 64  # the label enters PhyLL's input
    cavity = phys.open("cavity", n_in=n_in, n_out=args.measurements, seed=0)
    device = Drifting(cavity, StepChange(at, spread=spread, seed=1),
                      clock=lambda: clock["epoch"])
    layer = phys.PhysicalLayer(device, n_in, args.hidden, skip=False)
    if args.trainer == "phyll":
        return PhyLLNetwork([layer], 10)
    return PhysicalClassifier([layer], 10)


def _trainer(net, physics, trainer: str):
    if trainer == "phyll":
        from phys.train.phyll import PhyLLConfig, PhyLLTrainer

        return PhyLLTrainer(net, PhyLLConfig(epochs=1), physics=physics)
    from phys.train.base import TrainConfig
    from phys.train.readout import ReadoutTrainer

    return ReadoutTrainer(net, TrainConfig(epochs=1), physics=physics)


def main(argv: list[str] | None = None) -> dict[str, list[float]]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--warmup", type=int, default=10, help="epochs before the change")
    p.add_argument("--epochs", type=int, default=10, help="epochs after it")
    p.add_argument("--spread", type=float, default=0.5, help="detector gain spread after")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--trainer", choices=("readout", "phyll"), default="readout")
    p.add_argument("--measurements", type=int, default=8)
    p.add_argument("--physics-lr", type=float, default=0.2)
    p.add_argument("--physics-directions", type=int, default=4)
    p.add_argument("--physics-batch", type=int, default=32)
    args = p.parse_args(argv)
    import torch

    from phys.data import load
    from phys.train.perturb import PerturbOptions
    from phys.train.physics import PhysicalParameters

    torch.set_num_threads(1)
    data = load("digits")
    clock = {"epoch": 0.0}
    runs: dict[str, list[float]] = {}
    for name in ("spsa", "fixed"):
        torch.manual_seed(0)
        net = _network(clock, args.spread, float(args.warmup), args)
        physics = PhysicalParameters(
            [net.layers[0].device], PerturbOptions(directions=args.physics_directions,
                                                   lr=args.physics_lr),
            batch=args.physics_batch) if name == "spsa" else None
        trainer = _trainer(net, physics, args.trainer)
        accuracy = []
        for epoch in range(args.warmup + args.epochs):
            clock["epoch"] = float(epoch)
            if epoch == args.warmup:
                accuracy.append(trainer.evaluate(data.x_test, data.y_test))  # just after
            trainer.config.epochs = epoch + 1
            trainer.fit(data.x_train, data.y_train)
            if epoch == args.warmup - 1:
                accuracy.append(trainer.evaluate(data.x_test, data.y_test))  # before
        accuracy.append(trainer.evaluate(data.x_test, data.y_test))
        runs[name] = accuracy
        used = copy.copy(trainer.device_usage())
        print(f"{name}: before the change {accuracy[0]:.4f}, just after {accuracy[1]:.4f}, "
              f"after {args.epochs} more epochs {accuracy[2]:.4f} "
              f"({used['device_samples']:,} training samples)", flush=True)
    for name, (before, _, end) in runs.items():
        short = 100 * (before - end)
        print(f"{name}: {short:+.1f} points short of the accuracy before the change (target "
              f"at most {TARGET_POINTS:g}; ratio {max(short, 0) / TARGET_POINTS:.2f})")
    return runs


if __name__ == "__main__":
    main()
