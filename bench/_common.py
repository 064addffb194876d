"""Helpers shared by the benchmarks: where the datasets are, and timing context."""

from __future__ import annotations

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
