"""How many CPU threads torch computes with, chosen so that a run never oversubscribes
the cores it is given.

torch's OpenMP threads meet at a barrier after every parallel operation. On cores that
other work also uses, a thread that is descheduled holds the others up, and threads that
spin while they wait take the cores from the work that would let them go on: measured on
2 cores with 2 other busy processes, the 20-epoch demo took 156 s with torch's own
2 threads and 51 s with 1. On idle cores, though, a short spin beats going to sleep
(sleeping threads wake too late for the demo's small operations: 2 threads that sleep at
once made it 2x slower than 2 that spin). The default here therefore:

* uses one thread per core that is *idle* when the run starts, among those *available
  to the process* (its CPU affinity and cgroup CPU quota, not the machine's core count),
  at least one; ``OMP_NUM_THREADS`` when the user set it; one thread per point in a Ray
  sweep;
* bounds OpenMP's spinning (``GOMP_SPINCOUNT`` = :data:`SPINCOUNT`, about a few tens of
  microseconds, then the thread sleeps) unless the user set ``OMP_WAIT_POLICY`` or
  ``GOMP_SPINCOUNT``. OpenMP reads these when torch is first imported, so
  :func:`limit_spinning` only takes effect when called before that (the ``phys`` command
  line does).

Results do not depend on the thread count beyond float rounding: a different count
changes the order of floating-point sums, which training can amplify into a different
last digit of an accuracy.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

__all__ = ["available_cores", "default_threads", "idle_cores", "limit_spinning",
           "set_threads"]

#: The cgroup v2 file that holds a CPU quota as ``"QUOTA PERIOD"`` (or ``"max PERIOD"``).
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
#: Per-CPU time counters (Linux).
PROC_STAT = Path("/proc/stat")
MAX_THREADS = 1024
#: Spin iterations of a waiting OpenMP thread before it sleeps (libgomp's own default,
#: 300,000, made 2 threads on busy cores about twice as slow as 30,000).
SPINCOUNT = 30_000
#: Seconds over which :func:`idle_cores` watches the CPUs.
IDLE_WINDOW = 0.1


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


def _affinity() -> set[int] | None:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return None


def available_cores() -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup CPU quota."""
    cpus = _affinity()
    cores = len(cpus) if cpus else (os.cpu_count() or 1)
    quota = _cgroup_cores()
    return max(1, min(cores, quota) if quota is not None else cores)


def _cpu_times(path: Path) -> dict[int, tuple[int, int]]:
    """``{cpu: (idle ticks, total ticks)}`` from a ``/proc/stat`` file."""
    times = {}
    for line in path.read_text().splitlines():
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit():
            ticks = [int(v) for v in fields[:8]]
            times[int(name[3:])] = (ticks[3] + ticks[4], sum(ticks))  # idle + iowait
    return times


def idle_cores(window: float = IDLE_WINDOW, path: Path | None = None) -> float | None:
    """How many of the process's CPUs were idle over the next ``window`` seconds (the sum
    of their idle fractions), ``None`` where ``/proc/stat`` cannot be read."""
    path = PROC_STAT if path is None else path
    try:
        before = _cpu_times(path)
        time.sleep(window)
        after = _cpu_times(path)
    except (OSError, ValueError, IndexError):
        return None
    cpus = _affinity() or set(before)
    idle = 0.0
    for cpu in cpus & set(before) & set(after):
        spent = after[cpu][1] - before[cpu][1]
        if spent > 0:
            idle += (after[cpu][0] - before[cpu][0]) / spent
    return idle if cpus & set(before) else None


def default_threads() -> int:
    """The default torch thread count: ``OMP_NUM_THREADS`` when the user set it to a
    positive integer, else the :func:`idle_cores` (rounded, at least 1) among the
    :func:`available_cores`."""
    text = os.environ.get("OMP_NUM_THREADS", "").strip()
    if text.isdigit() and int(text) >= 1:
        return min(int(text), MAX_THREADS)
    cores = available_cores()
    idle = idle_cores()
    return cores if idle is None else max(1, min(cores, math.floor(idle + 0.5)))


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


def limit_spinning() -> bool:
    """Bound how long an idle OpenMP thread spins before it sleeps (``GOMP_SPINCOUNT``)
    unless the user set ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT``; returns whether this
    call set it.

    Effective only before torch is first imported (OpenMP reads the variable once).
    """
    if "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ:
        return False
    os.environ["GOMP_SPINCOUNT"] = str(SPINCOUNT)
    return True
