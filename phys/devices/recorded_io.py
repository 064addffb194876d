"""Reading recorded measurements: pairs of published files or a run's HDF5 recording.

A recording is named by a path:

- ``X.csv,Y.csv`` or ``X.npy,Y.npy``: inputs and outputs, row ``i`` of ``Y`` measured for
  row ``i`` of ``X``. A CSV holds comma-separated numbers, one row a line; a first line
  that is not numbers (a header), or that is all zeros in both files (the header row of
  the published acoustic recordings), is skipped. A ``.npy`` holds a 2-D array.
- ``DIR``: a folder holding ``x_data.csv`` and ``y_data.csv`` (or ``x_data.npy`` and
  ``y_data.npy``), or a run directory holding ``measurements.h5``.
- ``FILE.h5``: a run's recording (:mod:`phys.recording`), one device of it (device ``k``
  is layer ``k`` of the run that recorded it).
- A bare name of a published file set: ``phyll_acoustic``
  (:func:`phys.data.acoustic_recordings`).

Rows with NaN or Inf are dropped, counted and reported with a warning; rows of the wrong
width, files of different lengths or a missing file are errors naming the file and line.
With ``max_rows``, a seeded uniform sample of that many rows is read (from HDF5 in
blocks, so a recording larger than memory is never loaded whole); NaN and Inf rows are
then dropped from the sample.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from phys.device import DeviceInfo

__all__ = ["PUBLISHED", "Recording", "check_options", "count_devices", "read_recording",
           "sample_rows"]

#: Bare names of published recordings -> a function giving their folder.
PUBLISHED: dict[str, str] = {"phyll_acoustic": "phys.data:acoustic_recordings"}
_PAIR_NAMES = (("x_data.csv", "y_data.csv"), ("x_data.npy", "y_data.npy"))
_H5_SUFFIXES = (".h5", ".hdf5")
#: The recording a run directory holds (``phys train --record``).
RUN_RECORDING = "measurements.h5"
_CHUNK = 1 << 20
#: Rows of an HDF5 recording read at a time when sampling it.
_BLOCK = 1 << 16


@dataclass
class Recording:
    """Recorded pairs, checked: float32 ``inputs (N, n_in)`` and ``outputs (N, n_out)``.

    Attributes:
        source: The recording as named (for messages and device names).
        files: The files read, in order (their bytes key the fit cache).
        rows: Where each kept row came from (``"x_data.csv line 2"``).
        dropped: How many rows with NaN or Inf were dropped.
        info: The recorded device's info (HDF5 recordings), else ``None``.
        part: Which part of the files (``"device 0"`` of an HDF5 recording, else ``""``).
        available: Rows the recording holds (before a sample and before dropping NaN or
            Inf), ``None``: as many as were read.
    """

    source: str
    inputs: np.ndarray
    outputs: np.ndarray
    files: tuple[Path, ...]
    rows: list[str]
    dropped: int = 0
    info: DeviceInfo | None = None
    part: str = ""
    available: int | None = None
    _digest: str | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.inputs)

    def sha256(self) -> str:
        """SHA-256 over the bytes of :attr:`files` and :attr:`part`."""
        if self._digest is None:
            self._digest = files_sha256(self.files, self.part)
        return self._digest


def files_sha256(files: tuple[Path, ...], part: str = "") -> str:
    """SHA-256 over the bytes of ``files`` in order (each prefixed by its length) and
    ``part``."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.stat().st_size}:".encode())
        with open(path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
    digest.update(part.encode())
    return digest.hexdigest()


def recording_files(spec: str, device: int = 0) -> tuple[str, tuple[Path, ...], str]:
    """``(kind, files, part)`` that ``spec`` names, without reading them: kind ``"pair"``
    or ``"h5"``.

    Raises:
        FileNotFoundError: naming the missing file or folder.
        ValueError: a name that is neither a pair, a folder, an HDF5 file nor published.
    """
    if "," in spec:
        names = [s.strip() for s in spec.split(",")]
        if len(names) != 2 or not all(names):
            raise ValueError(f"recording {spec!r}: give two files, inputs and outputs, as "
                             f"X.csv,Y.csv")
        return "pair", tuple(_existing(Path(n).expanduser()) for n in names), ""
    path = Path(spec).expanduser()
    if not path.exists() and spec in PUBLISHED:
        path = Path(_resolve(PUBLISHED[spec])())
    if path.is_dir():
        for x_name, y_name in _PAIR_NAMES:
            if (path / x_name).is_file():
                return "pair", (path / x_name, _existing(path / y_name)), ""
        if (path / RUN_RECORDING).is_file():
            return "h5", (path / RUN_RECORDING,), f"device {device}"
        raise FileNotFoundError(f"recording folder {path} holds neither x_data.csv and "
                                f"y_data.csv, x_data.npy and y_data.npy, nor a run's "
                                f"{RUN_RECORDING}")
    if path.suffix.lower() in _H5_SUFFIXES:
        return "h5", (_existing(path),), f"device {device}"
    _existing(path)
    raise ValueError(f"recording {spec!r}: expected X.csv,Y.csv (or .npy), a folder holding "
                     f"x_data.csv and y_data.csv, an HDF5 file (.h5) or one of "
                     f"{', '.join(PUBLISHED)}")


def _resolve(target: str) -> Callable[[], Any]:
    import importlib

    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"recording file {path} does not exist")
    return path


