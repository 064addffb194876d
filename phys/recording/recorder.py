"""A device that records every query it forwards: :class:`RecordingDevice`."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import torch

from phys.device import Device, DeviceStats
from phys.recording import layout as L
from phys.recording.writer import Recording

__all__ = ["RecordingDevice"]


class RecordingDevice(Device):
    """Measures through ``device`` and writes each batch (inputs as float32, outputs,
    a running query id, time, phase) to device ``k`` of ``recording``.

    It is the wrapped device as far as a caller can tell: the same ``info``, the same
    ``stats`` object, the same answers; ``to``, ``reopen``, ``vjp`` and ``set`` (also
    recorded) go to it, and so does any other attribute. Each :meth:`query` call is one
    query id, so the rows of a batch share it; a call that fails records nothing.

    Args:
        device: The device to measure through; closing this closes it.
        recording: Where to write (:class:`phys.recording.Recording`).
        k: The device's index in ``recording``; by default it is added now. An existing
            index (a resumed run) must hold the same info, and query ids continue after
            its last one.
        phase_of: Called at each query for the phase (``"train"``, ``"eval"``,
            ``"other"``); by default the :attr:`phase` set last (``"train"``).

    Examples::

        >>> import phys, torch, tempfile, os
        >>> from phys.recording import Recording, RecordingDevice
        >>> rec = Recording.create(os.path.join(tempfile.mkdtemp(), "m.h5"))
        >>> dev = RecordingDevice(phys.open("cavity", n_in=4, n_out=3), rec)
        >>> dev.phase = "eval"
        >>> y = dev.query(torch.rand(5, 4))
        >>> rec.rows(0), dev.stats.samples
        (5, 5)
        >>> rec.close()
    """

    def __init__(self, device: Device, recording: Recording, k: int | None = None, *,
                 phase_of: Callable[[], str | int] | None = None) -> None:
        if not isinstance(device, Device):
            raise ValueError(f"can only record a phys.Device, got {type(device).__name__}")
        if not isinstance(recording, Recording):
            raise ValueError(f"recording must be a phys.recording.Recording, got "
                             f"{type(recording).__name__}")
        super().__init__()
        if k is None:
            k = recording.add_device(device.info)
        elif json.loads(L.info_json(recording.devices[_index(recording, k)])) != \
                json.loads(L.info_json(device.info)):
            raise ValueError(f"recording {recording.path}: device {k} was recorded as "
                             f"{recording.devices[k].name!r} with other info than "
                             f"{device.info.name!r} has now")
        self.device, self.recording, self.k = device, recording, int(k)
        self.info = device.info
        self.torch_device = device.torch_device
        self.phase_of = phase_of
        self._phase = "train"
        self._next = recording.next_query(self.k)
        self._record_lock = threading.Lock()

    def continue_after_last_row(self) -> None:
        """Number the next query after the last one the recording holds now (after the
        recording was cut back with :meth:`~phys.recording.Recording.truncate`)."""
        self._next = self.recording.next_query(self.k)

    # -- what is recorded -------------------------------------------------------------
    @property
    def phase(self) -> str:
        """The phase recorded with each query: ``"train"``, ``"eval"`` or ``"other"``
        (setting it replaces ``phase_of``)."""
        if self.phase_of is None:
            return self._phase
        value = self.phase_of()
        L.phase_code(value)
        return value if isinstance(value, str) else list(L.PHASES)[int(value)]

    @phase.setter
    def phase(self, value: str) -> None:
        L.phase_code(value)
        self._phase = value if isinstance(value, str) else list(L.PHASES)[int(value)]
        self.phase_of = None

    @property
    def stats(self) -> DeviceStats:  # type: ignore[override]
        """The wrapped device's counters (a row is recorded per sample it counts)."""
        return self.device.stats

    @stats.setter
    def stats(self, value: DeviceStats) -> None:
        pass  # Device.__init__ assigns one; the wrapped device's are the ones kept

    def query(self, x: Any) -> torch.Tensor:
        """Measure ``x`` through the wrapped device and record the batch; see
        :meth:`phys.Device.query`."""
        if self._closed:
            raise RuntimeError(f"device {self.info.name!r} is closed")
        phase = self.phase
        y = self.device.query(x)
        xs = torch.as_tensor(x).detach().reshape(-1, self.info.n_in)
        if xs.shape[0]:
            with self._record_lock:
                query, self._next = self._next, self._next + 1
                self.recording.write(self.k, xs.to("cpu", torch.float32),
                                     y.detach().reshape(-1, self.info.n_out).cpu(),
                                     query=query, phase=phase, time=time.time(), check=False)
        return y

    def set(self, name: str, values: Any) -> None:
        """Change a setting of the wrapped device and record the change."""
        setter = getattr(self.device, "set", None)
        if setter is None:
            raise ValueError(f"device {self.info.name!r} has no settings to set")
        setter(name, values)
        self.recording.write_setting(self.k, name, values)

    # -- forwarded --------------------------------------------------------------------
    def _query(self, x: torch.Tensor) -> torch.Tensor:
        return self.device.query(x)

    def to(self, torch_device: torch.device | str) -> RecordingDevice:
        """Move the wrapped device (see :meth:`phys.Device.to`); returns ``self``."""
        self.device.to(torch_device)
        self.torch_device = self.device.torch_device
        return self

    def reopen(self) -> None:
        self.device.reopen()

    def vjp(self, x: torch.Tensor, grad_out: torch.Tensor) -> torch.Tensor:
        return self.device.vjp(x, grad_out)

    def _lab_cost(self, n_samples: int) -> tuple[float | None, float | None]:
        return self.device._lab_cost(n_samples)

    def _close(self) -> None:
        self.device.close()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("device", "recording"):
            raise AttributeError(name)
        return getattr(self.device, name)


def _index(recording: Recording, k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < len(recording.devices):
        raise ValueError(f"recording {recording.path} has no device {k!r}; it has "
                         f"{len(recording.devices)}")
    return k
