"""DeviceLayer: a physical device as a torch module, with the gradient route as data."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from phys.device import Device, DeviceInfo
from phys.nn.functional import rms_normalize
from phys.nn.physics_aware import Twin, physics_aware

__all__ = ["GRAD_ROUTES", "DeviceLayer", "device_layers"]

#: How a :class:`DeviceLayer` passes gradients: not at all (PhyLL), through a digital
#: twin (physics-aware training) or through the differentiable simulator (in silico).
GRAD_ROUTES = ("none", "twin", "simulator")


class DeviceLayer(nn.Module):
    """Drives a :class:`~phys.Device` with any real inputs and returns its measurement.

    Inputs are mapped into the device's declared range ``[in_min, in_max]`` (so the
    device never refuses them), then the device is queried::

        u = in_min + (in_max - in_min) * (1 + tanh(gain * rms_normalize(x @ P))) / 2
        y = device.query(u)

    ``P`` is omitted (the identity) when ``in_features == device.info.n_in``, and is
    otherwise a fixed random ``(in_features, n_in)`` projection. ``P`` and the range are
    buffers, never trained. The device's own physical parameters (``info.params``) become
    trainable torch parameters with :meth:`train_physics`. ``grad`` chooses how gradients
    flow to ``x`` (and to those parameters) while autograd records:

    * ``"none"``: not at all, the measurement is a constant (PhyLL);
    * ``"twin"``: measured on the device, differentiated through ``twin.vjp``
      (physics-aware training, :func:`~phys.nn.physics_aware`);
    * ``"simulator"``: computed by the differentiable ``device.simulate`` (in-silico
      training; no queries are counted).

    Without autograd (``torch.no_grad()``, as in evaluation) every route measures the
    device.

    Args:
        device: The physical system.
        in_features: Size of each input ``x``; default ``device.info.n_in``.
        grad: One of :data:`GRAD_ROUTES`.
        twin: The digital twin for ``grad="twin"`` (anything with ``vjp(u, grad_out)``).
            It is not a submodule: its parameters are neither trained nor saved here.
        gain: Slope of the tanh that maps normalised inputs into range (> 0).
        seed: Seeds the projection; a ``torch.Generator`` is drawn from instead, for
            callers that seed several parts from one stream.

    Shape:
        - Input: ``(B, in_features)``, any real values.
        - Output: ``(B, device.info.n_out)``.

    Examples::

        >>> import phys, torch
        >>> layer = DeviceLayer(phys.open("cavity", n_in=8, n_out=16), 10)
        >>> layer(torch.randn(4, 10) * 1e3).shape
        torch.Size([4, 16])
    """

    def __init__(self, device: Device, in_features: int | None = None, *, grad: str = "none",
                 twin: Twin | None = None, gain: float = 1.0,
                 seed: int | torch.Generator = 0) -> None:
        super().__init__()
        if not isinstance(device, Device):
            raise ValueError(f"device must be a phys.Device, got {type(device).__name__}")
        info = device.info
        in_features = info.n_in if in_features is None else in_features
        if isinstance(in_features, bool) or not isinstance(in_features, int) or in_features < 1:
            raise ValueError(f"in_features must be a positive int, got {in_features!r}")
        if isinstance(gain, bool) or not isinstance(gain, (int, float)) or not (
                math.isfinite(gain) and gain > 0):
            raise ValueError(f"gain must be a positive number, got {gain}")
        self.device, self.gain = device, gain
        self.in_features, self.out_features = in_features, info.n_out
        gen = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(seed)
        projection: torch.Tensor | None = None  # equal widths: x drives the device directly
        if in_features != info.n_in:
            projection = torch.randn(in_features, info.n_in, generator=gen)
            projection /= math.sqrt(in_features)
        self.register_buffer("projection", projection)
        self.register_buffer("in_min", torch.tensor(info.in_min))
        self.register_buffer("in_max", torch.tensor(info.in_max))
        #: The device's trainable physical parameters by name (:meth:`train_physics`).
        self.physical: nn.ParameterDict | None = None
        self.register_load_state_dict_post_hook(_pushed_after_load)
        self.set_grad(grad, twin)

    def set_grad(self, grad: str, twin: Twin | None = None) -> None:
        """Choose the gradient route (see the class docstring); trainers call it.

        Raises:
            ValueError: an unknown route, ``"twin"`` without a twin (or with one of other
                sizes), a twin with another route, or ``"simulator"`` on a device that
                cannot be differentiated.
        """
        if grad not in GRAD_ROUTES:
            raise ValueError(f"grad must be one of {', '.join(GRAD_ROUTES)}, got {grad!r}")
        info = self.device.info
        if grad != "twin" and twin is not None:
            raise ValueError(f"twin is only used with grad='twin', not grad={grad!r}")
        if grad == "twin":
            if not callable(getattr(twin, "vjp", None)):
                raise ValueError(f"grad='twin' needs a twin with vjp(u, grad_out), got "
                                 f"{type(twin).__name__}")
            twin_info = getattr(twin, "info", None)
            if isinstance(twin_info, DeviceInfo) and (twin_info.n_in, twin_info.n_out) != (
                    info.n_in, info.n_out):
                raise ValueError(f"twin takes {twin_info.n_in} inputs and gives "
                                 f"{twin_info.n_out}, but device {info.name!r} takes "
                                 f"{info.n_in} and gives {info.n_out}")
        if grad == "simulator" and not (info.differentiable and callable(
                getattr(self.device, "simulate", None))):
            raise ValueError(f"grad='simulator' needs a differentiable simulator, but device "
                             f"{info.name!r} can only be queried (info.differentiable is "
                             f"{info.differentiable}); use grad='twin' with a digital twin")
        if grad == "twin" and self.physical is not None:
            _check_twin_params(twin, info, tuple(self.physical))
        self.grad = grad
        object.__setattr__(self, "twin", twin)  # not a submodule: not trained, not saved
        if grad == "twin" and self.physical is not None:
            self.push_physics()

    def train_physics(self, names: Sequence[str] | None = None) -> nn.ParameterDict:
        """Make the device's physical parameters trainable: :attr:`physical` holds one
        torch parameter per name, started at the device's current value (``get``), in its
        declared shape and units. Gradients reach them by the route of :meth:`set_grad`:
        ``"simulator"`` through ``device.simulate(u, params=...)``, ``"twin"`` through the
        twin's gradients at the same values (the twin is kept at the device's values);
        ``"none"`` gives none. After changing them (an optimiser step) call
        :meth:`push_physics` so that the device measures with them.

        Args:
            names: Only these parameters (default: every declared one).

        Raises:
            ValueError: the device declares none of them (or has no ``get`` or ``set``),
                or the twin does not take them; nothing changes then.
            RuntimeError: the device or twin refused the values; nothing changes then.
        """
        info = self.device.info
        declared = [p.name for p in info.params]
        wanted = list(declared) if names is None else list(names)
        if not wanted:
            raise ValueError(f"device {info.name!r} declares no physical parameters, so "
                             f"there are none to train")
        unknown = [n for n in wanted if n not in declared]
        if unknown:
            raise ValueError(f"device {info.name!r} declares no physical parameter "
                             f"{', '.join(map(repr, unknown))}; it declares "
                             f"{', '.join(declared) or 'none'}")
        getter = getattr(self.device, "get", None)
        if not (callable(getter) and callable(getattr(self.device, "set", None))):
            raise ValueError(f"device {info.name!r} cannot report and change its physical "
                             f"parameters (it needs get and set), so they cannot be trained")
        if self.grad == "twin":
            _check_twin_params(self.twin, info, tuple(wanted))
        where = self.in_min.device
        values = {}
        for name in wanted:
            value = torch.as_tensor(getter(name)).detach().clone()
            values[name] = nn.Parameter(value.reshape(info.param(name).shape).to(where))
        self.physical = nn.ParameterDict(values)
        try:
            self.push_physics()
        except RuntimeError:
            self.physical = None
            raise
        return self.physical

    @torch.no_grad()
    def push_physics(self) -> None:
        """Clamp every trainable physical parameter into its declared range (in place)
        and set it on the device, and on the twin when it takes parameters.

        Raises:
            RuntimeError: the device (or twin) refused a value, naming device, parameter
                and value.
        """
        if self.physical is None:
            return
        info = self.device.info
        for name, param in self.physical.items():
            spec = info.param(name)
            param.clamp_(spec.min, spec.max)
            value = param.detach().to("cpu")
            for target in (self.device, self.twin if self.grad == "twin" else None):
                if target is None:
                    continue
                try:
                    target.set(name, value)
                except Exception as err:
                    raise RuntimeError(f"device {target.info.name!r} refused physical "
                                       f"parameter {name!r} = {_describe(value)}: {err}"
                                       ) from err

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Map inputs ``(B, in_features)`` to device inputs ``(B, n_in)`` in range."""
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"input must have shape (B, {self.in_features}), got "
                             f"{tuple(x.shape)}")
        z = rms_normalize(x if self.projection is None else x @ self.projection)
        unit = (1 + torch.tanh(self.gain * z)) / 2
        u = self.in_min + (self.in_max - self.in_min) * unit
        return u.clamp(self.in_min, self.in_max)

    def measure(self, x: torch.Tensor) -> torch.Tensor:
        """Query the device for inputs ``(B, in_features)``, without gradient:
        ``(B, n_out)``."""
        with torch.no_grad():
            return self.device.query(self.encode(x.detach()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.grad == "none" or not torch.is_grad_enabled():
            return self.measure(x)
        params = None if self.physical is None else dict(self.physical)
        if self.grad == "twin":
            return physics_aware(self.device, self.twin, self.encode(x), params)
        return self.device.simulate(self.encode(x), params=params)

    def extra_repr(self) -> str:
        physical = "" if self.physical is None else f", physical={list(self.physical)}"
        return (f"device={self.device.info.name!r}, in_features={self.in_features}, "
                f"out_features={self.out_features}, grad={self.grad!r}{physical}")


def _describe(values: torch.Tensor) -> str:
    flat = values.flatten().tolist()
    head = ", ".join(f"{v:.6g}" for v in flat[:4])
    return f"[{head}{', ...' if len(flat) > 4 else ''}]"


def _check_twin_params(twin: Any, info: DeviceInfo, names: tuple[str, ...]) -> None:
    """``ValueError`` unless ``twin`` differentiates with respect to ``names``: a
    simulator (``simulate(u, params=...)``) declaring them in the device's shapes."""
    twin_info = getattr(twin, "info", None)
    if not all(callable(getattr(twin, m, None)) for m in ("simulate", "param_vjp", "set")
               ) or not isinstance(twin_info, DeviceInfo):
        raise ValueError(
            f"training the physical parameters of {info.name!r} through a twin needs a "
            f"twin that gives gradients with respect to them, a simulator (twin="
            f"'simulator'); {type(twin).__name__} learns the device at its present "
            f"settings only (one fitted with the settings as extra inputs would be needed)")
    for name in names:
        mine = info.param(name).shape
        theirs = [p.shape for p in twin_info.params if p.name == name]
        if theirs != [mine]:
            raise ValueError(f"twin {twin_info.name!r} must declare physical parameter "
                             f"{name!r} of shape {mine} like device {info.name!r}, but "
                             f"{'has shape ' + str(theirs[0]) if theirs else 'has none'}")


def _pushed_after_load(module: DeviceLayer, incompatible: Any) -> None:
    """After ``load_state_dict``: the restored physical parameters go to the device."""
    module.push_physics()


def device_layers(module: nn.Module) -> list[DeviceLayer]:
    """Every :class:`DeviceLayer` inside ``module`` (itself included), in module order."""
    return [m for m in module.modules() if isinstance(m, DeviceLayer)]
