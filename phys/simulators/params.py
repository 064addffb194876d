"""Physical parameters of a simulator as data: declared, checked, stored, set and read.

A simulator's knobs (a cavity's scatterer phases, an SLM's phase mask, a plate's mode
frequencies, the permittivity of a design region) are declared once as
:class:`~phys.ParamSpec` entries of ``info.params`` with their default values, the
fixed random physics drawn from the seed. The simulator keeps the current values
(tensors of the declared shapes, moved with it by ``Simulator.to``); :class:`ParamSpecs`
checks every new value (shape, NaN or Inf, range; ``ValueError`` naming the device, the
parameter and the element) and every saved state a checkpoint brings back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from phys.device import ParamSpec

__all__ = ["ParamSpecs", "check_value"]


def _where(index: torch.Tensor) -> str:
    return "[" + ", ".join(str(int(i)) for i in index) + "]"


def check_value(device: str, spec: ParamSpec, values: Any, dtype: torch.dtype,
                ) -> torch.Tensor:
    """``values`` as a tensor of ``spec.shape`` and ``dtype``, checked.

    A scalar is refused unless the shape has one element; any array-like of
    ``prod(shape)`` elements in that shape (or flat, as a serial SET carries it) is taken.
    Gradients are kept (the result is a differentiable function of ``values``).

    Raises:
        ValueError: naming ``device`` and the parameter - not numbers, complex, the
            wrong number of elements, NaN or Inf, or a value outside
            ``spec.min .. spec.max`` (with the element's index).
    """
    where = f"device {device!r} parameter {spec.name!r}"
    if not isinstance(values, torch.Tensor):
        try:
            values = torch.as_tensor(values, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError):
            raise ValueError(f"{where} takes real numbers of shape {spec.shape}, got "
                             f"{values!r}") from None
    if values.is_complex() or values.dtype == torch.bool:
        raise ValueError(f"{where} takes real numbers, got dtype {values.dtype}")
    numel = 1
    for n in spec.shape:
        numel *= n
    if values.numel() != numel or (values.ndim > 1 and tuple(values.shape) != spec.shape):
        raise ValueError(f"{where} takes shape {spec.shape} ({numel} values), got shape "
                         f"{tuple(values.shape)}")
    v = values.to(dtype).reshape(spec.shape)
    flat = v.detach()
    bad = ~torch.isfinite(flat)
    if bad.any():
        index = bad.nonzero()[0]
        raise ValueError(f"{where} has {float(flat[tuple(index)])!r} at {_where(index)}")
    outside = (flat < spec.min) | (flat > spec.max)
    if outside.any():
        index = outside.nonzero()[0]
        raise ValueError(f"{where} has {float(flat[tuple(index)])!r} at {_where(index)}, "
                         f"outside [{spec.min}, {spec.max}] {spec.units}".rstrip())
    return v


class ParamSpecs:
    """The declared parameters of one simulator and the checks of their values.

    The values themselves live in the simulator (a dict attribute, so that
    ``Simulator.to`` moves them with the rest of its tensors).

    Args:
        device: The device name, for messages.
        specs: The declared parameters, in order.
        dtype: Storage dtype of the values.
    """

    def __init__(self, device: str, specs: tuple[ParamSpec, ...], dtype: torch.dtype) -> None:
        self.device, self.dtype = device, dtype
        self.specs = {spec.name: spec for spec in specs}

    def spec(self, name: str) -> ParamSpec:
        """The spec of ``name``; ``ValueError`` listing the known names otherwise."""
        if not isinstance(name, str) or name not in self.specs:
            have = ", ".join(self.specs) or "none"
            raise ValueError(f"device {self.device!r} has no parameter {name!r}; it has {have}")
        return self.specs[name]

    def check(self, name: str, values: Any) -> torch.Tensor:
        """``values`` checked for ``name``, in the storage dtype (gradients kept)."""
        return check_value(self.device, self.spec(name), values, self.dtype)

    def checked(self, params: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Every entry of ``params`` checked (names first, so nothing half-applies)."""
        if not isinstance(params, Mapping):
            raise ValueError(f"params for {self.device!r} must be a mapping of parameter "
                             f"names to values, got {type(params).__name__}")
        for name in params:
            self.spec(name)
        return {name: self.check(name, value) for name, value in params.items()}

    def checked_state(self, state: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """A saved parameter state checked: every declared name, nothing else."""
        if not isinstance(state, Mapping):
            raise ValueError(f"parameter state for {self.device!r} must be a mapping, got "
                             f"{type(state).__name__}")
        missing = sorted(set(self.specs) - set(state))
        extra = sorted(set(state) - set(self.specs))
        if missing or extra:
            raise ValueError(f"parameter state for {self.device!r} does not match its "
                             f"parameters: missing {missing or 'none'}, unknown "
                             f"{extra or 'none'}")
        return self.checked(state)
