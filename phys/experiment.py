"""Assemble and run an experiment: dataset, one device per layer, network, trainer.

This is what ``phys train`` and ``phys compare`` run; it is also the shortest way to do
the same from Python.
"""

from __future__ import annotations

import math
import time
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
    """Train as ``spec`` says; with ``out``, keep the run's files there (see
    :mod:`phys.runs`): config, a checkpoint after every epoch and every
    ``checkpoint_every`` batches, metrics, and at the end results, curve and checkpoint.

    Args:
        spec: What to train.
        out: Run directory.
        progress: Show progress bars.
        on_epoch: Called with each epoch's metrics.
        resume: Continue the run in ``out`` from its latest readable checkpoint; ``spec``
            must be the run's own (the error lists any difference).
        overwrite: Start again in an ``out`` that holds an unfinished run.
        checkpoint_every: Batches between checkpoints within an epoch (0: epoch ends only).
        device_wait: Seconds to wait for a lab device that stops answering to come back
            (the run is saved first); then :class:`phys.runs.DeviceLost` is raised.
        opener: Opens each layer's device (default :func:`open_layer_device`).
        resume_hint: The command that continues this run, for messages.

    Returns:
        The results dict written to ``results.json``.

    Raises:
        ValueError: unknown dataset, device or trainer, bad options, a trainer that
            needs gradients the device cannot give, or a run directory that does not fit
            (``--resume`` of another configuration, an unfinished run without ``resume``
            or ``overwrite``) - before any query.
        phys.runs.DeviceLost: a device stopped answering for longer than ``device_wait``.
    """
    from phys import data, runs
    from phys.report import write_run

    if checkpoint_every is not None and (not isinstance(checkpoint_every, int)
                                         or isinstance(checkpoint_every, bool)
                                         or checkpoint_every < 0):
        raise ValueError(f"checkpoint_every must be an int >= 0 batches, got "
                         f"{checkpoint_every!r}")
    if not (isinstance(device_wait, (int, float)) and 0 <= device_wait < math.inf):
        raise ValueError(f"device_wait must be a number of seconds >= 0, got {device_wait!r}")
    config = runs.jsonable(vars(spec))
    run_dir = None if out is None else runs.RunDir(out)
    if run_dir is None and resume:
        raise ValueError("resume needs the run directory (out)")
    if run_dir is not None:
        run_dir.check("train", config, resume=resume, overwrite=overwrite)
    if opener is None:
        registry.DeviceSpec.parse(spec.device, spec.device_options)  # fail before loading data
    dataset = data.load(spec.data, **spec.data_options)
    state = run_dir.load()[0] if resume and run_dir is not None else None
    if state is not None and state.get("kind") != "train":
        raise runs.CheckpointError(f"{run_dir.path}: the checkpoint is not a phys train run's")
    hint = resume_hint or f"phys train --resume {out}"
    opened: list[Device] = []
    try:
        trainer, extra = build(spec, dataset.n_features, dataset.n_classes, opened,
                               opener=opener or open_layer_device, fit_twins=state is None)
        before = 0.0
        if state is not None:
            runs.restore_train(trainer, state)
            extra, before = dict(state["extra"]), float(state["seconds"])
        keeper = None
        t0 = time.perf_counter()
        if run_dir is not None:
            run_dir.start("train", config, fresh=state is None)
            batches = math.ceil(dataset.x_train.shape[0] / spec.batch_size)
            keeper = runs.Keeper(run_dir, lambda: runs.train_state(
                trainer, config, extra, before + time.perf_counter() - t0),
                every=checkpoint_every, batches=batches)
        trainer.guard = runs.device_guard(trainer, keeper, wait=device_wait, resume_hint=hint)

        def epoch_done(row: dict[str, float]) -> None:
            if keeper is not None:
                keeper.save(texts=run_dir.metrics(trainer.history))
            if on_epoch is not None:
                on_epoch(row)

        try:
            history = trainer.fit(dataset.x_train, dataset.y_train, dataset.x_test,
                                  dataset.y_test, progress=progress, on_epoch=epoch_done,
                                  on_batch=None if keeper is None else keeper.on_batch)
        finally:
            if keeper is not None:
                keeper.flush()
        seconds = before + time.perf_counter() - t0
        results = {
            "trainer": spec.trainer,
            "test_accuracy": history[-1]["test_accuracy"],
            "train_accuracy": history[-1]["train_accuracy"],
            "epochs": trainer.epoch,
            "seconds": seconds,
            **trainer.device_usage(),
            **extra,
            "device_info": [layer.device.info.as_dict() for layer in trainer.network.layers],
            "config": dict(vars(spec)),
        }
        if keeper is not None:
            results["checkpoints"] = {"saved": keeper.saves, "seconds": keeper.seconds,
                                      "write_seconds": keeper.write_seconds,
                                      "resumed_from_epoch": None if state is None
                                      else int(state["epoch"])}
            title = f"{spec.trainer} on {spec.device} / {spec.data}"
            write_run(out, results, history, None, title=title)
        return results
    finally:
        for dev in opened:
            dev.close()
