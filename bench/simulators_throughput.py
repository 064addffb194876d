"""Throughput of the oscillator and optics simulators: samples per second through ``query``.

Each simulator runs with its default settings on uniform random inputs in range, after a
warm-up. This script reports; it never fails on time.

    .venv/bin/python bench/simulators_throughput.py [--batch 256] [--repeats 10] [--threads N]
"""

from __future__ import annotations

import os
import time

import torch
from _common import throughput_args

from phys.device import Device
from phys.simulators.optics import Optics
from phys.simulators.oscillators import Oscillators


def samples_per_second(device: Device, batch: int, repeats: int, seed: int) -> tuple[float, float]:
    """(mean, best-query) samples/s of ``device.query`` on one random batch."""
    info = device.info
    gen = torch.Generator().manual_seed(seed)
    x = info.in_min + (info.in_max - info.in_min) * torch.rand(batch, info.n_in, generator=gen)
    device.query(x)  # warm-up: allocator, kernel selection, FFT plans
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        device.query(x)
        times.append(time.perf_counter() - t0)
    return batch * repeats / sum(times), batch / min(times)


def main(argv: list[str] | None = None) -> None:
    args = throughput_args(__doc__.splitlines()[0], batch=256, argv=argv)

    print(f"batch {args.batch}, {args.repeats} repeats, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}")
    if hasattr(os, "getloadavg"):  # other processes on the cores distort the numbers
        print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cpus")
    for device in (Oscillators(), Optics()):
        with device:
            rate, best = samples_per_second(device, args.batch, args.repeats, args.seed)
            i = device.info
            print(f"{i.name} n_in={i.n_in} n_out={i.n_out}: samples/s {rate:,.0f} "
                  f"(best query {best:,.0f}), wall ms per batch {1e3 * args.batch / rate:.1f}")


if __name__ == "__main__":
    main()
