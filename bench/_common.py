"""Helpers shared by the benchmarks: where the datasets are, and timing context."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def use_shared_data() -> Path:
    """Point ``PHYS_DATA`` at ``../shared/data`` unless it is set; returns the folder."""
    os.environ.setdefault("PHYS_DATA", str(ROOT.parent / "shared" / "data"))
    return Path(os.environ["PHYS_DATA"])


def machine() -> str:
    """Cores and load: other processes on the cores distort every number."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{os.cpu_count()} cpus, load average {load:.2f}"


def throughput_args(description: str, batch: int,
                    argv: list[str] | None = None) -> argparse.Namespace:
    """Options of the throughput benchmarks (``--batch``, ``--repeats``, ``--threads``,
    ``--seed``); sets torch's thread count when ``--threads`` is given."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--batch", type=int, default=batch,
                        help=f"rows per query (default {batch})")
    parser.add_argument("--repeats", type=int, default=10, help="timed queries (default 10)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: leave torch's default)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    args = parser.parse_args(argv)
    if args.batch < 1 or args.repeats < 1:
        parser.error("--batch and --repeats must be positive")
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    return args
