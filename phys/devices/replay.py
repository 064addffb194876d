"""``replay:PATH``: a device that answers exactly what a recording holds, for tests and audits."""

from __future__ import annotations

import numpy as np
import torch

from phys.device import Device, DeviceInfo
from phys.devices.recorded_io import Recording, check_options, finite_range, read_recording

__all__ = ["ReplayDevice", "open_replay"]

_MAX_BATCH = 1 << 16


class ReplayDevice(Device):
    """Answers each recorded input with its recorded output, bit for bit; refuses any
    other input.

    Rows match by their exact float32 bytes, in any order and any number of times. The
    input range is the recorded one unless given.

    Args:
        recording: The checked recorded pairs.
        in_min: Smallest accepted input (default: the smallest recorded one).
        in_max: Largest accepted input (default: the largest recorded one).

    Raises:
        ValueError: one input recorded twice with different outputs (naming both rows).
    """

    def __init__(self, recording: Recording, *, in_min: float | None = None,
                 in_max: float | None = None) -> None:
        super().__init__()
        if len(recording) == 0:
            raise ValueError(f"recording {recording.source!r} has no rows to replay")
        self._source = recording.source
        self._outputs = torch.from_numpy(recording.outputs.copy())
        self._index = _row_index(recording)
        lo, hi = finite_range(recording.inputs)
        extra = {"recording": recording.source, "rows": len(recording),
                 "dropped": recording.dropped}
        self.info = DeviceInfo(
            name=f"replay:{recording.source}", n_in=recording.inputs.shape[1],
            n_out=recording.outputs.shape[1], in_min=lo if in_min is None else in_min,
            in_max=hi if in_max is None else in_max, max_batch=_MAX_BATCH, extra=extra)

    def _query(self, x: torch.Tensor) -> torch.Tensor:
        rows = np.ascontiguousarray(x.cpu().numpy(), dtype=np.float32)
        found = []
        for r, row in enumerate(rows):
            i = self._index.get(row.tobytes())
            if i is None:
                values = ", ".join(f"{v:.9g}" for v in row[:8])
                more = ", ..." if len(row) > 8 else ""
                raise ValueError(f"input row {r} of the batch, [{values}{more}], is not in "
                                 f"the recording {self._source!r}")
            found.append(i)
        return self._outputs[found]


def _row_index(recording: Recording) -> dict[bytes, int]:
    """Input row bytes -> the first row recorded with them."""
    index: dict[bytes, int] = {}
    x, y = recording.inputs, recording.outputs
    for i, row in enumerate(x):
        j = index.setdefault(row.tobytes(), i)
        if j != i and not np.array_equal(y[i].view(np.uint32), y[j].view(np.uint32)):
            raise ValueError(f"recording {recording.source!r}: one input recorded with "
                             f"different outputs, at {recording.rows[j]} and "
                             f"{recording.rows[i]}; replay needs one answer per input")
    return index


def open_replay(address: str, *, device: int = 0, in_min: float | None = None,
                in_max: float | None = None) -> ReplayDevice:
    """Open ``replay:PATH`` (see :mod:`phys.devices.recorded_io` for what PATH names).

    Args:
        address: ``"replay:PATH"``.
        device: Which device of an HDF5 recording.
        in_min: Smallest accepted input (default: the smallest recorded one).
        in_max: Largest accepted input (default: the largest recorded one).
    """
    path = _path_of(address, "replay")
    check_options(device, in_min, in_max)
    return ReplayDevice(read_recording(path, device),
                        in_min=in_min, in_max=in_max)


def _path_of(address: str, scheme: str) -> str:
    path = address.removeprefix(f"{scheme}:")
    if not path:
        raise ValueError(f"{scheme}: needs a recording, e.g. {scheme}:x_data.csv,y_data.csv "
                         f"or {scheme}:measurements.h5")
    return path
