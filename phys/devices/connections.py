"""The virtual lab device's host connections, and the symlink that names its port.

A :class:`Connection` is one host's end of :class:`~phys.devices.emulator.Emulator`: a
pty master or an accepted TCP socket, its frame splitter, the bytes waiting to be
written to it and the bytes it holds on their way to the device. :func:`publish_link`
points a stable path at a pty whose name changes each time an emulator starts.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import time
from typing import Any

from phys.devices import protocol as P
from phys.devices.responder import Responder

__all__ = ["IN_USE", "Connection", "publish_link", "unpublish_link"]

#: Text that starts the ERROR 8 a TCP host gets when every client place is taken.
IN_USE = "in use"
#: Seconds a refused connection is kept open for its first frame (to answer it).
REFUSE_SECONDS = 1.0
#: Kernel send buffer of an accepted TCP connection, bytes.
SEND_BUFFER = 64 << 10


def publish_link(link: str, target: str) -> None:
    """Point symlink ``link`` at ``target``, atomically (a new name renamed over it);
    refuses to replace anything but a symlink."""
    if os.path.lexists(link) and not os.path.islink(link):
        raise ValueError(f"link {link!r} exists and is not a symlink; not replacing it")
    tmp = os.path.join(os.path.dirname(os.path.abspath(link)),
                       f".{os.path.basename(link)}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    os.symlink(target, tmp)
    os.replace(tmp, link)


def unpublish_link(link: str, target: str) -> None:
    """Remove symlink ``link`` if it still points at ``target`` (not a successor's)."""
    with contextlib.suppress(OSError):
        if os.readlink(link) == target:
            os.unlink(link)


class Connection:
    """One host connection: a pty master or a TCP socket, its frame splitter and the
    bytes waiting to be written to it."""

    def __init__(self, fd: Any, frame_limit: int, responder: Responder | None) -> None:
        self.fd = fd
        self.splitter = P.FrameSplitter(frame_limit)
        self.out = bytearray()
        self.closed = False
        self.responder = responder  # None: refused, answered IN_USE and closed
        self.refused_until = time.monotonic() + REFUSE_SECONDS
        self.answered = False
        self.pending_in = 0  # request bytes on their way to the device
        self.held_out = 0  # answer bytes held back by a delay fault

    @property
    def buffered(self) -> int:
        """Bytes this connection holds: requests not yet taken, answers not yet read."""
        return self.pending_in + self.held_out + len(self.out)

    @property
    def is_socket(self) -> bool:
        return isinstance(self.fd, socket.socket)

    def recv(self) -> bytes:
        try:
            if isinstance(self.fd, socket.socket):
                data = self.fd.recv(1 << 16)
                if not data:
                    self.close()
                return data
            return os.read(self.fd, 1 << 16)
        except BlockingIOError:
            return b""
        except OSError as err:
            if isinstance(self.fd, socket.socket):
                self.close()
            elif err.errno == errno.EIO:  # no host holds the pty open
                time.sleep(0.01)
            else:
                raise
            return b""

    def send(self) -> int:
        try:
            if isinstance(self.fd, socket.socket):
                n = self.fd.send(self.out)
            else:
                n = os.write(self.fd, self.out)
        except BlockingIOError:
            return 0
        except OSError:  # the host has gone
            self.out.clear()
            if self.is_socket:
                self.close()
            return 0
        del self.out[:n]
        return n

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(OSError):
                if isinstance(self.fd, socket.socket):
                    self.fd.close()
                else:
                    os.close(self.fd)


