"""One device's rows on their way into ``measurements.h5``: buffered by the caller, then
written into the device's datasets (by the recording's writer thread).

The caller appends batches to the buffers and, now and then, takes them as a
:class:`Pending` block; the writer writes each block at the rows it was taken for and then
commits the counts. The two sides share nothing else: the caller's counter
(:attr:`DeviceRows.handed`) runs ahead of the file's (:attr:`DeviceRows.rows`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from phys.device import DeviceInfo
from phys.recording import layout as L

__all__ = ["DeviceRows", "Pending"]


@dataclass
class Pending:
    """Rows ``first .. first + n`` of a device (arrays per column) and setting changes."""

    first: int
    n: int
    columns: dict[str, np.ndarray]
    settings: list[str] = field(default_factory=list)
    buffers: dict[str, np.ndarray] = field(default_factory=dict)  # to reuse once written


class DeviceRows:
    """Device ``k``: its group, its committed counts and the rows buffered for it (in
    arrays that grow by doubling, handed over as they are)."""

    def __init__(self, k: int, group: Any, info: DeviceInfo, rows: int, n_settings: int,
                 next_query: int, spill_bytes: int = 2**22) -> None:
        self.k, self.group, self.info = k, group, info
        self.rows, self.n_settings = rows, n_settings  # in the file (the writer's side)
        self.handed = rows  # rows taken from the buffers so far (the caller's side)
        self.next_query = next_query
        self.buffers: dict[str, np.ndarray] = {}
        self.pending_rows, self.pending_settings = 0, []
        #: Buffers the writer is done with, for the caller to fill again (no new pages).
        self.spare: deque[dict[str, np.ndarray]] = deque(maxlen=2)
        self.row_bytes = 4 * (info.n_in + info.n_out) + 17
        #: Rows the buffers start with: those of one hand-over (no regrowth on the way).
        self.spill_rows = max(1024, spill_bytes // self.row_bytes + 1)

    def name(self) -> str:
        return f"device {self.k} ({self.info.name!r})"

    def total(self) -> int:
        """Rows recorded so far, buffered ones included."""
        return self.handed + self.pending_rows

    def pending_bytes(self) -> int:
        return self.pending_rows * self.row_bytes

    def buffer(self, n: int) -> dict[str, np.ndarray]:
        """The buffers, with room for ``n`` more rows."""
        have = len(self.buffers["query"]) if self.buffers else 0
        need = self.pending_rows + n
        if not self.buffers and self.spare:
            spare = self.spare.popleft()
            if len(spare["query"]) >= need:
                self.buffers, have = spare, len(spare["query"])
        if need > have:
            size = max(need, 2 * have, self.spill_rows)
            grown = {}
            for name, (dtype, _) in L.COLUMNS.items():
                w = L.width(self.info, name)
                grown[name] = np.empty((size, w) if w else (size,), dtype)
                if self.pending_rows:
                    grown[name][:self.pending_rows] = self.buffers[name][:self.pending_rows]
            self.buffers = grown
        return self.buffers

    def take(self) -> Pending | None:
        """The buffered rows and settings as one block (``None`` when there are none);
        the next rows go to fresh buffers."""
        if not (self.pending_rows or self.pending_settings):
            return None
        n = self.pending_rows
        block = Pending(self.handed, n, {name: buf[:n] for name, buf in self.buffers.items()}
                        if n else {}, self.pending_settings, self.buffers)
        self.handed += n
        self.buffers, self.pending_rows, self.pending_settings = {}, 0, []
        return block

    def write(self, block: Pending) -> None:
        """Write ``block`` into the datasets after the rows there (counts unchanged)."""
        if block.first != self.rows:
            raise RuntimeError(f"{self.name()}: rows {block.first}.. handed over after "
                               f"{self.rows} were written")
        end = self.rows + block.n
        for name, values in block.columns.items():
            ds = self.group[name]
            ds.resize(end, axis=0)
            ds[self.rows:end] = values
        if block.settings:
            ds = self.group["settings"]
            stop = self.n_settings + len(block.settings)
            ds.resize((stop,))
            ds[self.n_settings:stop] = block.settings
        self.rows, self.n_settings = end, self.n_settings + len(block.settings)
        if block.buffers:
            self.spare.append(block.buffers)

    def commit_counts(self) -> None:
        """Make the written rows part of the recording (the counts a reader trusts)."""
        self.group.attrs["rows"], self.group.attrs["n_settings"] = self.rows, self.n_settings

    def reset(self, rows: int, n_settings: int, next_query: int) -> None:
        """After a truncation: ``rows`` rows and ``n_settings`` settings, nothing
        buffered."""
        self.rows = self.handed = rows
        self.n_settings, self.next_query = n_settings, next_query
        self.buffers, self.pending_rows, self.pending_settings = {}, 0, []
        self.commit_counts()
