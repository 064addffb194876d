"""Atomic file writes: a reader sees the old file or the new one, never half of one.

A write that fails (a full disk, a directory that cannot be written) leaves the old file
as it was, removes its temporary file and raises :class:`WriteError`, whose message names
the file being written and says why (``the disk is full``).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["WriteError", "atomic_path", "write_bytes", "write_figure", "write_json",
           "write_text"]

_FULL = (errno.ENOSPC, errno.EDQUOT)


class WriteError(OSError, RuntimeError):
    """A file could not be written; the message names it and says why. The old file is
    left as it was. (An ``OSError`` whose ``errno`` is the original one, and a
    ``RuntimeError``, so that the command line reports it as an error.)"""


def _failed(target: Path, err: OSError) -> WriteError:
    why = err.strerror or str(err)
    if err.errno in _FULL:
        why = f"the disk is full ({why})"
    error = WriteError(f"cannot write {target}: {why}")
    error.errno = err.errno
    return error


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed onto it.

    On an exception the temporary file is removed and ``path`` is left untouched.

    Raises:
        WriteError: the temporary file cannot be made, synced or renamed (errors of the
            caller's own writing pass through as they are).
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp",
                                   dir=target.parent)
    except OSError as err:
        raise _failed(target, err) from err
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        try:
            with open(tmp_path, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp_path, target)
        except OSError as err:
            raise _failed(target, err) from err
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def dump(tmp: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` into the file ``tmp`` (created or emptied), all of it: a short
    write is continued, a failed one raises ``OSError``."""
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def write_bytes(path: str | os.PathLike[str], data: bytes,
                before_replace: Callable[[], None] | None = None) -> None:
    """Atomically write ``data`` to ``path``; ``before_replace()`` is called once the
    data is written, right before the new file takes the old one's place.

    Raises:
        WriteError: the file cannot be written (``path`` is then as it was).
    """
    with atomic_path(path) as tmp:
        try:
            dump(tmp, data)
            if before_replace is not None:
                before_replace()
        except OSError as err:
            raise _failed(Path(path), err) from err


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Atomically write UTF-8 ``text`` to ``path`` (see :func:`write_bytes`)."""
    write_bytes(path, text.encode())


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_figure(fig: Any, path: str | os.PathLike[str], dpi: int = 110) -> None:
    """Save a matplotlib figure as PNG to ``path`` atomically, then close it."""
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    write_bytes(path, buf.getvalue())
