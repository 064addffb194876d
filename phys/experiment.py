"""Assemble and run an experiment: dataset, one device per layer, network, trainer.

This is what ``phys train`` and ``phys compare`` run; it is also the shortest way to do
the same from Python. What to run is a :class:`TrainSpec`, made of one options dataclass
per concern (:class:`DeviceOptions`, :class:`DataOptions`, :class:`NetworkOptions`,
:class:`TrainerOptions`, :class:`TwinOptions`); how to run it is :class:`RunOptions`.
The command line and the sweep schema are generated from these fields.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import typing
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from phys.device import Device
from phys.options import OptionError, Options, check_value, option
from phys.registry import DeviceSpec
from phys.train.base import TrainConfig
from phys.train.perturb import PerturbOptions
from phys.train.phyll import PhyLLConfig

__all__ = ["TRAINERS", "TWINS", "DataOptions", "DeviceOptions", "NetworkOptions", "RunOptions",
           "TrainSpec", "TrainerOptions", "TwinOptions", "borrowed", "build",
           "load_data", "open_layer_device", "prepare"]

TRAINERS = ("phyll", "backprop", "pat", "readout")
TWINS = ("surrogate", "simulator")
#: How the devices' physical parameters train (``train_physics``).
PHYSICS_ROUTES = ("none", "spsa", "twin")
ACTIVATIONS = ("relu", "abs")  # those of phys.layers.PhysicalLayer
#: Bounds of the sizes a spec may ask for: generous for real use, refused above (a typo
#: such as ``layers=1000000`` is an error, not a run that never ends).
MAX_LAYERS = 100
MAX_WIDTH = 65_536  # hidden units and measurements per layer
MAX_TWIN_SAMPLES = 10_000_000
MAX_DEVICE_WAIT = 7 * 24 * 3600.0  # seconds: a week


def borrowed(owner: type, name: str, *, default: Any = dataclasses.MISSING,
              help: str | None = None) -> Any:  # noqa: A002
    """Field ``name`` of options class ``owner`` as a field of another options class: the
    same default, allowed values and help, unless ``default`` or ``help`` is given."""
    source = {f.name: f for f in dataclasses.fields(owner)}[name]
    metadata = {**source.metadata, **({} if help is None else {"help": help})}
    if default is not dataclasses.MISSING:
        return dataclasses.field(default=default, metadata=metadata)
    if source.default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=source.default_factory, metadata=metadata)
    return dataclasses.field(default=source.default, metadata=metadata)


@dataclass
class DeviceOptions(Options):
    """Which device each layer opens."""

    device: str = option("cavity", help="registered device name or address, e.g. "
                         "pennylane:default.qubit; one device is opened per layer")
    measurements: int = option(64, min=1, max=MAX_WIDTH, help="detectors n_out asked of "
                               "each device, when it takes one")
    device_options: dict[str, Any] = option(default_factory=dict, help="extra keyword options "
                                            "of the device, e.g. noise=0.01")


@dataclass
class DataOptions(Options):
    """Which dataset is learnt."""

    data: str = option("digits", help="dataset: digits (bundled), mnist, fashion_mnist, "
                       "vowels (see phys.data.names)")
    data_options: dict[str, Any] = option(default_factory=dict, help="extra keyword options "
                                          "of the dataset, e.g. classes=7 for vowels")
    subset: int | None = option(None, min=1, help="train on a fixed random subset of this "
                                "many training samples (drawn with seed; the test set is "
                                "kept whole)")


@dataclass
class NetworkOptions(Options):
    """The shape of the physical network."""

    layers: int = option(2, min=1, max=MAX_LAYERS, help="physical layers (one device each)")
    hidden: int = option(256, min=1, max=MAX_WIDTH,
                         help="output width of every layer's digital map")
    activation: str = option("relu", choices=ACTIVATIONS,
                             help="nonlinearity after every layer's digital map (abs: the "
                                  "PhyLL paper's |x|, whose units cannot die)")
    skip: bool = option(True, help="give each layer's digital map the layer's input "
                        "beside its measurements (no-skip: a physics-dominant network, whose "
                        "digital maps read the measurements only)")


@dataclass
class TrainerOptions(Options):
    """How the network learns: the trainer and the fields of
    :class:`~phys.train.base.TrainConfig` and :class:`~phys.train.phyll.PhyLLConfig` that
    ``phys train`` sets (their defaults are those classes')."""

    trainer: str = option("phyll", choices=TRAINERS,
                          help="phyll: model-free; backprop: in silico through the simulator; "
                               "pat: physics-aware, device forward and digital-twin backward; "
                               "readout: model-free cross-entropy through the digital maps "
                               "only (the devices pass no gradient)")
    epochs: int = borrowed(TrainConfig, "epochs")
    batch_size: int = borrowed(TrainConfig, "batch_size")
    lr: float = borrowed(TrainConfig, "lr")
    weight_decay: float = borrowed(TrainConfig, "weight_decay")
    schedule: str = borrowed(TrainConfig, "schedule")
    eval_every: int = borrowed(TrainConfig, "eval_every")
    eval_samples: int | None = borrowed(TrainConfig, "eval_samples")
    count_flops: bool = borrowed(TrainConfig, "count_flops")
    seed: int = borrowed(TrainConfig, "seed", help="seeds data order, negatives, initial "
                          "weights and the simulated physics (layer i gets seed + i)")
    negatives: str = borrowed(PhyLLConfig, "negatives")
    readout: str = borrowed(PhyLLConfig, "readout")
    goodness: str = borrowed(PhyLLConfig, "goodness")
    loss: str = borrowed(PhyLLConfig, "loss")
    label_scale: float = borrowed(PhyLLConfig, "label_scale")
    theta: float = borrowed(PhyLLConfig, "theta")
    dropout: float = borrowed(PhyLLConfig, "dropout")

    #: Which fields go to which trainer configuration.
    COMMON: ClassVar[tuple[str, ...]] = ("epochs", "batch_size", "lr", "weight_decay",
                                         "schedule", "eval_every", "eval_samples",
                                         "count_flops", "seed")
    PHYLL: ClassVar[tuple[str, ...]] = ("negatives", "readout", "goodness", "loss",
                                        "label_scale", "theta", "dropout")


@dataclass
class TwinOptions(Options):
    """PAT's digital twin (``trainer="pat"`` only).

    ``twin`` is one of :data:`TWINS` or a file of twins fitted to a recording, ``FILE.pt``
    (``phys twin fit``; :mod:`phys.train.twin_file`), which spends no device queries.
    """

    twin: str = option("surrogate",
                       help="surrogate: a network fitted to twin_samples device queries; "
                            "simulator: the device's simulator with twin_options over "
                            "device_options (a sim-to-real gap); FILE.pt: twins fitted to a "
                            "recording by phys twin fit (no device queries)")
    twin_samples: int = option(8192, min=1, max=MAX_TWIN_SAMPLES,
                               help="device queries that fit a surrogate twin")
    twin_options: dict[str, Any] = option(default_factory=dict, help="options of a simulator "
                                          "twin over device_options, e.g. drive=5")

    def check(self) -> None:
        """The fields' own checks, and ``twin``: one of :data:`TWINS` or ``FILE.pt``."""
        super().check()
        from phys.train.twin_file import SUFFIX, is_twin_file

        if self.twin not in TWINS and not is_twin_file(self.twin):
            raise OptionError(f"twin must be one of {', '.join(TWINS)} or a file of twins "
                              f"FILE{SUFFIX} (phys twin fit writes one), got {self.twin!r}",
                              "twin")


@dataclass
class PhysicsOptions(Options):
    """Training the devices' physical parameters (those their info declares)."""

    train_physics: str = option("none", choices=PHYSICS_ROUTES,
                                help="none: the physics stays as it is; spsa: model-free, each "
                                     "layer's parameters follow the trainer's loss (phyll: "
                                     "the layer's local loss; readout: the network's) "
                                     "measured at perturbed settings (2 x "
                                     "physics_directions batch measurements a step); twin: "
                                     "by gradient with the digital weights, the trainer's "
                                     "optimiser and loss, through the simulator (backprop) "
                                     "or a simulator twin at the device's values (pat, "
                                     "twin=simulator); no queries beyond training's own")
    physics_every: int = option(1, min=1, help="batches between steps of the physical "
                                "parameters")
    physics_batch: int | None = option(None, min=1, help="samples of each batch that a "
                                       "perturbed loss is measured on (spsa; default: all)")
    physics_method: str = borrowed(PerturbOptions, "method")
    physics_directions: int = borrowed(PerturbOptions, "directions")
    physics_lr: float = borrowed(PerturbOptions, "lr", help="step size, in units of each "
                                 "parameter's range (spsa: of each step; twin: the "
                                 "learning rate of the parameters in the trainer's Adam)")
    physics_perturbation: float = borrowed(PerturbOptions, "perturbation")

    def perturb_options(self) -> PerturbOptions:
        """The perturbation these options describe (seeded with the run's seed)."""
        return PerturbOptions(method=self.physics_method, directions=self.physics_directions,
                              lr=self.physics_lr, perturbation=self.physics_perturbation,
                              seed=getattr(self, "seed", 0))


@dataclass
class RunOptions(Options):
    """How a run is kept and watched; these may differ when a run is resumed."""

    checkpoint_every: int = option(200, min=0, help="batches between checkpoints within an "
                                   "epoch (0: at epoch ends only)")
    device_wait: float = option(300.0, min=0.0, max=MAX_DEVICE_WAIT,
                                help="seconds to wait for a lab device that stops answering "
                                     "to come back, after saving the run")
    overwrite: bool = option(False, help="start again in a run directory that holds an "
                             "unfinished run")
    progress: bool = option(True, help="show progress bars on a terminal (elsewhere, and "
                            "without bars, a line per epoch is logged)")
    threads: int | None = option(None, min=1, max=1024, help="torch threads (default: the "
                                 "cores available to this process)")
    torch_device: str = option("cpu", help="torch device of the digital network and of the "
                               "simulators, e.g. cuda or cuda:1 (hardware answers on the host)")
    tensorboard: bool = option(True, help="write TensorBoard event files into the run "
                               "directory (view with: tensorboard --logdir runs)")
    record: bool | None = option(None, help="write every device query to DIR/measurements.h5 "
                                 "(default: for lab hardware, devices whose info is exclusive)")


@dataclass
class TrainSpec(PhysicsOptions, TwinOptions, TrainerOptions, NetworkOptions, DataOptions,
                DeviceOptions):
    """Everything ``phys train`` needs; stored as ``config`` in ``results.json``.

    The fields are those of :class:`DeviceOptions`, :class:`DataOptions`,
    :class:`NetworkOptions`, :class:`TrainerOptions`, :class:`TwinOptions` and
    :class:`PhysicsOptions`, given as flat
    keywords; each is checked once, when the spec is made, against its type, allowed
    values and bounds. ``vars(spec)`` is the configuration a run directory keeps.

    Examples::

        >>> TrainSpec(layers=1, epochs=3).hidden
        256
        >>> TrainSpec(layers=2.7)
        Traceback (most recent call last):
        ...
        phys.options.OptionError: layers must be an int, got 2.7
    """

    #: The options classes a spec is made of, in the order of ``phys train --help``.
    PARTS: ClassVar[tuple[type[Options], ...]] = (DeviceOptions, DataOptions, NetworkOptions,
                                                  TrainerOptions, TwinOptions, PhysicsOptions)


def _keyword_hints(factory: Callable[..., Any]) -> dict[str, Any]:
    """Type hints of ``factory``'s keyword parameters (``{}`` where they cannot be read)."""
    target: Any = factory.func if isinstance(factory, functools.partial) else factory
    target = target.__init__ if isinstance(target, type) else target
    try:
        return typing.get_type_hints(target)
    except Exception:  # unresolvable annotations: the factory checks its own values
        return {}


def _check_types(factory: Callable[..., Any], options: Mapping[str, Any], what: str) -> None:
    hints = _keyword_hints(factory)
    for key, value in options.items():
        if key in hints:
            check_value(f"{what} option {key}", value, hints[key], {})


@contextlib.contextmanager
def _blaming(option: str) -> Iterator[None]:
    """Re-raise a ``ValueError`` inside as an :class:`~phys.options.OptionError` of
    spec field ``option``."""
    try:
        yield
    except ValueError as err:
        raise OptionError(str(err), option) from None


def _check_data(spec: TrainSpec) -> None:
    from phys import data

    with _blaming("data"):
        if spec.data not in data.names():
            raise ValueError(f"unknown dataset {spec.data!r}; known datasets: "
                             f"{', '.join(data.names())}")
    loader = getattr(data, "_LOADERS", {})[spec.data]
    accepted = list(inspect.signature(loader).parameters)
    with _blaming("data_options"):
        unknown = [k for k in spec.data_options if k not in accepted]
        if unknown:
            raise ValueError(f"dataset {spec.data!r} has no option "
                             f"{', '.join(map(repr, unknown))}; its options: "
                             f"{', '.join(accepted)}")
        _check_types(loader, spec.data_options, "data")


def prepare(spec: TrainSpec) -> DeviceSpec:
    """Parse the spec's device once and check, before anything loads or opens, every
    option of the device, of a simulator twin and of the dataset (names and types), and
    the dataset's name.

    Returns:
        The :class:`~phys.DeviceSpec` that :func:`build` opens each layer's device from.

    Raises:
        OptionError: an unknown device or dataset, or an option it does not take (the
            message lists those it accepts) or of the wrong type (naming the option);
            :attr:`~phys.options.OptionError.option` is the spec's field at fault.
    """
    with _blaming("device_options"):
        bad = [k for k in spec.device_options if not str(k).isidentifier()]
        if bad:
            raise ValueError(f"device option names must be identifiers, got {bad}")
    with _blaming("device"):
        device = DeviceSpec.parse(spec.device, spec.device_options)
    with _blaming("device_options"):
        device.check_options(device.options)
        _check_types(device.factory, device.options, "device")
    _check_physics_route(spec)
    if spec.trainer == "pat" and spec.twin == "simulator":
        with _blaming("twin_options"):
            device.check_options(spec.twin_options)
            _check_types(device.factory, spec.twin_options, "twin")
    if spec.trainer == "pat" and spec.twin not in TWINS:
        _twin_file(spec)
    _check_data(spec)
    return device


#: The options only the spsa route reads.
SPSA_ONLY = ("physics_every", "physics_batch", "physics_method", "physics_directions",
             "physics_perturbation")


def _check_physics_route(spec: TrainSpec) -> None:
    """``train_physics`` fits the trainer (and PAT's twin), and options of another route
    are not given; :class:`OptionError` if not."""
    defaults = {f.name: f.default for f in dataclasses.fields(PhysicsOptions)}
    given = [k for k in (*SPSA_ONLY, "physics_lr") if getattr(spec, k) != defaults[k]]
    unused = [k for k in given if spec.train_physics == "none"
              or (spec.train_physics == "twin" and k in SPSA_ONLY)]
    if unused:
        raise OptionError(f"{unused[0]} is not used with train_physics="
                          f"{spec.train_physics!r}", unused[0])
    if spec.train_physics == "spsa" and spec.trainer not in ("phyll", "readout"):
        raise OptionError(f"train_physics='spsa' is the model-free route: it needs "
                          f"trainer='phyll' (each layer's local loss) or 'readout' (the "
                          f"network's loss), not {spec.trainer!r}", "train_physics")
    if spec.train_physics == "twin" and spec.trainer in ("phyll", "readout"):
        raise OptionError(f"train_physics='twin' trains the physical parameters by gradient "
                          f"through the simulator or a twin; it needs trainer='backprop' or "
                          f"'pat' ({spec.trainer} passes no gradient through the physics: "
                          f"use train_physics='spsa')", "train_physics")
    if spec.train_physics == "twin" and spec.trainer == "pat" and spec.twin != "simulator":
        raise OptionError(f"train_physics='twin' with trainer='pat' needs twin='simulator', "
                          f"whose gradients with respect to the physical parameters exist; "
                          f"a surrogate twin (twin={spec.twin!r}) is fitted at the device's "
                          f"present settings only (one fitted with the settings as extra "
                          f"inputs would be needed)", "train_physics")


def _twin_file(spec: TrainSpec) -> Any:
    """The spec's :class:`~phys.train.twin_file.TwinFile`, read and checked
    (:class:`~phys.options.OptionError` of ``twin``: a missing or bad file)."""
    from phys.train.twin_file import load_twins

    with _blaming("twin"):
        try:
            return load_twins(spec.twin)
        except FileNotFoundError as err:
            raise ValueError(str(err)) from None


def load_data(spec: TrainSpec) -> Any:
    """The spec's :class:`~phys.data.Dataset`, cut to ``spec.subset`` training samples
    when given."""
    from phys import data

    dataset = data.load(spec.data, **spec.data_options)
    if spec.subset is None:
        return dataset
    with _blaming("subset"):
        return dataset.subset(spec.subset, spec.seed)


def open_layer_device(device: str | DeviceSpec, n_in: int, n_out: int, seed: int,
                      options: Mapping[str, Any] | None = None) -> Device:
    """Open ``device`` for one layer, passing ``n_in``, ``n_out`` and ``seed`` when the
    device declares them in its ``sizes`` (simulators do; fixed hardware does not).

    Args:
        device: A parsed :class:`~phys.DeviceSpec` (opened as it is) or a name.
        n_in, n_out, seed: The layer's sizes and seed.
        options: Options over the spec's own.
    """
    if not isinstance(device, DeviceSpec):
        device = DeviceSpec.parse(device, options)
    elif options:
        device = device.with_options(**options)
    return device.open(n_in=n_in, n_out=n_out, seed=seed)


#: ``opener(device_spec, n_in, n_out, seed)``: how a layer's device is opened.
Opener = Callable[[DeviceSpec, int, int, int], Device]


def _open_devices(spec: TrainSpec, device: DeviceSpec, first_width: int, opened: list[Device],
                  opener: Opener = open_layer_device, torch_device: Any = "cpu") -> list[Any]:
    """One :class:`~phys.PhysicalLayer` per layer, its device moved to ``torch_device``;
    devices are appended to ``opened``."""
    from phys.layers import PhysicalLayer

    layers, width = [], first_width
    for i in range(spec.layers):
        dev = opener(device, width, spec.measurements, spec.seed + i)
        opened.append(dev)
        dev.to(torch_device)
        layers.append(PhysicalLayer(dev, width, spec.hidden, activation=spec.activation,
                                    seed=spec.seed + i, skip=spec.skip))
        width = spec.hidden
    return layers


def _twins(spec: TrainSpec, device: DeviceSpec, layers: list[Any], opened: list[Device],
           fit: bool = True, torch_device: Any = "cpu") -> tuple[list[Any], list]:
    """PAT's twins, one per layer, and a note per twin for the results (``fit=False``:
    surrogates are left unfitted, for a checkpoint to fill). Twins from a file are
    checked against every layer's device before any is used."""
    if spec.twin not in TWINS:
        found = _twin_file(spec)
        with _blaming("twin"):
            twins = [found.for_layer(i, layer.device.info).to(torch_device)
                     for i, layer in enumerate(layers)]
        return twins, [found.note(i) for i in range(len(layers))]
    twins, notes = [], []
    for i, layer in enumerate(layers):
        if spec.twin == "simulator":
            twin, note = _simulator_twin(spec, device, layer.device, i, torch_device)
            opened.append(twin)
        else:
            twin, note = _surrogate_twin(spec, layer.device, i, fit, torch_device)
        twins.append(twin)
        notes.append(note)
    return twins, notes


def _simulator_twin(spec: TrainSpec, device: DeviceSpec, dev: Device, i: int,
                    torch_device: Any) -> tuple[Any, dict[str, Any]]:
    twin = open_layer_device(device, dev.info.n_in, dev.info.n_out, spec.seed + i,
                             spec.twin_options).to(torch_device)
    if not twin.info.differentiable or not hasattr(twin, "simulate"):
        twin.close()
        raise ValueError(
            f"twin='simulator' needs a differentiable simulator, but {spec.device!r} "
            f"is not one; use twin='surrogate'"
        )
    return twin, {"kind": "simulator", "options": dict(spec.twin_options)}


def _surrogate_twin(spec: TrainSpec, dev: Device, i: int, fit: bool, torch_device: Any
                    ) -> tuple[Any, dict[str, Any]]:
    from phys.train.twin import SurrogateTwin

    twin = SurrogateTwin(dev.info, seed=spec.seed + i).to(torch_device)
    report = twin.fit(dev, n_samples=spec.twin_samples) if fit else {}
    _warn_if_poor(report, i, spec.twin_samples)
    return twin, {"kind": "surrogate", **report}


def _warn_if_poor(report: Mapping[str, Any], layer: int, samples: int) -> None:
    """Warn when a fitted surrogate twin predicts its device poorly (held-out error)."""
    from phys.train.twin import POOR_REL_RMSE

    rel = report.get("rel_rmse")
    if rel is not None and rel > POOR_REL_RMSE:
        warnings.warn(f"the twin of layer {layer + 1} predicts its device with relative RMSE "
                      f"{rel:.2f} on held-out queries (poor above {POOR_REL_RMSE}), so PAT's "
                      f"gradients are poor; more twin_samples (now {samples}) fit a better "
                      f"twin", stacklevel=4)


def _physics_blamed(spec: TrainSpec) -> contextlib.AbstractContextManager[None]:
    """Errors of an end-to-end trainer blamed on ``train_physics`` when it trains them."""
    return _blaming("train_physics") if spec.train_physics == "twin" else \
        contextlib.nullcontext()


def _physics_args(spec: TrainSpec) -> dict[str, Any]:
    """The end-to-end trainers' keywords of ``train_physics='twin'``."""
    return {"train_physics": spec.train_physics == "twin", "physics_lr": spec.physics_lr}


def _physics(spec: TrainSpec, layers: list[Any]) -> Any:
    """The physical parameters to train by perturbation (``None``: none)."""
    if spec.train_physics != "spsa":
        return None
    from phys.train.physics import PhysicalParameters

    with _blaming("train_physics"):
        return PhysicalParameters([layer.device for layer in layers], spec.perturb_options(),
                                  every=spec.physics_every, batch=spec.physics_batch)


def build(spec: TrainSpec, n_features: int, n_classes: int, opened: list[Device], *,
          device: DeviceSpec | None = None, opener: Opener = open_layer_device,
          fit_twins: bool = True, torch_device: Any = "cpu") -> tuple[Any, dict[str, Any]]:
    """The trainer ``spec`` asks for, and extra facts for the results.

    Args:
        spec: What to train.
        n_features, n_classes: Of the dataset.
        opened: Devices (and simulator twins) are appended as they open, so the caller
            can close them whatever happens.
        device: The spec's device from :func:`prepare` (parsed here when not given).
        opener: Opens each layer's device from ``device``.
        fit_twins: ``False`` leaves PAT's surrogate twins unfitted (a checkpoint restores
            them).
        torch_device: Where the digital network, PAT's twins and every device that
            computes in torch (the simulators) compute; hardware answers on the host.
    """
    device = prepare(spec) if device is None else device
    common = {k: getattr(spec, k) for k in TrainerOptions.COMMON}
    if spec.trainer == "phyll":
        from phys.train.phyll import PhyLLNetwork, PhyLLTrainer

        config = PhyLLConfig(**common, **{k: getattr(spec, k) for k in TrainerOptions.PHYLL})
        layers = _open_devices(spec, device, n_features + n_classes, opened, opener,
                               torch_device)
        network = PhyLLNetwork(layers, n_classes, label_scale=spec.label_scale,
                               goodness=spec.goodness, seed=spec.seed).to(torch_device)
        return PhyLLTrainer(network, config, physics=_physics(spec, layers)), {}

    from phys.train.network import PhysicalClassifier

    layers = _open_devices(spec, device, n_features, opened, opener, torch_device)
    network = PhysicalClassifier(layers, n_classes, seed=spec.seed).to(torch_device)
    if spec.trainer == "readout":
        from phys.train.readout import ReadoutTrainer

        return ReadoutTrainer(network, TrainConfig(**common), physics=_physics(spec, layers)), {}
    if spec.trainer == "backprop":
        from phys.train.backprop import BackpropTrainer

        with _physics_blamed(spec):
            return BackpropTrainer(network, TrainConfig(**common), **_physics_args(spec)), {}
    from phys.train.pat import PATTrainer

    twins, notes = _twins(spec, device, layers, opened, fit_twins, torch_device)
    with _physics_blamed(spec):
        trainer = PATTrainer(network, twins, TrainConfig(**common), **_physics_args(spec))
    return trainer, {"twins": notes}
