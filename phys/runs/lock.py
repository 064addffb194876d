"""One writer per run directory: an OS file lock held while a run writes the directory,
and the checks that a path can be a run directory at all.

The lock is ``fcntl.flock`` on the file ``.lock`` in the directory, which holds the
writer's pid. The operating system releases it when the process ends in any way (a
SIGKILL included), so a killed run leaves no stale lock; a run that ends normally also
removes the file.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from types import TracebackType

__all__ = ["LOCK", "RunLock", "RunLocked", "check_out"]

LOCK = ".lock"
_TRIES = 10


class RunLocked(RuntimeError):
    """Another process is writing the run directory; the message names its pid."""


def _writable(directory: Path) -> bool:
    return os.access(directory, os.W_OK | os.X_OK)


def check_out(path: str | os.PathLike[str], name: str = "out") -> Path:
    """``path`` as a :class:`~pathlib.Path`, or ``ValueError`` (naming the argument
    ``name`` and the path) unless it is or can become a directory this process writes:
    not empty, not a file, not under a file, not in a read-only directory."""
    text = os.fspath(path)
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{name} must name a directory, got {text!r}")
    target = Path(text)
    if target.exists() and not target.is_dir():
        raise ValueError(f"{name} must be a directory: {target} is a file")
    above = next(p for p in (target, *target.parents) if p.exists())
    if not above.is_dir():
        raise ValueError(f"{name} must be a directory: {above} (on the way to {target}) "
                         f"is a file")
    if not _writable(above):
        where = "" if above == target else f" (on the way to {target})"
        raise ValueError(f"{name} must be a directory that can be written: {above}{where} "
                         f"is read-only")
    return target


def _holder(fd: int) -> str:
    """The pid written in the lock file (the holder writes it just after locking)."""
    for _ in range(20):
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        if text:
            return text
        time.sleep(0.01)
    return "unknown"


class RunLock:
    """The lock of run directory ``path`` (see the module docstring), as a context
    manager; :meth:`acquire` creates the directory, and :meth:`release` removes it
    again if it made it and nothing else was written there.

    Raises (on entering):
        ValueError: ``path`` cannot be a run directory (:func:`check_out`), or the
            directory or its lock file cannot be created.
        RunLocked: another process holds the lock (the message names its pid).
    """

    def __init__(self, path: str | os.PathLike[str], name: str = "out") -> None:
        self.path, self.name = Path(path), name
        self.file = self.path / LOCK
        self._fd: int | None = None
        self._made = False

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()

    def _open(self) -> int:
        try:
            return os.open(self.file, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise ValueError(f"{self.name} must be a directory that can be written: "
                             f"cannot create {self.file}: {err.strerror}") from None

    def acquire(self) -> None:
        check_out(self.path, self.name)
        made = not self.path.exists()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ValueError(f"{self.name} must be a directory that can be written: "
                             f"cannot create {self.path}: {err.strerror}") from None
        for _ in range(_TRIES):
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                os.close(fd)
                raise RunLocked(f"{self.path} is in use: another run (pid {holder}) is "
                                f"writing it; wait for it to end or choose another "
                                f"directory") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.file).st_ino
            except FileNotFoundError:
                same = False
            if same:  # else the holder removed the file on its way out: once more
                break
            os.close(fd)
        else:  # pragma: no cover - a lock file removed under us ten times running
            raise RunLocked(f"{self.path}: could not lock {self.file}")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd, self._made = fd, made

    def release(self) -> None:
        """Remove the lock file and release the lock (nothing when not held)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            self.file.unlink(missing_ok=True)  # still locked: no one else is inside
        finally:
            os.close(fd)
        if self._made:
            try:
                self.path.rmdir()  # only if empty: a run that failed before writing
            except OSError:
                pass
