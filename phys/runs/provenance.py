"""What produced a run: the versions of physnn, torch and PennyLane, and the git commit of
the source tree physnn was imported from, for ``results.json``."""

from __future__ import annotations

import functools
import subprocess
from importlib import metadata
from pathlib import Path

__all__ = ["git_commit", "threads_used", "versions"]

GIT_TIMEOUT = 2.0  # seconds


def _installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                              timeout=GIT_TIMEOUT, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_commit(package: Path | None = None) -> str | None:
    """The commit checked out where ``package`` (default: physnn's own directory) is a
    tracked source directory; ``None`` without git, outside a repository, or where the
    package is not tracked (installed into a virtual environment inside some repository).
    """
    import phys

    package = Path(phys.__file__).parent if package is None else Path(package)
    if _git(["ls-files", "--error-unmatch", "__init__.py"], package) is None:
        return None
    return _git(["rev-parse", "HEAD"], package)


def versions() -> dict[str, str | None]:
    """``{"physnn", "torch", "pennylane", "git_commit"}``: the versions (``None`` when
    not installed; PennyLane's is read from its metadata, not imported) and
    :func:`git_commit`. Computed once per process.

    Examples::

        >>> sorted(versions())
        ['git_commit', 'pennylane', 'physnn', 'torch']
    """
    return dict(_versions())


@functools.cache
def _versions() -> dict[str, str | None]:
    import torch

    import phys

    return {"physnn": phys.__version__, "torch": torch.__version__,
            "pennylane": _installed("pennylane"), "git_commit": git_commit()}


def threads_used() -> dict[str, int | str | None]:
    """``{"threads", "omp_wait_policy", "gomp_spincount"}``: torch's intra-op thread
    count now, and how OpenMP threads wait, from the environment (``None``: OpenMP's
    default)."""
    import os

    import torch

    return {"threads": torch.get_num_threads(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "gomp_spincount": os.environ.get("GOMP_SPINCOUNT")}
