"""How many CPU threads torch computes with, chosen so that a run never oversubscribes
the cores it is given.

A process given 2 cores that other work also uses loses most of its time when torch's
OpenMP threads spin while waiting for each other: the threads of a parallel region wait
actively by default, taking the cores from the work that would let them go on. The
default here is therefore:

* one thread per core *available to the process* (its CPU affinity and its cgroup CPU
  quota, not the machine's core count), or ``OMP_NUM_THREADS`` when the user set it;
  one thread per point in a Ray sweep;
* passive OpenMP waiting (``OMP_WAIT_POLICY=PASSIVE``) unless the user set the variable.
  OpenMP reads it when torch is first imported, so :func:`prefer_passive_waiting` only
  takes effect when called before that (the ``phys`` command line does).

Results do not depend on the thread count beyond float rounding: a different count
changes the order of floating-point sums, which training can amplify into a different
last digit of an accuracy.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

__all__ = ["available_cores", "default_threads", "prefer_passive_waiting", "set_threads"]

#: The cgroup v2 file that holds a CPU quota as ``"QUOTA PERIOD"`` (or ``"max PERIOD"``).
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
MAX_THREADS = 1024


def _cgroup_cores(path: Path | None = None) -> int | None:
    """Cores allowed by a cgroup v2 CPU quota (rounded up), ``None`` without one."""
    path = CGROUP_CPU_MAX if path is None else path
    try:
        quota, period = path.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return max(1, math.ceil(int(quota) / int(period)))
    except (ValueError, ZeroDivisionError):
        return None


def available_cores() -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    quota = _cgroup_cores()
    return max(1, min(cores, quota) if quota is not None else cores)


def default_threads() -> int:
    """The default torch thread count: ``OMP_NUM_THREADS`` when the user set it to a
    positive integer, else :func:`available_cores`."""
    text = os.environ.get("OMP_NUM_THREADS", "").strip()
    if text.isdigit() and int(text) >= 1:
        return min(int(text), MAX_THREADS)
    return available_cores()


def check_threads(threads: object, what: str = "threads") -> int | None:
    """``threads`` if it is ``None`` or an int in ``1 .. MAX_THREADS``, else ValueError."""
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, int):
        raise ValueError(f"{what} must be an int >= 1 or None, got {threads!r}")
    if not 1 <= threads <= MAX_THREADS:
        raise ValueError(f"{what} must be in 1..{MAX_THREADS}, got {threads}")
    return threads


def set_threads(threads: int | None = None) -> int:
    """Set torch's intra-op thread count to ``threads`` (``None``: :func:`default_threads`)
    and return it.

    Examples::

        >>> import torch
        >>> set_threads(1)
        1
        >>> torch.get_num_threads()
        1
    """
    import torch

    count = check_threads(threads)
    count = default_threads() if count is None else count
    torch.set_num_threads(count)
    return count


def prefer_passive_waiting() -> bool:
    """Ask OpenMP to put idle threads to sleep instead of spinning (``OMP_WAIT_POLICY=
    PASSIVE``) unless the user set the variable; returns whether this call set it.

    Effective only before torch is first imported (OpenMP reads the variable once).
    """
    if "OMP_WAIT_POLICY" in os.environ:
        return False
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return True
