"""Find and open devices: built-in simulators, addresses, and the ``phys.devices`` entry points.

A device is named once, by a :class:`DeviceSpec`: a registered name (``"cavity"``) or an
address (``"serial:///dev/ttyACM0"``, ``"pennylane:default.qubit"``) plus its options.
:meth:`DeviceSpec.parse` resolves the name when it is made; everything that later opens,
describes or lists the options of that device asks the spec, never the name again.

Third-party packages add a device by declaring, in their ``pyproject.toml``::

    [project.entry-points."phys.devices"]
    mydevice = "mypackage.module:MyDevice"

``MyDevice(**options)`` must return a :class:`phys.Device`. A class that takes the
layer-sizing options ``n_in``, ``n_out`` or ``seed`` declares them in its ``sizes``
class attribute (see :data:`SIZES`); a trainer then opens one device per layer with them.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from types import MappingProxyType
from typing import Any

from phys.device import SIZES, Device, DeviceInfo

__all__ = ["SIZES", "DeviceSpec", "available", "load", "open"]

ENTRY_POINT_GROUP = "phys.devices"

#: Devices that ship with physnn: name -> "module:attribute".
BUILTIN: dict[str, str] = {
    "cavity": "phys.simulators.cavity:Cavity",
    "optics": "phys.simulators.optics:Optics",
    "oscillators": "phys.simulators.oscillators:Oscillators",
    "wave2d": "phys.simulators.wave2d:Wave2D",
}


@dataclass(frozen=True)
class Opener:
    """How an address scheme opens: ``target(address, **options)`` returns a Device.

    Args:
        target: ``"module:function"``.
        sizes: The layer-sizing options (of :data:`SIZES`) the function takes.
        forms: Address forms, for listings (``serial:///dev/ttyACM0``).
    """

    target: str
    sizes: tuple[str, ...]
    forms: tuple[str, ...]


#: Specs that are addresses rather than names: URL scheme -> how it opens.
OPENERS: dict[str, Opener] = {
    "pennylane": Opener("phys.devices.quantum:open_pennylane", ("seed",),
                        ("pennylane:<PennyLane device>",)),
    # a lab device's sizes are fixed; n_in, n_out and seed only shape a fallback simulator
    "serial": Opener("phys.devices.ports:open_address", SIZES,
                     ("serial:///dev/ttyACM0", "/dev/ttyUSB0", "COM3")),
    "socket": Opener("phys.devices.ports:open_address", SIZES, ("socket://HOST:PORT",)),
    "auto": Opener("phys.devices.ports:open_auto", SIZES, ("auto",)),
    # sizes are fixed by the recording
    "recorded": Opener("phys.devices.recorded:open_recorded", (),
                       ("recorded:x_data.csv,y_data.csv", "recorded:DIR",
                        "recorded:measurements.h5", "recorded:phyll_acoustic")),
    "replay": Opener("phys.devices.replay:open_replay", (),
                     ("replay:x_data.csv,y_data.csv", "replay:measurements.h5")),
    # SCPI instruments described by a rig file (option rig=...); sizes are the rig's
    "visa": Opener("phys.devices.visa:open_visa", (),
                   ("visa:ASRL/dev/ttyUSB0::INSTR", "visa:TCPIP::HOST::INSTR")),
}


def _opener_for(name: str) -> Opener | None:
    scheme, sep, _ = name.partition(":")
    if sep and scheme in OPENERS:
        return OPENERS[scheme]
    if name in OPENERS:  # a bare word such as "auto"
        return OPENERS[name]
    if name.startswith("/") or name.upper().startswith("COM"):  # a serial port path
        return OPENERS["serial"]
    return None


def _resolve(target: str) -> Any:
    module_name, _, attr = target.partition(":")
    found: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        found = getattr(found, part)
    return found


def available() -> dict[str, str]:
    """Every known device name mapped to its ``"module:attribute"`` target, sorted."""
    found = dict(BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep.value)
    return dict(sorted(found.items()))


def load(name: str) -> type[Device]:
    """The device class registered under ``name``.

    Raises:
        ValueError: unknown name (the message lists the known ones).
    """
    known = available()
    if name not in known:
        raise ValueError(
            f"unknown device {name!r}; known devices: {', '.join(known) or '(none)'}"
        )
    return _resolve(known[name])


def _declared_sizes(cls: type) -> tuple[str, ...]:
    sizes = tuple(getattr(cls, "sizes", ()))
    unknown = sorted(set(sizes) - set(SIZES))
    if unknown:
        raise ValueError(f"device class {cls.__name__} declares sizes {unknown}; a device "
                         f"can take only {', '.join(SIZES)}")
    return sizes


@dataclass(frozen=True)
class DeviceSpec:
    """A device named once: what to open and with which options.

    Args:
        name: A registered name (see ``phys devices``) or an address whose scheme is in
            :data:`OPENERS`.
        options: Keyword options of that device (read-only).

    Examples::

        >>> spec = DeviceSpec.parse("cavity", {"n_scatterers": 16})
        >>> spec.sizes
        ('n_in', 'n_out', 'seed')
        >>> with spec.open(n_in=4, n_out=3, seed=1) as dev:
        ...     dev.info.n_in, dev.info.n_out
        (4, 3)
    """

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)
    #: ``factory(**options)`` gives the Device; resolved by :meth:`parse`.
    factory: Callable[..., Device] = field(default=None, repr=False, compare=False)  # type: ignore[assignment]
    #: The layer-sizing options (of :data:`SIZES`) this device takes.
    sizes: tuple[str, ...] = ()

    @classmethod
    def parse(cls, name: str, options: Mapping[str, Any] | None = None) -> DeviceSpec:
        """Resolve ``name`` (once) and keep ``options``.

        Raises:
            ValueError: an empty or non-string name, or an unknown one (the message lists
                the known names).
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"device spec must be a non-empty string, got {name!r}")
        opts = dict(options or {})
        bad = [k for k in opts if not isinstance(k, str) or not k.isidentifier()]
        if bad:
            raise ValueError(f"device {name!r}: option names must be identifiers, got {bad}")
        opener = _opener_for(name)
        if opener is not None:
            return cls(name, MappingProxyType(opts),
                       functools.partial(_resolve(opener.target), name), opener.sizes)
        device_class = load(name)
        return cls(name, MappingProxyType(opts), device_class, _declared_sizes(device_class))

    @functools.cached_property
    def accepted_options(self) -> tuple[str, ...] | None:
        """Names of the options the device takes (``None``: any keyword): the fields of
        the options dataclass a device class declares as ``options_class``, else the
        keywords of its constructor or opener."""
        options_class = getattr(self.factory, "options_class", None)
        if options_class is not None:
            return tuple(f.name for f in dataclasses.fields(options_class) if f.init)
        params = inspect.signature(self.factory).parameters.values()
        if any(p.kind is p.VAR_KEYWORD for p in params):
            return None
        return tuple(p.name for p in params
                     if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))

    def with_options(self, **options: Any) -> DeviceSpec:
        """The same device with ``options`` put over this spec's."""
        return DeviceSpec(self.name, MappingProxyType({**self.options, **options}),
                          self.factory, self.sizes)

    def check_options(self, names: Any) -> None:
        """``ValueError`` naming every option in ``names`` that the device does not take,
        with the options it accepts."""
        accepted = self.accepted_options
        if accepted is None:
            return
        unknown = [k for k in names if k not in accepted]
        if unknown:
            raise ValueError(f"device {self.name!r} has no option "
                             f"{', '.join(map(repr, unknown))}; it accepts: "
                             f"{', '.join(accepted)}")

    def open(self, **sizes: Any) -> Device:
        """Open the device with this spec's options.

        Args:
            **sizes: Layer-sizing options (of :data:`SIZES`); those the device does not
                declare in :attr:`sizes` are left out, and options of the spec win.

        Raises:
            ValueError: an option the device does not take (the message lists those it
                accepts), or a bad option value.
        """
        unknown = sorted(set(sizes) - set(SIZES))
        if unknown:
            raise ValueError(f"{', '.join(unknown)} are not sizing options ({SIZES})")
        self.check_options(self.options)
        taken = {k: v for k, v in sizes.items() if k in self.sizes}
        try:
            device = self.factory(**{**taken, **self.options})
        except TypeError as err:
            raise ValueError(f"bad options for device {self.name!r}: {err}") from None
        if not isinstance(device, Device):
            raise TypeError(f"{self.name!r} produced {type(device).__name__}, not a phys.Device")
        return device

    def describe(self, **sizes: Any) -> DeviceInfo:
        """The :class:`~phys.DeviceInfo` of the device: opened, read and closed."""
        with self.open(**sizes) as device:
            return device.info

    def as_dict(self) -> dict[str, Any]:
        """``{"name": ..., "options": {...}}``, as a configuration stores it."""
        return {"name": self.name, "options": dict(self.options)}

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # the read-only options view does not pickle; parse again where it is unpickled
        return DeviceSpec.parse, (self.name, dict(self.options))


def open(spec: str | DeviceSpec, **options: Any) -> Device:  # noqa: A001 - mirrors the builtin
    """Open a device, e.g. ``phys.open("cavity", n_in=16, seed=0)``.

    Args:
        spec: A registered device name (see ``phys devices``), an address whose scheme
            is in :data:`OPENERS`, or a :class:`DeviceSpec`.
        **options: Keyword options of that device (over a spec's own).

    Raises:
        ValueError: unknown name (the message lists the known ones) or bad options (an
            unknown one lists those the device accepts).
    """
    if isinstance(spec, DeviceSpec):
        return spec.with_options(**options).open()
    return DeviceSpec.parse(spec, options).open()
