"""A process that records batches without end, flushing every few: the kill tests stop it
with SIGKILL. ``python kill_writer.py PATH FLUSH_EVERY SPILL_BYTES`` prints ``flushed N``
after each flush of N rows in all."""

from __future__ import annotations

import sys

import numpy as np

from phys.device import DeviceInfo
from phys.recording import writer

INFO = DeviceInfo("rig", n_in=6, n_out=4, in_min=-1.0, in_max=1.0, max_batch=64)
ROWS = 16


def batch(i: int) -> tuple[np.ndarray, np.ndarray]:
    """Batch ``i``: the same values in every process."""
    grid = np.add.outer(np.arange(ROWS), np.arange(INFO.n_in)) + i
    x = (grid % 200).astype(np.float32) / 100 - 1
    return x, np.full((ROWS, INFO.n_out), i, np.float32) + np.arange(INFO.n_out)


def main(path: str, flush_every: int, spill_bytes: int) -> None:
    writer.SPILL_BYTES = spill_bytes
    rec = writer.Recording.create(path)
    rec.add_device(INFO)
    for i in range(200_000):  # bounded: the test kills it long before
        rec.write(0, *batch(i), query=i, phase="train")
        if (i + 1) % flush_every == 0:
            rec.flush()
            print(f"flushed {rec.rows(0)}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