def read_recording(spec: str, device: int = 0, *, max_rows: int | None = None,
                   seed: int = 0) -> Recording:
    """Read and check the recording ``spec`` names (see the module docstring).

    Args:
        spec: The recording's path(s) or published name.
        device: Which device of an HDF5 recording.
        max_rows: Read a seeded uniform sample of this many rows when the recording holds
            more (``None``: every row).
        seed: Seeds that sample.

    Raises:
        FileNotFoundError: a missing file.
        ValueError: naming the file and line - rows of the wrong width, a value that is
            not a number, inputs and outputs of different lengths, a truncated HDF5 file.
    """
    kind, files, part = recording_files(spec, device)
    if kind == "h5":
        x, y, info, where, available, picked = _read_h5(files[0], device, max_rows, seed)
        x_rows = y_rows = [f"{where} row {i}" for i in picked]
    else:
        (x, x_rows), (y, y_rows) = (_read_array(p) for p in files)
        info = None
        x, x_rows, y, y_rows = _drop_header(x, x_rows, y, y_rows, files)
        if len(x) != len(y):
            raise ValueError(f"recording {spec!r}: {files[0].name} has {len(x)} rows but "
                             f"{files[1].name} has {len(y)}; row i of the outputs must be "
                             f"the answer to row i of the inputs")
        available, idx = len(x), sample_rows(len(x), max_rows, seed)
        if idx is not None:
            x, y = x[idx], y[idx]
            x_rows, y_rows = [x_rows[i] for i in idx], [y_rows[i] for i in idx]
    keep = np.isfinite(x).all(1) & np.isfinite(y).all(1)
    dropped = int((~keep).sum())
    if dropped:
        first = int(np.flatnonzero(~keep)[0])
        warnings.warn(f"recording {spec!r}: dropped {dropped} row(s) with NaN or Inf; the "
                      f"first at {x_rows[first]} / {y_rows[first]}", stacklevel=3)
    rows = [x_rows[i] for i in np.flatnonzero(keep)]
    return Recording(spec, np.ascontiguousarray(x[keep], np.float32),
                     np.ascontiguousarray(y[keep], np.float32), files, rows, dropped,
                     info, part, available)


def sample_rows(n: int, max_rows: int | None, seed: int) -> np.ndarray | None:
    """Sorted indices of a seeded uniform sample of ``max_rows`` of ``n`` rows, without
    repeats; ``None`` (every row) when ``max_rows`` is ``None`` or ``n <= max_rows``."""
    if max_rows is None or n <= max_rows:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, max_rows, replace=False))


def count_devices(spec: str) -> int:
    """How many devices the recording ``spec`` holds (a pair of files: one)."""
    kind, files, _ = recording_files(spec)
    if kind != "h5":
        return 1
    from phys import recording

    try:
        with recording.open(files[0]) as rec:
            return len(rec.devices)
    except OSError as err:
        raise ValueError(f"{files[0]}: cannot read the HDF5 recording (truncated or not "
                         f"HDF5?): {err}") from None


def _read_array(path: Path) -> tuple[np.ndarray, list[str]]:
    """A 2-D float32 array from ``.npy`` or ``.csv`` and where each row came from."""
    if path.suffix.lower() == ".npy":
        try:
            a = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as err:
            raise ValueError(f"{path}: not a readable .npy array ({err})") from None
        if a.ndim != 2 or a.shape[1] < 1 or not np.issubdtype(a.dtype, np.number):
            raise ValueError(f"{path}: expected a 2-D numeric array (rows, values), got "
                             f"shape {a.shape} of {a.dtype}")
        return a.astype(np.float32), [f"{path.name} row {i}" for i in range(len(a))]
    return _read_csv(path)


