"""Training the physics itself: a network's physical parameters, in situ and model-free.

Each layer's device parameters (``info.params``: an SLM mask, a scatterer's detuning)
follow the same local objective the layer's digital part trains on, estimated from
measurements at perturbed settings (:mod:`phys.train.perturb`): a trainer calls
:meth:`PhysicalParameters.after_layer` with a function that measures the layer's loss at
the device's current settings. It works on any :class:`~phys.Device` that declares
parameters and takes :meth:`set` (a simulator, a serial rig); the queries it spends are
counted apart (:attr:`PhysicalParameters.samples`).

The same parameters also train by gradient (:class:`GradientPhysics`, the ``twin``
route): through the simulator itself in backprop, through a simulator twin in PAT.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import torch

from phys.device import Device
from phys.nn.device_layer import DeviceLayer
from phys.train.perturb import Perturbation, PerturbOptions

__all__ = ["GradientPhysics", "PerturbsPhysics", "PhysicalParameters", "PhysicsSetError",
           "TrainsPhysics"]


class PhysicsSetError(RuntimeError):
    """A device refused a setting while its parameters were trained (the message names
    the layer, device, parameter and value)."""


def _describe(values: torch.Tensor) -> str:
    flat = values.flatten().tolist()
    head = ", ".join(f"{v:.6g}" for v in flat[:4])
    return f"[{head}{', ...' if len(flat) > 4 else ''}]"


class PhysicalParameters:
    """The trainable physical parameters of a network's devices, one set per layer.

    Args:
        devices: Layer ``i``'s device at index ``i`` (``None``: its physics is fixed).
        options: The perturbation (:class:`~phys.train.perturb.PerturbOptions`); layer
            ``i`` draws its directions from ``seed + i``.
        every: Batches between steps of the physical parameters.
        names: Only these parameters (default: every declared one).
        batch: Samples of the batch that each perturbed loss is measured on (the first
            ones; default: the whole batch).

    Raises:
        ValueError: no device declares parameters, a name no device has, or a device that
            cannot report its current values (``get``) - before any training.
    """

    def __init__(self, devices: Sequence[Device | None], options: PerturbOptions | None = None,
                 *, every: int = 1, names: Sequence[str] | None = None,
                 batch: int | None = None) -> None:
        options = options or PerturbOptions()
        for key, value in (("every", every), ("batch", 1 if batch is None else batch)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{key} must be an int >= 1, got {value!r}")
        self.devices, self.every, self.batch = list(devices), every, batch
        self.estimators: list[Perturbation | None] = []
        self.values: list[dict[str, torch.Tensor]] = []
        wanted = set(names) if names is not None else None
        found: set[str] = set()
        for i, dev in enumerate(self.devices):
            specs = [] if dev is None else [p for p in dev.info.params
                                            if wanted is None or p.name in wanted]
            found.update(p.name for p in specs)
            if not specs:
                self.estimators.append(None)
                self.values.append({})
                continue
            self.estimators.append(Perturbation(specs, dataclasses.replace(
                options, seed=options.seed + i)))
            self.values.append({p.name: _current(dev, p.name, i) for p in specs})
        if wanted is not None and wanted - found:
            raise ValueError(f"no device declares the physical parameter(s) "
                             f"{', '.join(sorted(wanted - found))}")
        if not found:
            named = ", ".join(repr(d.info.name) for d in self.devices if d is not None)
            raise ValueError(f"train_physics needs devices with physical parameters, but "
                             f"{named or 'no device'} declares none")
        self.steps = [0] * len(self.devices)
        self.batches = 0
        #: Device samples spent on measuring perturbed losses, per layer.
        self.samples = [0] * len(self.devices)

    def after_layer(self, i: int, measure: Callable[[], float]) -> None:
        """One step of layer ``i``'s parameters (on every ``every``-th batch), from
        ``measure()``: the layer's loss measured at the device's current settings.

        Raises:
            PhysicsSetError: the device refused a setting.
        """
        est = self.estimators[i]
        if est is None or self.batches % self.every:
            return
        dev = self.devices[i]
        before = dev.stats.samples

        def loss(values: dict[str, torch.Tensor]) -> float:
            self._set(i, values)
            with torch.no_grad():
                return float(measure())

        try:
            grad, _ = est.gradient(loss, self.values[i], self.steps[i])
            new = est.step(self.values[i], grad, self.steps[i])
            self._set(i, new)
        finally:
            self.samples[i] += dev.stats.samples - before
        self.values[i], self.steps[i] = new, self.steps[i] + 1

    def end_batch(self) -> None:
        """Count a batch (the trainer calls it after every block's step)."""
        self.batches += 1

    def _set(self, i: int, values: dict[str, torch.Tensor]) -> None:
        dev = self.devices[i]
        for name, value in values.items():
            try:
                dev.set(name, value)
            except Exception as err:
                raise PhysicsSetError(f"layer {i}: device {dev.info.name!r} refused "
                                      f"parameter {name!r} = {_describe(value)}: {err}"
                                      ) from err

    # -- checkpoints ------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"values": [{n: v.clone() for n, v in vals.items()} for vals in self.values],
                "steps": list(self.steps), "batches": self.batches,
                "samples": list(self.samples),
                "generators": [None if e is None else e.generator.get_state()
                               for e in self.estimators]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` and set its values on the devices."""
        if len(state["values"]) != len(self.devices):
            raise ValueError(f"checkpoint has physical parameters of {len(state['values'])} "
                             f"layers, this network {len(self.devices)}")
        for i, vals in enumerate(state["values"]):
            if set(vals) != set(self.values[i]):
                raise ValueError(f"layer {i}: checkpoint trains parameters {sorted(vals)}, "
                                 f"this run {sorted(self.values[i])}")
        for i, (vals, gen) in enumerate(zip(state["values"], state["generators"],
                                            strict=True)):
            self.values[i] = {n: v.clone() for n, v in vals.items()}
            if gen is not None:
                self.estimators[i].generator.set_state(gen)
        self.steps, self.batches = list(state["steps"]), int(state["batches"])
        self.samples = list(state["samples"])
        for i, vals in enumerate(self.values):  # the state is whole even if a set fails
            if vals:
                self._set(i, vals)

    def as_dict(self) -> dict[str, Any]:
        """For results: the samples spent and the final values, per layer."""
        return {"samples": sum(self.samples), "samples_per_layer": list(self.samples),
                "steps": list(self.steps),
                "values": [{n: v.tolist() for n, v in vals.items()} for vals in self.values]}


def _current(dev: Device, name: str, i: int) -> torch.Tensor:
    getter = getattr(dev, "get", None)
    if getter is None:
        raise ValueError(f"layer {i}: device {dev.info.name!r} cannot report the current "
                         f"value of {name!r} (it has no get), so it cannot be trained")
    spec = dev.info.param(name)
    value = torch.as_tensor(getter(name), dtype=torch.float32).reshape(spec.shape)
    return value.clone()


class GradientPhysics:
    """The physical parameters of a network's devices trained by gradient, through the
    simulator (backprop) or a simulator twin (PAT), by the trainer's own optimiser with
    the same loss as the digital weights. Spends no device queries of its own.

    Each :class:`~phys.nn.DeviceLayer` whose device declares parameters gets them as torch
    parameters (:meth:`~phys.nn.DeviceLayer.train_physics`), so they are in the network's
    ``parameters()`` and ``state_dict()``; :meth:`after_step` clamps them into range and
    sets them on the devices (and twins).

    Args:
        layers: The network's device layers, their gradient routes already chosen.
        names: Only these parameters (default: every declared one).
        lr: The optimiser's learning rate of each parameter, in units of its range
            (``max - min``; Adam's steps are about this size); ``None``: the trainer's.

    Raises:
        ValueError: no device declares parameters, a name no device has, a layer whose
            route gives no gradient (``"none"``), or a twin that cannot differentiate
            with respect to them - before any training.
    """

    def __init__(self, layers: Sequence[DeviceLayer], names: Sequence[str] | None = None,
                 *, lr: float | None = None) -> None:
        if lr is not None and (isinstance(lr, bool) or not isinstance(lr, int | float)
                               or not lr > 0):
            raise ValueError(f"lr must be a positive number or None, got {lr!r}")
        self.layers, self.lr = list(layers), lr
        wanted = None if names is None else set(names)
        found: set[str] = set()
        for i, layer in enumerate(self.layers):
            declared = {p.name for p in layer.device.info.params}
            mine = declared if wanted is None else declared & wanted
            if not mine:
                continue
            if layer.grad == "none":
                raise ValueError(f"layer {i} passes no gradient (grad='none'), so its "
                                 f"physical parameters cannot train through it")
            try:
                layer.train_physics([p.name for p in layer.device.info.params
                                     if p.name in mine])
            except ValueError as err:
                raise ValueError(f"layer {i}: {err}") from None
            found |= mine
        if wanted is not None and wanted - found:
            raise ValueError(f"no device declares the physical parameter(s) "
                             f"{', '.join(sorted(wanted - found))}")
        if not found:
            named = ", ".join(sorted({repr(la.device.info.name) for la in self.layers}))
            raise ValueError(f"train_physics needs devices with physical parameters, but "
                             f"{named or 'no device'} declares none")
        self.steps = 0
        #: Device samples spent on the parameters apart from training's own: none.
        self.samples = [0] * len(self.layers)

    def parameters(self) -> list[torch.nn.Parameter]:
        """The trainable physical parameters, layer by layer."""
        return [p for layer in self.layers if layer.physical is not None
                for p in layer.physical.values()]

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """Optimiser groups, one per parameter: no weight decay, the learning rate
        :attr:`lr` times its range (``lr``, the trainer's, when :attr:`lr` is ``None``)."""
        groups = []
        for layer in self.layers:
            for name, param in ({} if layer.physical is None else layer.physical).items():
                spec = layer.device.info.param(name)
                rate = lr if self.lr is None else self.lr * (spec.max - spec.min)
                groups.append({"params": [param], "lr": rate, "weight_decay": 0.0})
        return groups

    def after_step(self) -> None:
        """After an optimiser step: clamp into range and set on the devices.

        Raises:
            PhysicsSetError: a device refused a value (naming layer, parameter, value).
        """
        self.steps += 1
        self.push()

    def push(self) -> None:
        """Clamp and set every layer's values (also after a checkpoint is loaded)."""
        for i, layer in enumerate(self.layers):
            try:
                layer.push_physics()
            except RuntimeError as err:
                raise PhysicsSetError(f"layer {i}: {err}") from err

    @property
    def values(self) -> list[dict[str, torch.Tensor]]:
        """The current values, per layer (``{}``: fixed physics)."""
        return [{} if layer.physical is None else
                {n: p.detach().to("cpu").clone() for n, p in layer.physical.items()}
                for layer in self.layers]

    def state_dict(self) -> dict[str, Any]:
        """The step count (the values are in the network's state dict)."""
        return {"steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = int(state["steps"])
        self.push()

    def as_dict(self) -> dict[str, Any]:
        """For results, as :meth:`PhysicalParameters.as_dict`: no samples of its own."""
        return {"samples": 0, "samples_per_layer": list(self.samples),
                "steps": [self.steps if vals else 0 for vals in self.values],
                "values": [{n: v.tolist() for n, v in vals.items()} for vals in self.values]}


class TrainsPhysics:
    """Mixin of the end-to-end trainers (before :class:`~phys.train.network.
    ClassifierTrainer` in the bases): with ``physics`` a :class:`GradientPhysics`, the
    optimiser gets the physical parameters as groups of their own (no weight decay),
    every step pushes them to the devices, the checkpoint keeps their step count and
    ``device_usage`` reports ``physics_device_samples`` (0)."""

    physics: GradientPhysics | None = None
    optimizers: list[torch.optim.Optimizer]
    network: torch.nn.Module
    config: Any

    def _physics_optimizer(self) -> None:
        """Rebuild the Adam optimiser with the physical parameters in a second group."""
        if self.physics is None:
            return
        own = {id(p) for p in self.physics.parameters()}
        digital = [p for p in self.network.parameters() if id(p) not in own]
        cfg = self.config
        self.optimizers = [torch.optim.Adam(
            [{"params": digital}, *self.physics.param_groups(cfg.lr)],
            lr=cfg.lr, weight_decay=cfg.weight_decay)]

    def train_step(self, x: torch.Tensor, labels: torch.Tensor) -> Any:
        loss = super().train_step(x, labels)  # type: ignore[misc]
        if self.physics is not None:
            self.physics.after_step()
        return loss

    def device_usage(self) -> dict[str, float | None]:
        usage = super().device_usage()  # type: ignore[misc]
        if self.physics is not None:
            usage["physics_device_samples"] = 0
        return usage

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()  # type: ignore[misc]
        if self.physics is not None:
            state["physics"] = self.physics.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if (self.physics is not None) != ("physics" in state):
            raise ValueError("checkpoint " + ("does not train" if self.physics is not None
                             else "trains") + " the physical parameters, this run "
                             + ("does" if self.physics is not None else "does not"))
        super().load_state_dict(state)  # type: ignore[misc]
        if self.physics is not None:
            self.physics.load_state_dict(state["physics"])


class PerturbsPhysics:
    """Mixin of the trainers that train physical parameters by perturbation (before the
    trainer in the bases): ``physics`` a :class:`PhysicalParameters` or ``None``; the
    checkpoint keeps its state and ``device_usage`` reports ``physics_device_samples``,
    the samples (among ``device_samples``) it spent."""

    physics: PhysicalParameters | None = None

    def device_usage(self) -> dict[str, float | None]:
        usage = super().device_usage()  # type: ignore[misc]
        if self.physics is not None:
            usage["physics_device_samples"] = sum(self.physics.samples)
        return usage

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()  # type: ignore[misc]
        if self.physics is not None:
            state["physics"] = self.physics.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if (self.physics is not None) != ("physics" in state):
            raise ValueError("checkpoint " + ("does not train" if self.physics is not None
                             else "trains") + " the physical parameters, this run "
                             + ("does" if self.physics is not None else "does not"))
        super().load_state_dict(state)  # type: ignore[misc]
        if self.physics is not None:
            self.physics.load_state_dict(state["physics"])
