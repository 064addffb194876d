"""Assemble and run a PhyLL experiment: dataset, one device per layer, network, trainer.

This is what ``phys train`` runs; it is also the shortest way to do the same from Python.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from phys import registry
from phys.device import Device

__all__ = ["TrainSpec", "open_layer_device", "run"]


@dataclass
class TrainSpec:
    """Everything ``phys train`` needs; stored as ``config`` in ``results.json``.

    Args:
        device: Registered device name, one device opened per layer.
        data: Dataset name (see :func:`phys.data.names`).
        layers: Number of physical layers.
        hidden: Output width of every layer's digital map.
        measurements: Detector count ``n_out`` asked of each device (when it takes one).
        epochs, batch_size, lr, negatives, readout, goodness, loss, label_scale, theta,
            weight_decay: see :class:`phys.train.phyll.PhyLLConfig`.
        seed: Seeds data order, negatives, initial weights and the simulated physics
            (layer ``i`` gets ``seed + i``).
        device_options: Extra keyword options for :func:`phys.open`.
    """

    device: str = "cavity"
    data: str = "digits"
    layers: int = 2
    hidden: int = 256
    measurements: int = 64
    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    negatives: str = "all"
    readout: str = "goodness"
    goodness: str = "cosine"
    loss: str = "contrast"
    label_scale: float = 3.0
    theta: float = 8.0
    seed: int = 0
    device_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key in ("layers", "hidden", "measurements", "epochs", "batch_size"):
            if int(getattr(self, key)) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")


def open_layer_device(name: str, n_in: int, n_out: int, seed: int,
                      options: Mapping[str, Any]) -> Device:
    """Open device ``name`` for one layer, passing ``n_in``, ``n_out`` and ``seed`` when
    its constructor takes them (simulators do; fixed hardware does not)."""
    cls = registry.load(name)
    params = inspect.signature(cls).parameters
    takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in params.values())
    defaults = {"n_in": n_in, "n_out": n_out, "seed": seed}
    chosen = {k: v for k, v in defaults.items() if k in params or takes_kwargs}
    return registry.open(name, **{**chosen, **options})


def run(spec: TrainSpec, *, out: str | Path | None = None, progress: bool = False,
        on_epoch: Callable[[dict[str, float]], None] | None = None) -> dict[str, Any]:
    """Train PhyLL as ``spec`` says; write the run's files to ``out`` when given.

    Returns:
        The results dict written to ``results.json``.

    Raises:
        ValueError: unknown dataset or device, or bad options - before any query.
    """
    from phys import data
    from phys.layers import PhysicalLayer
    from phys.report import write_run
    from phys.train.phyll import PhyLLConfig, PhyLLNetwork, PhyLLTrainer

    config = PhyLLConfig(
        epochs=spec.epochs, batch_size=spec.batch_size, lr=spec.lr,
        weight_decay=spec.weight_decay, negatives=spec.negatives, readout=spec.readout,
        goodness=spec.goodness, loss=spec.loss, label_scale=spec.label_scale, theta=spec.theta,
        seed=spec.seed,
    )
    registry.load(spec.device)  # unknown device: fail before loading data
    dataset = data.load(spec.data)
    devices: list[Device] = []
    try:
        layers, width = [], dataset.n_features + dataset.n_classes
        for i in range(spec.layers):
            dev = open_layer_device(spec.device, width, spec.measurements, spec.seed + i,
                                    spec.device_options)
            devices.append(dev)
            layers.append(PhysicalLayer(dev, width, spec.hidden, seed=spec.seed + i))
            width = spec.hidden
        network = PhyLLNetwork(layers, dataset.n_classes, label_scale=spec.label_scale,
                               goodness=spec.goodness, seed=spec.seed)
        trainer = PhyLLTrainer(network, config)
        t0 = time.perf_counter()
        history = trainer.fit(dataset.x_train, dataset.y_train, dataset.x_test, dataset.y_test,
                              progress=progress, on_epoch=on_epoch)
        seconds = time.perf_counter() - t0
        usage = trainer.device_usage()
        results = {
            "test_accuracy": history[-1]["test_accuracy"],
            "train_accuracy": history[-1]["train_accuracy"],
            "epochs": trainer.epoch,
            "seconds": seconds,
            **usage,
            "device_info": [d.info.as_dict() for d in devices],
            "config": {k: v for k, v in vars(spec).items()},
        }
        if out is not None:
            title = f"PhyLL on {spec.device} / {spec.data}"
            write_run(out, results, history, trainer.state_dict(), title=title)
        return results
    finally:
        for dev in devices:
            dev.close()