def _read_csv(path: Path) -> tuple[np.ndarray, list[str]]:
    rows: list[list[float]] = []
    where: list[str] = []
    width, width_line = 0, 0
    with open(path, encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            cells = line.split(",")
            try:
                values = [float(c) for c in cells]
            except ValueError:
                if not rows and number == 1:
                    continue  # a header line of names
                bad = next(c for c in cells if not _is_number(c))
                raise ValueError(f"{path} line {number}: {bad.strip()!r} is not a "
                                 f"number") from None
            if not width:
                width, width_line = len(values), number
            elif len(values) != width:
                raise ValueError(f"{path} line {number}: {len(values)} values, expected "
                                 f"{width} (as on line {width_line})")
            rows.append(values)
            where.append(f"{path.name} line {number}")
    if not rows:
        raise ValueError(f"{path}: no rows of numbers")
    return np.asarray(rows, dtype=np.float32), where


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _drop_header(x: np.ndarray, x_rows: list[str], y: np.ndarray, y_rows: list[str],
                 files: tuple[Path, ...]) -> tuple[np.ndarray, list[str], np.ndarray,
                                                   list[str]]:
    """Without the first rows when both are a CSV's first line of all zeros."""
    csv = all(p.suffix.lower() == ".csv" for p in files)
    first_lines = x_rows[0].endswith(" line 1") and y_rows[0].endswith(" line 1")
    if csv and first_lines and not x[0].any() and not y[0].any():
        return x[1:], x_rows[1:], y[1:], y_rows[1:]
    return x, x_rows, y, y_rows


def _read_h5(path: Path, device: int, max_rows: int | None, seed: int
             ) -> tuple[np.ndarray, np.ndarray, DeviceInfo, str, int, Any]:
    """Inputs, outputs, info, a name, the rows available and the rows read (indices) of
    device ``device`` of an HDF5 recording."""
    from phys import recording

    try:
        rec = recording.open(path)
        try:
            devices = rec.devices
            if not 0 <= device < len(devices):
                raise ValueError(f"{path}: recording has {len(devices)} device(s), no "
                                 f"device {device}")
            dev = devices[device]
            info, available = dev.info, len(dev)
            idx = sample_rows(available, max_rows, seed)
            x, y = _take(dev.inputs, idx), _take(dev.outputs, idx)
        finally:
            getattr(rec, "close", lambda: None)()
    except OSError as err:
        raise ValueError(f"{path}: cannot read the HDF5 recording (truncated or not "
                         f"HDF5?): {err}") from None
    where = f"{path.name} /devices/{device}"
    for name, a, n in (("inputs", x, info.n_in), ("outputs", y, info.n_out)):
        if a.ndim != 2 or a.shape[1] != n:
            raise ValueError(f"{where}/{name}: shape {a.shape}, expected (rows, {n}) as its "
                             f"info says")
    if len(x) != len(y):
        raise ValueError(f"{where}: {len(x)} inputs but {len(y)} outputs")
    return x, y, info, where, available, range(available) if idx is None else idx


def _take(column: Any, idx: np.ndarray | None) -> np.ndarray:
    """Rows ``idx`` (sorted; ``None``: all) of a lazy column as float32, read a block of
    :data:`_BLOCK` rows at a time (only blocks that hold a chosen row)."""
    if idx is None:
        return np.asarray(column[:], np.float32)
    out = np.empty((len(idx), *column.shape[1:]), np.float32)
    for start in range(0, len(column), _BLOCK):
        a, b = np.searchsorted(idx, (start, start + _BLOCK))
        if a < b:
            first, last = int(idx[a]), int(idx[b - 1])
            out[a:b] = column[first:last + 1][idx[a:b] - first]
    return out


def check_options(device: int, in_min: float | None, in_max: float | None) -> None:
    """``ValueError`` naming a bad ``device``, ``in_min`` or ``in_max``, before any work."""
    if isinstance(device, bool) or not isinstance(device, int) or device < 0:
        raise ValueError(f"device must be an int >= 0 (which device of a recording), got "
                         f"{device!r}")
    for key, value in (("in_min", in_min), ("in_max", in_max)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value)):
            raise ValueError(f"{key} must be a finite number, got {value!r}")
    if in_min is not None and in_max is not None and not in_min < in_max:
        raise ValueError(f"in_min must be below in_max, got {in_min!r} and {in_max!r}")


def finite_range(x: np.ndarray) -> tuple[float, float]:
    """The smallest and largest value of ``x`` (widened a little when they are equal)."""
    lo, hi = float(x.min()), float(x.max())
    if not lo < hi:
        lo, hi = lo - 0.5, hi + 0.5
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError("recorded inputs have no finite range")
    return lo, hi
