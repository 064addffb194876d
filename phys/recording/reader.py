"""Reading a recording lazily: datasets stay on disk until sliced.

``phys.recording.open(path)`` returns a :class:`RecordingFile`; its ``devices`` hold
sliceable views of the datasets, cut to the committed rows.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from phys.device import DeviceInfo
from phys.recording import layout as L

__all__ = ["Column", "DeviceRecording", "RecordingFile", "Setting", "open_recording"]


class Column:
    """A dataset of a recording seen as its first ``len(self)`` rows; slicing reads
    only what it selects (``col[:]`` reads it all).

    Raises on slicing:
        IndexError: a row outside the column.
        ValueError: the file cannot be read there (damaged), naming it.
    """

    def __init__(self, ds: Any, rows: int, where: str) -> None:
        self._ds, self._rows, self._where = ds, rows, where

    @property
    def shape(self) -> tuple[int, ...]:
        return (self._rows, *self._ds.shape[1:])

    @property
    def dtype(self) -> np.dtype:
        return self._ds.dtype

    @property
    def ndim(self) -> int:
        return self._ds.ndim

    def __len__(self) -> int:
        return self._rows

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        a = self[:]
        return a if dtype is None else a.astype(dtype)

    def __iter__(self) -> Any:
        for i in range(self._rows):
            yield self[i]

    def __getitem__(self, key: Any) -> Any:
        if not isinstance(key, tuple):
            return self._rows_of(key)
        if not key:
            return self._rows_of(slice(None))
        out, rest = self._rows_of(key[0]), key[1:]
        return out[rest] if isinstance(key[0], (int, np.integer)) else out[(slice(None), *rest)]

    def _rows_of(self, key: Any) -> Any:
        n = self._rows
        if isinstance(key, slice):
            start, stop, step = key.indices(n)
            if step > 0:
                return self._read(slice(start, max(start, stop)))[::step]
            return self._read(slice(0, n))[key]
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            i = int(key) + n if key < 0 else int(key)
            if not 0 <= i < n:
                raise IndexError(f"{self._where}: row {int(key)} is outside 0 .. {n - 1}")
            return self._read(i)
        idx = np.asarray(key)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        idx = np.where(idx < 0, idx + n, idx).astype(np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise IndexError(f"{self._where}: rows must lie in 0 .. {n - 1}")
        uniq, back = np.unique(idx, return_inverse=True)
        return self._read(uniq)[back.reshape(idx.shape)] if uniq.size else \
            np.empty((0, *self._ds.shape[1:]), self._ds.dtype)

    def _read(self, sel: Any) -> Any:
        try:
            return self._ds[sel]
        except OSError as err:
            raise ValueError(f"{self._where}: cannot be read, the file is damaged "
                             f"({err})") from None

    def __repr__(self) -> str:
        return f"<Column {self._where} shape={self.shape} dtype={self.dtype}>"


@dataclass(frozen=True)
class Setting:
    """A setting change: setting ``name`` became ``values`` from recording row ``row``."""

    row: int
    name: str
    values: tuple[float, ...]


class DeviceRecording:
    """What a recording holds of one device: ``info`` and the columns ``inputs``,
    ``outputs``, ``query``, ``time``, ``phase`` (see :mod:`phys.recording.layout`),
    ``len()`` rows, and the ``settings`` changes in order."""

    def __init__(self, group: Any, k: int, path: Path) -> None:
        self.index = k
        self.info: DeviceInfo
        self.info, rows, n_settings = L.read_device(group, k, path)
        where = f"recording {path}, device {k}"
        for name in L.COLUMNS:
            setattr(self, name, Column(group[name], rows, f"{where} {name}"))
        self._rows = rows
        self.settings = [_setting(s, where) for s in group["settings"][:n_settings]]
        if rows:  # the last committed row must be readable: a cut-off file shows here
            for name in L.COLUMNS:
                getattr(self, name)[rows - 1]

    inputs: Column
    outputs: Column
    query: Column
    time: Column
    phase: Column

    def __len__(self) -> int:
        return self._rows

    def __repr__(self) -> str:
        return f"<DeviceRecording {self.index} {self.info.name!r} rows={self._rows}>"


def _setting(raw: Any, where: str) -> Setting:
    try:
        d = json.loads(raw)
        return Setting(int(d["row"]), str(d["name"]), tuple(float(v) for v in d["values"]))
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{where}: a bad settings record {raw!r} ({err})") from None


class RecordingFile:
    """A recording open for reading; see :func:`open_recording`."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._h5 = L.open_h5(self.path, "r")
        try:
            self.devices = [DeviceRecording(g, k, self.path)
                            for k, g in enumerate(L.device_groups(self._h5, self.path))]
        except BaseException:
            self._h5.close()
            raise

    def close(self) -> None:
        """Close the file; the columns cannot be read after it."""
        self._h5.close()

    def __enter__(self) -> RecordingFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        rows = [len(d) for d in self.devices]
        return f"<RecordingFile {str(self.path)!r} rows={rows}>"


def open_recording(path: str | os.PathLike[str]) -> RecordingFile:
    """Open the recording at ``path`` for reading, lazily (``phys.recording.open``).

    Raises:
        FileNotFoundError: no file at ``path``.
        RuntimeError: another process has it open for writing (a run still recording).
        ValueError: naming the file - not HDF5, damaged or truncated, not a physnn
            recording, or a device whose datasets disagree (naming it and the lengths).
    """
    return RecordingFile(path)
