"""Base class for numerical simulators: a :class:`~phys.Device` that is also differentiable."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import torch

from phys.device import SIZES, Device, DeviceInfo, ParamSpec, as_torch_device, validate_batch
from phys.simulators.params import ParamSpecs

__all__ = ["Simulator", "moved", "simulator_info"]

DTYPES = (torch.float32, torch.float64)


def simulator_info(name: str, n_in: int, n_out: int, *, in_range: tuple[float, float],
                   max_batch: int, noise: float, dtype: torch.dtype,
                   extra: dict[str, Any]) -> DeviceInfo:
    """The :class:`~phys.DeviceInfo` of a simulator: differentiable, stochastic when it has
    detector noise; checks the arithmetic ``dtype`` (float32 or float64)."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    lo, hi = (float(v) for v in in_range)
    return DeviceInfo(name=name, n_in=n_in, n_out=n_out, in_min=lo, in_max=hi,
                      max_batch=max_batch, differentiable=True, stochastic=noise > 0,
                      extra=extra)


def moved(value: Any, device: torch.device) -> Any:
    """``value`` with every tensor in it on ``device``: a tensor, or tuples, lists and
    dicts of them (nested); anything else is returned as it is. Dtypes are kept."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a named tuple
        return type(value)(*(moved(v, device) for v in value))
    if isinstance(value, tuple | list):
        return type(value)(moved(v, device) for v in value)
    if isinstance(value, dict):
        return type(value)((k, moved(v, device)) for k, v in value.items())
    return value


class Simulator(Device):
    """A device computed in torch, so gradients through it exist.

    Subclasses implement :meth:`_forward`, a differentiable map from a validated batch
    ``(b, n_in)`` to ``(b, n_out)``. :meth:`query` runs it without autograd (as for any
    device); :meth:`simulate` runs it with autograd for in-silico baselines; :meth:`vjp`
    gives vector-Jacobian products. :meth:`to` moves the simulation to another torch
    device (a GPU).

    Physical parameters: a subclass declares its knobs with :meth:`_declare_params`
    (``info.params`` then lists them) and reads their values in :meth:`_forward` with
    :meth:`_param`. :meth:`set` and :meth:`get` change and read them, checked against
    their :class:`~phys.ParamSpec`; :meth:`params_state` and :meth:`load_params_state`
    save and restore them for a checkpoint. Gradients with respect to them come from
    ``simulate(x, params={name: tensor})`` (autograd through the given tensors) or from
    :meth:`param_vjp`.
    """

    sizes = SIZES

    #: The declared parameters (``None`` until :meth:`_declare_params`).
    _param_specs: ParamSpecs | None = None
    #: Current parameter values by name.
    _param_values: dict[str, torch.Tensor]
    #: Values that :meth:`simulate` passes for one forward pass, by name.
    _param_override: dict[str, torch.Tensor] | None = None

    @abstractmethod
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """Differentiable forward map on a validated batch."""

    def _query(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward(x)

    # -- physical parameters ----------------------------------------------------------
    def _declare_params(self, defaults: Mapping[str, tuple[ParamSpec, torch.Tensor]],
                        dtype: torch.dtype) -> None:
        """Declare the parameters ``{name: (spec, default value)}``: ``info.params`` lists
        the specs and the defaults (checked) become the current values, stored in
        ``dtype``. Called once, from the constructor, after ``self.info`` is set."""
        specs = tuple(spec for spec, _ in defaults.values())
        self.info = replace(self.info, params=specs)
        self._param_specs = ParamSpecs(self.info.name, specs, dtype)
        self._param_values = {name: self._param_specs.check(name, value.detach()).clone()
                              for name, (_, value) in defaults.items()}

    def _specs(self) -> ParamSpecs:
        if self._param_specs is None:
            return ParamSpecs(self.info.name, (), torch.float64)
        return self._param_specs

    def _param(self, name: str) -> torch.Tensor:
        """The value of ``name`` for the forward pass running now: the one passed to
        :meth:`simulate`, else the current one."""
        override = self._param_override
        if override is not None and name in override:
            return override[name]
        return self._param_values[name]

    def _param_given(self, name: str) -> bool:
        """Whether the forward pass running now takes ``name`` from :meth:`simulate`."""
        return self._param_override is not None and name in self._param_override

    def _params_changed(self, names: tuple[str, ...]) -> None:  # noqa: B027 - optional hook
        """Called after :meth:`set` (or :meth:`load_params_state`) changed ``names``:
        rebuild what the forward pass derives from them."""

    def set(self, name: str, values: Any) -> None:
        """Set the physical parameter ``name`` to ``values`` (its declared shape and
        units, see ``info.param(name)``); the following queries use it.

        Raises:
            ValueError: naming the device and the parameter - an unknown name, the wrong
                shape, NaN or Inf, or an element outside the declared range (with its
                index). Nothing changes then.
        """
        if self._closed:
            raise RuntimeError(f"device {self.info.name!r} is closed")
        value = self._specs().check(name, values).detach()
        with self._lock:
            self._param_values[name] = value.to(self.torch_device).clone()
            self._params_changed((name,))

    def get(self, name: str) -> torch.Tensor:
        """A copy of the current value of the parameter ``name`` (declared shape).

        Raises:
            ValueError: the device has no parameter ``name``.
        """
        self._specs().spec(name)
        return self._param_values[name].detach().clone()

    def params_state(self) -> dict[str, torch.Tensor]:
        """Every parameter's current value, on the CPU: what a checkpoint saves."""
        return {name: v.detach().to("cpu").clone()
                for name, v in getattr(self, "_param_values", {}).items()}

    def load_params_state(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`params_state`.

        Raises:
            ValueError: a missing or unknown name, or a bad value; nothing changes then.
        """
        values = self._specs().checked_state(state)
        with self._lock:
            for name, value in values.items():
                self._param_values[name] = value.detach().to(self.torch_device).clone()
            self._params_changed(tuple(values))

    def param_vjp(self, x: Any, grad_out: torch.Tensor,
                  names: tuple[str, ...] | None = None) -> dict[str, torch.Tensor]:
        """``grad_out @ d simulate(x) / d param`` for each parameter in ``names`` (all by
        default), at the current values: shapes ``x (B, n_in)``, ``grad_out (B, n_out)``
        -> ``{name: tensor of the parameter's shape}``.

        Raises:
            ValueError: bad input, or a name the device does not have.
        """
        names = tuple(self._specs().specs) if names is None else tuple(names)
        for name in names:
            self._specs().spec(name)
        if not names:
            return {}
        leaves = {name: self._param_values[name].detach().clone().requires_grad_(True)
                  for name in names}
        with torch.enable_grad():
            y = self.simulate(x, params=leaves)
            grads = torch.autograd.grad(y, list(leaves.values()), grad_out.to(y),
                                        allow_unused=True)
        return {name: torch.zeros_like(leaves[name]) if g is None else g.detach()
                for name, g in zip(names, grads, strict=True)}

    def to(self, torch_device: torch.device | str) -> Simulator:
        """Simulate on ``torch_device`` from now on; returns ``self`` (like
        :meth:`torch.nn.Module.to`).

        Every tensor the simulator holds as an attribute (its fixed physics: matrices,
        masks, speed maps, waveforms; also inside tuples, lists and dicts) moves there
        with its dtype kept, and :attr:`torch_device` is set. Callers keep their data
        where it is: :meth:`query` and :meth:`simulate` move inputs here and results
        back. Noise is drawn from the same host generator on every device, so a seed
        gives the same noise wherever the simulator runs.

        Args:
            torch_device: A :class:`torch.device` or a name: ``"cpu"``, ``"cuda"``,
                ``"cuda:1"``, ...

        Raises:
            ValueError: a name torch cannot parse, a device this machine does not have,
                one this simulator cannot run on, or a move torch cannot make (off
                ``"meta"``, which holds no data); nothing has moved then.

        Examples::

            >>> from phys.simulators.oscillators import Oscillators
            >>> plate = Oscillators(n_in=4, n_out=3, n_oscillators=8).to("meta")
            >>> plate.torch_device, plate.coupling_matrix.device
            (device(type='meta'), device(type='meta'))
        """
        device = as_torch_device(torch_device)
        with self._lock:
            self._check_device(device)
            try:  # every tensor first, then assign: a failure leaves the device as it was
                values = {key: moved(value, device) for key, value in vars(self).items()}
            except (NotImplementedError, TypeError) as err:  # e.g. off "meta": no data
                raise ValueError(f"cannot move {self.info.name!r} from {self.torch_device} "
                                 f"to {device}: {err}") from None
            vars(self).update(values)
            self.torch_device = device
            self._placed(device)
        return self

    def _check_device(self, device: torch.device) -> None:  # noqa: B027 - optional hook
        """Raise ``ValueError`` when the simulator cannot run on ``device`` (before any
        tensor moves)."""

    def _placed(self, device: torch.device) -> None:  # noqa: B027 - optional hook
        """Called by :meth:`to` once every tensor attribute is on ``device``: rebuild
        what holds tensors outside the attributes :meth:`to` walks."""

    def simulate(self, x: Any, params: Mapping[str, Any] | None = None) -> torch.Tensor:
        """Differentiable forward: like :meth:`query` but keeps the autograd graph.

        Input values are validated as in :meth:`query`; the batch is not split and
        :attr:`stats` is not updated (nothing is measured on hardware). As for
        :meth:`query`, the input moves to :attr:`torch_device` and the result back to
        the input's torch device (differentiably).

        Args:
            x: Inputs ``(B, n_in)`` or ``(n_in,)``.
            params: Values of some physical parameters for this pass only, by name
                (checked as by :meth:`set`; the current values are kept). Gradients flow
                into them: pass tensors with ``requires_grad=True`` to differentiate an
                objective with respect to the physics.
        """
        if self._closed:
            raise RuntimeError(f"device {self.info.name!r} is closed")
        x = x if isinstance(x, torch.Tensor) else torch.as_tensor(x)
        validate_batch(x, self.info)  # raises before any computation
        single = x.ndim == 1
        flat = x.reshape(-1, self.info.n_in).to(self.torch_device)
        if params is None:
            y = self._forward(flat).to(x.device)
        else:
            given = {name: value.to(self.torch_device)
                     for name, value in self._specs().checked(params).items()}
            with self._lock:  # one pass at a time sees the given values
                self._param_override = given
                try:
                    y = self._forward(flat).to(x.device)
                finally:
                    self._param_override = None
        return y[0] if single else y

    def vjp(self, x: torch.Tensor, grad_out: torch.Tensor) -> torch.Tensor:
        """``grad_out @ J(x)``: shapes ``x (B, n_in)``, ``grad_out (B, n_out)`` -> ``(B, n_in)``."""
        x = x if isinstance(x, torch.Tensor) else torch.as_tensor(x)
        x = x.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            y = self.simulate(x)
            (g,) = torch.autograd.grad(y, x, grad_out.to(y.dtype))
        return g
