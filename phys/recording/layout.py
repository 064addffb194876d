"""The layout of ``measurements.h5``, shared by the writer and the reader.

Root attributes ``format="physnn-recording"`` and ``version=1``; one group
``/devices/<k>`` per device (``k = 0, 1, ...`` in the order added) with:

* attribute ``info``: JSON of :meth:`phys.DeviceInfo.as_dict`;
* attributes ``rows`` and ``n_settings``: how many rows and setting changes are
  committed (a writer killed while flushing leaves longer datasets; the counts rule);
* datasets ``inputs (N, n_in) float32``, ``outputs (N, n_out) float32``,
  ``query (N,) int64`` (one id per :meth:`phys.Device.query` call: rows of one batch
  share it), ``time (N,) float64`` (seconds since the epoch), ``phase (N,) uint8``
  (0 training, 1 evaluation, 2 other, e.g. twin fitting);
* dataset ``settings (S,)`` of JSON strings ``{"row", "name", "values"}``: a setting
  change that applies from recording row ``row`` on.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from phys.device import DeviceInfo

FORMAT = "physnn-recording"
VERSION = 1

#: Phase names and their codes in the ``phase`` dataset.
PHASES = {"train": 0, "eval": 1, "other": 2}

#: Per-row datasets: name -> (dtype, has a width).
COLUMNS: dict[str, tuple[Any, bool]] = {
    "inputs": (np.float32, True),
    "outputs": (np.float32, True),
    "query": (np.int64, False),
    "time": (np.float64, False),
    "phase": (np.uint8, False),
}


def width(info: DeviceInfo, name: str) -> int | None:
    """Row width of dataset ``name`` for a device with ``info`` (``None``: 1-D)."""
    return {"inputs": info.n_in, "outputs": info.n_out}.get(name)


def chunk_rows(row_width: int | None) -> int:
    """Rows per chunk: about 256 KiB for 2-D datasets, 16384 rows for 1-D ones."""
    if row_width is None:
        return 16384
    return int(min(16384, max(64, 2**18 // (4 * row_width))))


def phase_code(phase: str | int) -> int:
    """The code of ``phase`` (a name of :data:`PHASES` or its code).

    Raises:
        ValueError: an unknown phase.
    """
    if isinstance(phase, str) and phase in PHASES:
        return PHASES[phase]
    if isinstance(phase, (int, np.integer)) and not isinstance(phase, bool) \
            and int(phase) in PHASES.values():
        return int(phase)
    raise ValueError(f"phase must be one of {', '.join(PHASES)} (or 0, 1, 2), got {phase!r}")


def info_json(info: DeviceInfo) -> str:
    """``info`` as the JSON the ``info`` attribute holds.

    Raises:
        ValueError: ``info.extra`` holds something JSON cannot write.
    """
    try:
        return json.dumps(info.as_dict(), sort_keys=True)
    except (TypeError, ValueError) as err:
        raise ValueError(f"device {info.name!r}: its info cannot be recorded as JSON "
                         f"({err})") from None


def open_h5(path: Any, mode: str, **kwargs: Any) -> Any:
    """Open the recording at ``path`` with h5py and check its root attributes.

    Raises:
        FileNotFoundError: there is no file at ``path``.
        RuntimeError: another process has the file open for writing.
        ValueError: naming the file - not HDF5, damaged or truncated, or not a physnn
            recording of a version this code reads.
    """
    import os

    import h5py

    if not os.path.exists(path):
        raise FileNotFoundError(f"recording {path}: no such file")
    if not h5py.is_hdf5(path):
        raise ValueError(f"recording {path} is not an HDF5 file")
    try:
        f = h5py.File(path, mode, **kwargs)
    except OSError as err:
        if "unable to lock file" in str(err):
            raise RuntimeError(f"recording {path} is open for writing in another process (a "
                               f"run still recording?); it opens once that one closes it") \
                from None
        raise ValueError(f"recording {path} is damaged or truncated: {err}") from None
    try:
        fmt, version = f.attrs.get("format"), f.attrs.get("version")
        if isinstance(fmt, bytes):
            fmt = fmt.decode(errors="replace")
        if isinstance(version, np.generic):
            version = version.item()
        if fmt != FORMAT:
            raise ValueError(f"recording {path} is not a physnn recording (format "
                             f"{fmt!r}, expected {FORMAT!r})")
        if version != VERSION:
            raise ValueError(f"recording {path} has version {version!r}; this physnn reads "
                             f"version {VERSION}")
        if "devices" not in f:
            raise ValueError(f"recording {path} has no /devices group")
    except BaseException:
        f.close()
        raise
    return f


def device_groups(f: Any, path: Any) -> list[Any]:
    """The groups ``/devices/0, 1, ...`` of an open recording, in order.

    Raises:
        ValueError: a group whose name is not the next index.
    """
    names = sorted(f["devices"], key=lambda n: (len(n), n))
    for k, name in enumerate(names):
        if name != str(k):
            raise ValueError(f"recording {path}: /devices holds {name!r} where device {k} "
                             f"was expected")
    return [f["devices"][name] for name in names]


def read_device(group: Any, k: int, path: Any) -> tuple[DeviceInfo, int, int]:
    """``(info, rows, n_settings)`` of device group ``k``, checked against its datasets.

    Raises:
        ValueError: naming the file and device - bad ``info``, a missing dataset, a
            dataset of the wrong width, or datasets shorter than the committed rows.
    """
    where = f"recording {path}, device {k}"
    try:
        info = DeviceInfo.from_dict(json.loads(group.attrs["info"]))
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{where}: bad or missing info attribute ({err})") from None
    rows, n_settings = int(group.attrs.get("rows", -1)), int(group.attrs.get("n_settings", -1))
    if rows < 0 or n_settings < 0:
        raise ValueError(f"{where}: missing rows or n_settings attribute")
    lengths = {}
    for name in [*COLUMNS, "settings"]:
        if name not in group:
            raise ValueError(f"{where}: no dataset {name!r}")
        ds, w = group[name], width(info, name)
        if w is not None and (ds.ndim != 2 or ds.shape[1] != w):
            raise ValueError(f"{where}: dataset {name!r} has shape {ds.shape}, expected "
                             f"(N, {w}) for the device's info")
        lengths[name] = ds.shape[0]
    short = {n: m for n, m in lengths.items() if m < (n_settings if n == "settings" else rows)}
    if short:
        have = ", ".join(f"{n} {m}" for n, m in lengths.items())
        raise ValueError(f"{where}: datasets of inconsistent lengths ({have}); {rows} rows and "
                         f"{n_settings} settings are committed")
    return info, rows, n_settings
