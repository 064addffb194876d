"""Throughput of the cavity simulator: samples per second through ``Device.query``.

Anchor: the issue's target of 50,000 samples/s for ``Cavity(n_in=64, n_out=128,
n_scatterers=256)`` with default settings. This script reports; it never fails on time.

    .venv/bin/python bench/cavity_throughput.py [--batch 4096] [--repeats 10] [--threads N]
"""

from __future__ import annotations

import os
import statistics
import time

import torch
from _common import throughput_args

from phys.simulators.cavity import Cavity, _fast_bf16

TARGET = 50_000  # samples/s


def main(argv: list[str] | None = None) -> None:
    args = throughput_args(__doc__.splitlines()[0], batch=4096, argv=argv)

    cav = Cavity(n_in=64, n_out=128, n_scatterers=256)
    info = cav.info
    gen = torch.Generator().manual_seed(args.seed)
    x = info.in_min + (info.in_max - info.in_min) * torch.rand(args.batch, info.n_in,
                                                               generator=gen)
    for _ in range(2):  # warm-up: allocator, kernel selection
        cav.query(x)

    times, iterations = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        cav.query(x)
        times.append(time.perf_counter() - t0)
        iterations.append(cav.last_iterations)
    cav.close()

    rate = args.batch * args.repeats / sum(times)
    best = args.batch / min(times)
    print(f"cavity n_in=64 n_out=128 n_scatterers=256, batch {args.batch}, "
          f"{args.repeats} repeats, max_batch {info.max_batch}")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"bf16 warm-up {'on' if _fast_bf16() else 'off'}")
    if hasattr(os, "getloadavg"):  # other processes on the cores distort the numbers
        print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cpus")
    print(f"iterations used: {min(iterations)}..{max(iterations)} "
          f"(median {statistics.median(iterations):g})")
    print(f"samples/s: {rate:,.0f} (best query {best:,.0f})")
    print(f"ratio to target {TARGET}: {rate / TARGET:.2f}")


if __name__ == "__main__":
    main()
