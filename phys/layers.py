"""PhysicalLayer: a fixed physical system followed by a small trainable digital map."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from phys.device import Device
from phys.nn.device_layer import DeviceLayer
from phys.nn.functional import rms_normalize, seeded_linear
from phys.nn.physics_aware import Twin

__all__ = ["PhysicalLayer", "check_chain", "rms_normalize", "seeded_linear"]

_ACTIVATIONS = {"relu": torch.relu, "abs": torch.abs}

#: Buffers that checkpoints written before :class:`~phys.nn.DeviceLayer` held directly.
_MOVED_TO_PHYSICS = ("projection", "in_min", "in_max")


def check_chain(layers: Sequence[nn.Module], network: str) -> None:
    """``ValueError`` unless there is a layer, each has int ``in_features`` and
    ``out_features``, and each takes the previous one's output."""
    if not layers:
        raise ValueError(f"a {network} needs at least one layer")
    for i, layer in enumerate(layers):
        sizes = [getattr(layer, key, None) for key in ("in_features", "out_features")]
        if not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in sizes):
            raise ValueError(f"layer {i} ({type(layer).__name__}) of a {network} needs "
                             f"positive int attributes in_features and out_features")
    for i in range(1, len(layers)):
        if layers[i].in_features != layers[i - 1].out_features:
            raise ValueError(
                f"layer {i} takes {layers[i].in_features} inputs but layer {i - 1} "
                f"gives {layers[i - 1].out_features}"
            )


def _load_moved_buffers(module: nn.Module, state_dict: dict[str, Any], prefix: str,
                        *args: Any) -> None:
    """Read checkpoints that held the fixed physics at ``prefix`` (``layers.0.in_min``)
    rather than in the :class:`~phys.nn.DeviceLayer` (``layers.0.physics.in_min``)."""
    for name in _MOVED_TO_PHYSICS:
        if prefix + name in state_dict:
            state_dict[f"{prefix}physics.{name}"] = state_dict.pop(prefix + name)


class PhysicalLayer(nn.Module):
    """One layer of a physical network: physics, skip, linear, nonlinearity.

    A :class:`~phys.nn.DeviceLayer` maps ``x`` into the device's range and measures it
    (``m``); the measurement is concatenated with ``x`` (skip connection) and mapped by
    the only trainable part, a linear layer::

        m = physics(x)                            # DeviceLayer; no gradient with grad="none"
        y = act(Linear([rms_normalize(m), rms_normalize(x)]))

    With ``skip=False`` the linear layer reads the measurement alone,
    ``y = act(Linear(rms_normalize(m)))``: a physics-dominant layer, where everything the
    network knows of its input has passed through the physics.

    Args:
        device: The physical system; any :class:`~phys.Device`.
        in_features: Size of each input vector ``x``.
        out_features: Size of each output vector ``y``.
        activation: ``"relu"`` or ``"abs"``.
        gain: Slope of the tanh that maps normalised inputs into the device range.
        seed: Seeds the fixed projection and the initial digital weights.
        grad: Gradient route of the physics (see :class:`~phys.nn.DeviceLayer`).
        twin: Digital twin for ``grad="twin"``.
        skip: Concatenate the input to the measurement (the skip connection).

    Shape:
        - Input: ``(B, in_features)``, any real values.
        - Output: ``(B, out_features)``, non-negative.

    Examples::

        >>> import phys, torch
        >>> layer = phys.PhysicalLayer(phys.open("cavity", n_in=8, n_out=16), 8, 32)
        >>> layer(torch.randn(4, 8)).shape
        torch.Size([4, 32])
    """

    def __init__(
        self,
        device: Device,
        in_features: int,
        out_features: int,
        *,
        activation: str = "relu",
        gain: float = 1.0,
        seed: int = 0,
        grad: str = "none",
        twin: Twin | None = None,
        skip: bool = True,
    ) -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}"
            )
        gen = torch.Generator().manual_seed(seed)
        self.physics = DeviceLayer(device, in_features, grad=grad, twin=twin, gain=gain,
                                   seed=gen)
        self.in_features, self.out_features, self.activation = (
            in_features, out_features, activation)
        self.has_skip = bool(skip)
        self.linear = seeded_linear(device.info.n_out + in_features * self.has_skip,
                                    out_features, gen)
        self.register_load_state_dict_pre_hook(_load_moved_buffers)

    @property
    def device(self) -> Device:
        """The physical system (held by :attr:`physics`)."""
        return self.physics.device

    def measure(self, x: torch.Tensor) -> torch.Tensor:
        """Query the physics for inputs ``(B, in_features)``; returns ``(B, n_out)``."""
        return self.physics.measure(x)

    def skip(self, x: torch.Tensor) -> torch.Tensor:
        """The skip path's share of the linear map, ``W_x @ rms_normalize(x)``:
        ``(B, in_features) -> (B, out_features)``, without the bias (zeros without a
        skip connection)."""
        if not self.has_skip:
            return x.new_zeros(x.shape[0], self.out_features)
        return rms_normalize(x) @ self.skip_weight.T

    @property
    def skip_weight(self) -> torch.Tensor:
        """The columns of the linear map that act on the skip input: ``(out, in)``
        (``(out, 0)`` without a skip connection)."""
        return self.linear.weight[:, self.physics.out_features:]

    def digital(self, measured: torch.Tensor, x: torch.Tensor | None, *,
                skip: torch.Tensor | None = None) -> torch.Tensor:
        """Trainable part on a measurement ``(B, n_out)`` and the layer input ``(B, in)``.

        ``skip``, when given, replaces ``self.skip(x)`` (and ``x`` may be ``None``): callers
        whose rows share most of their inputs compute it more cheaply.
        """
        if skip is None:
            if x is None:
                raise ValueError("digital() needs the layer input x or its skip term")
            skip = self.skip(x)
        n_out = self.physics.out_features
        z = rms_normalize(measured) @ self.linear.weight[:, :n_out].T + skip + self.linear.bias
        return _ACTIVATIONS[self.activation](z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.digital(self.physics(x), x)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"activation={self.activation!r}" + ("" if self.has_skip else ", skip=False"))
