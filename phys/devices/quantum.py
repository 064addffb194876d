"""A fixed random quantum circuit on a PennyLane device, used as a query-only physical system.

Open it by address: ``phys.open("pennylane:default.qubit", wires=6, layers=3, seed=0)``;
any installed PennyLane device name works after the colon, hardware plugins included.
Each input vector is angle-embedded (``RX(x_w)`` on wire ``w``), then ``layers``
strongly-entangling layers with fixed random angles (drawn from ``seed``) act, and the
measurement is ``<Z>`` on every wire: exact with ``shots=None``, otherwise estimated
from ``shots`` samples (then the device is stochastic). The circuit is never
differentiated: trainers treat it like any other measured system.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from phys.device import Device, DeviceInfo

__all__ = ["PennyLaneCircuit", "open_pennylane"]

SCHEME = "pennylane"
#: Largest broadcast batch sent to a simulator is capped so its states take about this much.
_BATCH_BYTES = 1 << 28


def _check_count(key: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"pennylane device: {key} must be an int >= {minimum}, got {value!r}")


class PennyLaneCircuit(Device):
    """A fixed random circuit on a PennyLane device, queried without gradients.

    Args:
        name: PennyLane device name, e.g. ``"default.qubit"`` or a plugin's device.
        wires: Qubits; also the input and output size.
        layers: Strongly-entangling layers with fixed random angles.
        seed: Seeds the circuit's angles and the device's sampling (when it takes a seed).
        shots: Samples per expectation value; ``None`` gives exact expectations.
        max_batch: Largest batch sent at once; by default as many circuits as fit in about
            256 MiB of state vectors, at most 1024.
        device_options: More keyword options of the PennyLane device.

    Shape:
        - Input: ``(B, wires)`` rotation angles in ``[-pi, pi]``.
        - Output: ``(B, wires)`` expectations ``<Z_w>`` in ``[-1, 1]``.

    Examples::

        >>> import phys, torch
        >>> with phys.open("pennylane:default.qubit", wires=3, layers=2) as dev:
        ...     y = dev.query(torch.zeros(4, 3))
        >>> tuple(y.shape)
        (4, 3)
    """

    def __init__(self, name: str = "default.qubit", wires: int = 6, layers: int = 3, *,
                 seed: int = 0, shots: int | None = None, max_batch: int | None = None,
                 device_options: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        _check_count("wires", wires, 1)
        _check_count("layers", layers, 1)
        _check_count("seed", seed, 0)
        if shots is not None:
            _check_count("shots", shots, 1)
        if max_batch is None:
            max_batch = int(min(1024, max(1, _BATCH_BYTES // (16 * 2 ** min(wires, 60)))))
        _check_count("max_batch", max_batch, 1)

        import pennylane as qml

        from phys.quantum.circuits import pennylane_circuit, pennylane_device

        self._device = pennylane_device(name, wires, seed=seed, options=device_options,
                                        batch=max_batch)
        gen = torch.Generator().manual_seed(seed)
        #: Fixed ``Rot`` angles ``(layers, wires, 3)`` of the circuit.
        self.weights = torch.rand(layers, wires, 3, generator=gen, dtype=torch.float64) \
            * (2 * math.pi)
        self._qnode = qml.QNode(pennylane_circuit(wires), self._device, interface="torch",
                                diff_method=None, shots=shots)
        self.info = DeviceInfo(
            name=f"{SCHEME}:{name}", n_in=wires, n_out=wires, in_min=-math.pi, in_max=math.pi,
            max_batch=max_batch, differentiable=False, stochastic=shots is not None,
            extra={"pennylane_device": name, "wires": wires, "layers": layers, "seed": seed,
                   "shots": shots, "pennylane_version": qml.__version__,
                   "units": "input: RX angle in radians; output: <Z> per wire"},
        )

    def _query(self, x: torch.Tensor) -> torch.Tensor:
        out = self._qnode(x.to(torch.float64), self.weights)
        return torch.stack([torch.as_tensor(o).reshape(-1) for o in out], dim=-1) \
            .reshape(x.shape[0], self.info.n_out)


def open_pennylane(spec: str, *, wires: int = 6, layers: int = 3, seed: int = 0,
                   shots: int | None = None, max_batch: int | None = None,
                   device_options: Mapping[str, Any] | None = None) -> PennyLaneCircuit:
    """Opener of ``"pennylane:<device name>"`` addresses for :func:`phys.open`."""
    scheme, _, name = spec.partition(":")
    if scheme != SCHEME or not name:
        raise ValueError(f"expected 'pennylane:<PennyLane device name>', e.g. "
                         f"'pennylane:default.qubit', got {spec!r}")
    return PennyLaneCircuit(name, wires, layers, seed=seed, shots=shots, max_batch=max_batch,
                            device_options=device_options)
