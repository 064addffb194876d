"""Base class for numerical simulators: a :class:`~phys.Device` that is also differentiable."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import torch

from phys.device import SIZES, Device, DeviceInfo, as_torch_device, validate_batch

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
    """

    sizes = SIZES

    @abstractmethod
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """Differentiable forward map on a validated batch."""

    def _query(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward(x)

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

    def simulate(self, x: Any) -> torch.Tensor:
        """Differentiable forward: like :meth:`query` but keeps the autograd graph.

        Input values are validated as in :meth:`query`; the batch is not split and
        :attr:`stats` is not updated (nothing is measured on hardware). As for
        :meth:`query`, the input moves to :attr:`torch_device` and the result back to
        the input's torch device (differentiably).
        """
        if self._closed:
            raise RuntimeError(f"device {self.info.name!r} is closed")
        x = x if isinstance(x, torch.Tensor) else torch.as_tensor(x)
        validate_batch(x, self.info)  # raises before any computation
        single = x.ndim == 1
        y = self._forward(x.reshape(-1, self.info.n_in).to(self.torch_device)).to(x.device)
        return y[0] if single else y

    def vjp(self, x: torch.Tensor, grad_out: torch.Tensor) -> torch.Tensor:
        """``grad_out @ J(x)``: shapes ``x (B, n_in)``, ``grad_out (B, n_out)`` -> ``(B, n_in)``."""
        x = x if isinstance(x, torch.Tensor) else torch.as_tensor(x)
        x = x.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            y = self.simulate(x)
            (g,) = torch.autograd.grad(y, x, grad_out.to(y.dtype))
        return g
