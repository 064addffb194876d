"""Writing a recording: every device query of a run, appended to ``measurements.h5``.

Rows are buffered in memory; whenever :data:`SPILL_BYTES` have gathered, a writer thread
writes them into the file while the caller goes on measuring (h5py lets go of the
interpreter while it writes, so on a second core the writing costs the caller almost
nothing). :meth:`Recording.flush` waits for the writer and makes everything durable. A
process killed at any moment leaves a file that opens and holds every row up to the last
flush (rows spilled between flushes survive too): the datasets are written first and the
committed row counts after them.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from phys.atomic import WriteError, atomic_path
from phys.device import DeviceInfo
from phys.recording import layout as L
from phys.recording.rows import DeviceRows, Pending

__all__ = ["Recording"]

#: Buffered bytes above which rows are handed to the writer thread before the next flush.
SPILL_BYTES = 8 * 2**20
#: Blocks handed to the writer thread that may wait for it (the rest wait for the caller).
MAX_QUEUED = 4
#: Bytes written after which the writer thread also syncs them to the disk, so that a
#: flush (before each checkpoint) finds little left to sync.
SYNC_BYTES = 32 * 2**20


def _array(value: Any, dtype: Any, *, copy: bool = True) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor: a view of its memory
        value = value.detach().cpu().numpy()
    return np.array(value, dtype=dtype, copy=True) if copy else np.asarray(value)


class Recording:
    """A recording open for writing; use :meth:`create` or :meth:`append`, not this.

    Examples::

        >>> import phys, torch, tempfile, os
        >>> from phys.recording import Recording
        >>> path = os.path.join(tempfile.mkdtemp(), "measurements.h5")
        >>> dev = phys.open("cavity", n_in=4, n_out=3)
        >>> with Recording.create(path) as rec:
        ...     k = rec.add_device(dev.info)
        ...     x = torch.rand(8, 4)
        ...     first = rec.write(k, x, dev.query(x), query=0, phase="train")
        ...     rec.rows(k)
        8
    """

    def __init__(self, path: Path, h5: Any) -> None:
        self.path, self._h5 = path, h5
        self._lock = threading.Lock()
        self._devices: list[DeviceRows] = []
        self._fd: int | None = os.open(path, os.O_RDONLY)
        self._writer: ThreadPoolExecutor | None = None
        self._queued: deque[Future[None]] = deque()
        self._failure: BaseException | None = None
        self._unsynced = 0
        #: Seconds the callers of :meth:`write`, :meth:`flush` and :meth:`truncate` spent
        #: in them (the writer thread's time is not counted): the cost to a run.
        self.caller_seconds = 0.0
        #: Processor seconds the writer thread spent writing and syncing.
        self.writer_seconds = 0.0

    # -- opening ----------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike[str], *, overwrite: bool = False) -> Recording:
        """Create an empty recording at ``path`` (made whole, then moved into place).

        Raises:
            ValueError: ``path`` exists and ``overwrite`` is false.
            phys.atomic.WriteError: the file cannot be written.
        """
        path = Path(path)
        if path.exists() and not overwrite:
            raise ValueError(f"recording {path} exists; use Recording.append to continue "
                             f"it, or overwrite=True to replace it")
        with atomic_path(path) as tmp:
            # space is never reused: a write after a flush cannot land on flushed data
            with h5py.File(tmp, "w", fs_strategy="none") as f:
                f.attrs["format"], f.attrs["version"] = L.FORMAT, L.VERSION
                f.create_group("devices")
        return cls(path, L.open_h5(path, "r+", rdcc_nbytes=0))

    @classmethod
    def append(cls, path: str | os.PathLike[str]) -> Recording:
        """Open the recording at ``path`` to continue it after its last committed row
        (rows of a flush that a kill cut short are dropped).

        Raises:
            FileNotFoundError: no file at ``path``.
            ValueError: the file is not a readable recording (the message says why).
        """
        path = Path(path)
        rec = cls(path, L.open_h5(path, "r+", rdcc_nbytes=0))
        try:
            for k, group in enumerate(L.device_groups(rec._h5, path)):
                info, rows, n_settings = L.read_device(group, k, path)
                for name in [*L.COLUMNS, "settings"]:
                    group[name].resize(n_settings if name == "settings" else rows, axis=0)
                last = int(group["query"][rows - 1]) + 1 if rows else 0
                rec._devices.append(DeviceRows(k, group, info, rows, n_settings, last,
                                                SPILL_BYTES))
            rec._sync(durable=True)
        except BaseException:
            rec._close_files()
            raise
        return rec

    # -- writing ----------------------------------------------------------------------
    def add_device(self, info: DeviceInfo) -> int:
        """Add a device; returns its index ``k`` (0, 1, ... in the order added)."""
        if not isinstance(info, DeviceInfo):
            raise ValueError(f"add_device takes a phys.DeviceInfo, got {type(info).__name__}")
        text = L.info_json(info)
        with self._lock:
            self._check_open()
            self._drain()
            k = len(self._devices)
            group = self._h5["devices"].create_group(str(k))
            group.attrs["info"] = text
            for name, (dtype, wide) in L.COLUMNS.items():
                w = L.width(info, name)
                shape, rows = ((0, w), (None, w)) if wide else ((0,), (None,))
                group.create_dataset(name, shape=shape, maxshape=rows, dtype=dtype,
                                     chunks=(L.chunk_rows(w), *shape[1:]))
            group.create_dataset("settings", shape=(0,), maxshape=(None,), chunks=(256,),
                                 dtype=h5py.string_dtype())
            group.attrs["rows"], group.attrs["n_settings"] = 0, 0
            self._devices.append(DeviceRows(k, group, info, 0, 0, 0, SPILL_BYTES))
            self._h5.flush()
        return k

    def write(self, k: int, x: Any, y: Any, *, query: int, phase: str | int,
              time: float | Any = None, check: bool = True) -> int:
        """Append one batch of device ``k``: inputs ``x (B, n_in)``, outputs
        ``y (B, n_out)``, its query id, phase (``"train"``, ``"eval"``, ``"other"``) and
        time stamp (seconds since the epoch, one for the batch or one per row; default
        now). ``check=False`` skips the checks of the values (not of the shapes), for
        batches that :meth:`phys.Device.query` has checked. Returns the index of the
        batch's first row.

        Raises:
            ValueError: naming the device and row - wrong shapes, NaN or Inf, inputs
                outside the device range, a bad phase or time.
        """
        dev = self._device(k)
        code = L.phase_code(phase)
        if isinstance(query, bool) or not isinstance(query, (int, np.integer)) or query < 0:
            raise ValueError(f"{dev.name()}: query must be an int >= 0, got {query!r} (at row "
                             f"{dev.total()})")
        xs, ys = _array(x, np.float32, copy=False), _array(y, np.float32, copy=False)
        _check_batch(dev, xs, ys, values=check)
        n = xs.shape[0]
        stamps = _stamps(dev, time, n)
        t0 = _clock()
        with self._lock:
            self._check_open()
            first, p = dev.total(), dev.pending_rows
            buf = dev.buffer(n)
            for name, value in zip(L.COLUMNS, (xs, ys, query, stamps, code), strict=True):
                buf[name][p:p + n] = value  # the copy of the caller's data
            dev.pending_rows += n
            dev.next_query = max(dev.next_query, int(query) + 1)
            if sum(d.pending_bytes() for d in self._devices) > SPILL_BYTES:
                self._hand_over(durable=False)
        self.caller_seconds += _clock() - t0
        return first

    def write_setting(self, k: int, name: str, values: Any, row: int | None = None) -> None:
        """Record that setting ``name`` of device ``k`` became ``values`` from recording
        row ``row`` on (default: the next row).

        Raises:
            ValueError: an empty name, values that are not finite numbers, a bad row.
        """
        dev = self._device(k)
        if not isinstance(name, str) or not name:
            raise ValueError(f"{dev.name()}: a setting name must be a non-empty string, got "
                             f"{name!r}")
        v = np.atleast_1d(_array(values, np.float64)).ravel()
        if not np.isfinite(v).all():
            raise ValueError(f"{dev.name()}: setting {name!r} has a value that is not finite")
        with self._lock:
            self._check_open()
            row = dev.total() if row is None else int(row)
            if not 0 <= row <= dev.total():
                raise ValueError(f"{dev.name()}: setting {name!r} at row {row}; the device "
                                 f"has {dev.total()} rows")
            dev.pending_settings.append(json.dumps({"row": row, "name": name,
                                                    "values": v.tolist()}))

    def flush(self) -> None:
        """Write everything buffered and make it durable (h5py flush and fsync): a kill
        after this loses none of it, and the file opens.

        Raises:
            phys.atomic.WriteError: the rows could not be written (a full disk, ...).
        """
        t0 = _clock()
        with self._lock:
            self._check_open()
            self._hand_over(durable=True)
            self._drain()
        self.caller_seconds += _clock() - t0

    def truncate(self, k: int, rows: int) -> None:
        """Keep the first ``rows`` rows of device ``k`` (and the settings up to that row),
        dropping the rest, buffered or written; durable on return. For a resumed run:
        its queries then follow the last checkpoint without duplicates or gaps.

        Raises:
            ValueError: ``rows`` is negative or more than the device has.
        """
        dev = self._device(k)
        with self._lock:
            self._check_open()
            if isinstance(rows, bool) or not isinstance(rows, (int, np.integer)) \
                    or not 0 <= rows <= dev.total():
                raise ValueError(f"{dev.name()}: cannot truncate to {rows!r} rows; it has "
                                 f"{dev.total()}")
            self._hand_over(durable=False)
            self._drain()
            g = dev.group
            for name in L.COLUMNS:
                g[name].resize(int(rows), axis=0)
            kept = [s for s in g["settings"][:dev.n_settings]
                    if json.loads(s)["row"] <= rows]
            g["settings"].resize((len(kept),))
            if kept:
                g["settings"][:] = kept
            dev.reset(int(rows), len(kept), int(g["query"][rows - 1]) + 1 if rows else 0)
            self._sync(durable=True)

    # -- state ------------------------------------------------------------------------
    @property
    def devices(self) -> list[DeviceInfo]:
        """The info of every device, in the order added."""
        return [d.info for d in self._devices]

    def rows(self, k: int) -> int:
        """Rows of device ``k`` so far, buffered ones included."""
        return self._device(k).total()

    def next_query(self, k: int) -> int:
        """The query id after the last one recorded for device ``k`` (0 when none)."""
        return self._device(k).next_query

    @property
    def closed(self) -> bool:
        return self._fd is None

    def close(self) -> None:
        """Flush and close; calling it again does nothing."""
        if self._fd is None:
            return
        try:
            self.flush()
        finally:
            if self._writer is not None:
                self._writer.shutdown(wait=True)
            self._close_files()

    def __enter__(self) -> Recording:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = " closed" if self.closed else ""
        return f"<Recording {str(self.path)!r} devices={len(self._devices)}{state}>"

    # -- internals --------------------------------------------------------------------
    def _device(self, k: int) -> DeviceRows:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) \
                or not 0 <= k < len(self._devices):
            raise ValueError(f"recording {self.path} has no device {k!r}; it has "
                             f"{len(self._devices)}")
        return self._devices[int(k)]

    def _check_open(self) -> None:
        if self._fd is None:
            raise RuntimeError(f"recording {self.path} is closed")

    def _hand_over(self, *, durable: bool) -> None:
        """Give the buffered rows to the writer thread (and, if ``durable``, have it
        sync the file once they are written)."""
        blocks = [(dev, block) for dev in self._devices if (block := dev.take()) is not None]
        if not (blocks or durable):
            return
        self._raise_failure()
        if self._writer is None:
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="phys-recording")
        while len(self._queued) >= MAX_QUEUED:  # a writer behind: wait, bounding memory
            self._queued.popleft().result()
        self._queued.append(self._writer.submit(self._commit, blocks, durable))

    def _drain(self) -> None:
        """Wait until the writer thread has written everything handed to it."""
        while self._queued:
            self._queued.popleft().result()
        self._raise_failure()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            err = self._failure
            why = (err.strerror or str(err)) if isinstance(err, OSError) else str(err)
            if isinstance(err, OSError) and err.errno in (28, 122):  # ENOSPC, EDQUOT
                why = f"the disk is full ({why})"
            raise WriteError(f"recording {self.path}: rows could not be written: {why}; "
                             f"the file holds the rows up to the last flush") from err

    def _commit(self, blocks: list[tuple[DeviceRows, Pending]], durable: bool) -> None:
        """(The writer thread.) Datasets first, then the counts that make them part of
        the recording; syncs when ``durable`` or when :data:`SYNC_BYTES` gathered."""
        if self._failure is not None:
            return
        t0 = time.thread_time()
        try:
            for dev, block in blocks:
                dev.write(block)
                self._unsynced += block.n * dev.row_bytes
            durable = durable or self._unsynced > SYNC_BYTES
            self._sync(durable)
            for dev, _ in blocks:
                dev.commit_counts()
            self._sync(durable)
        except BaseException as err:  # noqa: BLE001 - raised to the caller by _drain
            self._failure = err
        self.writer_seconds += time.thread_time() - t0

    def _sync(self, durable: bool) -> None:
        self._h5.flush()
        if durable and self._fd is not None:
            os.fsync(self._fd)
            self._unsynced = 0

    def _close_files(self) -> None:
        try:
            self._h5.close()
        finally:
            if self._fd is not None:
                os.close(self._fd)
            self._fd = None


def _clock() -> float:
    return time.perf_counter()


def _check_batch(dev: DeviceRows, xs: np.ndarray, ys: np.ndarray, *, values: bool) -> None:
    info, first = dev.info, dev.total()
    if xs.ndim != 2 or xs.shape[1] != info.n_in:
        raise ValueError(f"{dev.name()}: inputs must have shape (B, {info.n_in}), got "
                         f"{xs.shape} (at row {first})")
    if ys.shape != (xs.shape[0], info.n_out):
        raise ValueError(f"{dev.name()}: outputs must have shape ({xs.shape[0]}, "
                         f"{info.n_out}) for {xs.shape[0]} inputs, got {ys.shape} (at row "
                         f"{first})")
    if not (values and xs.size):
        return
    for what, a in (("inputs", xs), ("outputs", ys)):
        if not (a.dtype.kind == "f" and np.isfinite(a.sum())):
            bad = ~np.isfinite(a.astype(np.float64))  # a sum can overflow: look closer
            if bad.any():
                i = int(np.argmax(bad.any(axis=1)))
                raise ValueError(f"{dev.name()}: {what} of row {first + i} (row {i} of the "
                                 f"batch) hold NaN or Inf")
    if xs.min() < info.in_min or xs.max() > info.in_max:
        i = int(np.argmax(((xs < info.in_min) | (xs > info.in_max)).any(axis=1)))
        raise ValueError(f"{dev.name()}: inputs of row {first + i} (row {i} of the batch) lie "
                         f"outside the device range [{info.in_min}, {info.in_max}]")


def _stamps(dev: DeviceRows, when: Any, n: int) -> float | np.ndarray:
    if when is None:
        return time.time()
    if isinstance(when, float) and math.isfinite(when):
        return when
    t = np.atleast_1d(_array(when, np.float64))
    if t.shape not in ((1,), (n,)) or not np.isfinite(t).all():
        raise ValueError(f"{dev.name()}: time must be one finite number or {n} of them, got "
                         f"shape {t.shape} (at row {dev.total()})")
    return np.broadcast_to(t, (n,)).copy()
