"""Assemble and run an experiment: dataset, one device per layer, network, trainer.

This is what ``phys train`` and ``phys compare`` run; it is also the shortest way to do
the same from Python.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from phys import registry
from phys.device import Device

__all__ = ["TRAINERS", "TWINS", "TrainSpec", "open_layer_device", "run"]

TRAINERS = ("phyll", "backprop", "pat")
TWINS = ("surrogate", "simulator")
ACTIVATIONS = ("relu", "abs")  # those of phys.layers.PhysicalLayer


@dataclass
class TrainSpec:
    """Everything ``phys train`` needs; stored as ``config`` in ``results.json``.

    Args:
        trainer: ``"phyll"`` (model-free), ``"backprop"`` (in silico, through the
            simulator) or ``"pat"`` (physics-aware: device forward, twin backward).
        device: Registered device name, one device opened per layer.
        data: Dataset name (see :func:`phys.data.names`).
        layers: Number of physical layers.
        hidden: Output width of every layer's digital map.
        activation: Nonlinearity after every layer's digital map: ``"relu"`` or
            ``"abs"`` (the PhyLL paper's ``|x|``, whose units cannot die).
        measurements: Detector count ``n_out`` asked of each device (when it takes one).
        epochs, batch_size, lr, weight_decay, schedule: training options.
        negatives, readout, goodness, loss, label_scale, theta, dropout: PhyLL options, see
            :class:`phys.train.phyll.PhyLLConfig`.
        twin: PAT's digital twin: ``"surrogate"`` (a network fitted to ``twin_samples``
            device queries) or ``"simulator"`` (the device's simulator opened with
            ``twin_options`` on top of ``device_options``: a sim-to-real gap).
        count_flops: Measure digital FLOPs of training.
        seed: Seeds data order, negatives, initial weights and the simulated physics
            (layer ``i`` gets ``seed + i``).
        device_options: Extra keyword options for :func:`phys.open`.
        data_options: Extra keyword options for :func:`phys.data.load`, e.g.
            ``{"classes": 7}`` for the 7-vowel task.
    """

    trainer: str = "phyll"
    device: str = "cavity"
    data: str = "digits"
    layers: int = 2
    hidden: int = 256
    activation: str = "relu"
    measurements: int = 64
    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    schedule: str = "constant"
    negatives: str = "all"
    readout: str = "goodness"
    goodness: str = "cosine"
    loss: str = "contrast"
    label_scale: float = 3.0
    theta: float = 8.0
    dropout: float = 0.0
    twin: str = "surrogate"
    twin_samples: int = 8192
    twin_options: dict[str, Any] = field(default_factory=dict)
    count_flops: bool = False
    seed: int = 0
    device_options: dict[str, Any] = field(default_factory=dict)
    data_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key in ("layers", "hidden", "measurements", "epochs", "batch_size", "twin_samples"):
            if int(getattr(self, key)) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.trainer not in TRAINERS:
            raise ValueError(f"unknown trainer {self.trainer!r}; choose one of "
                             f"{', '.join(TRAINERS)}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; choose one of "
                             f"{', '.join(ACTIVATIONS)}")
        if self.twin not in TWINS:
            raise ValueError(f"unknown twin {self.twin!r}; choose one of {', '.join(TWINS)}")


def open_layer_device(name: str, n_in: int, n_out: int, seed: int,
                      options: Mapping[str, Any]) -> Device:
    """Open device ``name`` for one layer, passing ``n_in``, ``n_out`` and ``seed`` when
    the device declares them in its ``sizes`` (simulators do; fixed hardware does not)."""
    return registry.DeviceSpec.parse(name, options).open(n_in=n_in, n_out=n_out, seed=seed)


#: ``opener(name, n_in, n_out, seed, options)``: how a layer's device is opened.
Opener = Callable[[str, int, int, int, Mapping[str, Any]], Device]


def _open_devices(spec: TrainSpec, first_width: int, opened: list[Device],
                  opener: Opener = open_layer_device) -> list[Any]:
    """One :class:`~phys.PhysicalLayer` per layer; devices are appended to ``opened``."""
    from phys.layers import PhysicalLayer

    layers, width = [], first_width
    for i in range(spec.layers):
        dev = opener(spec.device, width, spec.measurements, spec.seed + i, spec.device_options)
        opened.append(dev)
        layers.append(PhysicalLayer(dev, width, spec.hidden, activation=spec.activation,
                                    seed=spec.seed + i))
        width = spec.hidden
    return layers


def _twins(spec: TrainSpec, layers: list[Any], opened: list[Device],
           fit: bool = True) -> tuple[list[Any], list]:
    """PAT's twins, one per layer, and a note per twin for the results (``fit=False``:
    surrogates are left unfitted, for a checkpoint to fill)."""
    from phys.train.twin import SurrogateTwin

    twins, notes = [], []
    for i, layer in enumerate(layers):
        dev = layer.device
        if spec.twin == "simulator":
            twin = open_layer_device(spec.device, dev.info.n_in, dev.info.n_out, spec.seed + i,
                                     {**spec.device_options, **spec.twin_options})
            opened.append(twin)
            if not twin.info.differentiable or not hasattr(twin, "simulate"):
                raise ValueError(
                    f"--twin simulator needs a differentiable simulator, but {spec.device!r} "
                    f"is not one; use --twin surrogate"
                )
            notes.append({"kind": "simulator", "options": dict(spec.twin_options)})
        else:
            twin = SurrogateTwin(dev.info, seed=spec.seed + i)
            report = twin.fit(dev, n_samples=spec.twin_samples) if fit else {}
            notes.append({"kind": "surrogate", **report})
        twins.append(twin)
    return twins, notes


def build(spec: TrainSpec, n_features: int, n_classes: int, opened: list[Device], *,
          opener: Opener = open_layer_device, fit_twins: bool = True
          ) -> tuple[Any, dict[str, Any]]:
    """The trainer ``spec`` asks for, and extra facts for the results.

    Devices (and simulator twins) are appended to ``opened`` as they open, so the caller
    can close them whatever happens. ``opener`` opens each layer's device;
    ``fit_twins=False`` leaves PAT's surrogate twins unfitted (a checkpoint restores them).
    """
    from phys.train.base import TrainConfig

    common = {"epochs": spec.epochs, "batch_size": spec.batch_size, "lr": spec.lr,
              "weight_decay": spec.weight_decay, "schedule": spec.schedule,
              "count_flops": spec.count_flops, "seed": spec.seed}
    if spec.trainer == "phyll":
        from phys.train.phyll import PhyLLConfig, PhyLLNetwork, PhyLLTrainer

        config = PhyLLConfig(**common, negatives=spec.negatives, readout=spec.readout,
                             goodness=spec.goodness, loss=spec.loss,
                             label_scale=spec.label_scale, theta=spec.theta,
                             dropout=spec.dropout)
        layers = _open_devices(spec, n_features + n_classes, opened, opener)
        network = PhyLLNetwork(layers, n_classes, label_scale=spec.label_scale,
                               goodness=spec.goodness, seed=spec.seed)
        return PhyLLTrainer(network, config), {}

    from phys.train.network import PhysicalClassifier

    layers = _open_devices(spec, n_features, opened, opener)
    network = PhysicalClassifier(layers, n_classes, seed=spec.seed)
    if spec.trainer == "backprop":
        from phys.train.backprop import BackpropTrainer

        return BackpropTrainer(network, TrainConfig(**common)), {}
    from phys.train.pat import PATTrainer

    twins, notes = _twins(spec, layers, opened, fit_twins)
    return PATTrainer(network, twins, TrainConfig(**common)), {"twins": notes}


def run(spec: TrainSpec, *, out: str | Path | None = None, progress: bool = False,
        on_epoch: Callable[[dict[str, float]], None] | None = None, resume: bool = False,
        overwrite: bool = False, checkpoint_every: int | None = 200,
        device_wait: float = 300.0, opener: Opener | None = None,
        resume_hint: str | None = None) -> dict[str, Any]:
    """Train as ``spec`` says: :func:`phys.runs.train` (same arguments, same results)."""
    from phys.runs import train

    return train(spec, out=out, progress=progress, on_epoch=on_epoch, resume=resume,
                 overwrite=overwrite, checkpoint_every=checkpoint_every,
                 device_wait=device_wait, opener=opener, resume_hint=resume_hint)
