"""Checksums of checkpoint files: every byte of a checkpoint, and the run's configuration
it was written for, are verified before the checkpoint is used.

A checkpoint is the zip archive ``torch.save`` writes, with one addition: the archive's
comment (the last bytes of the file, which zip readers and ``torch.load`` skip) holds
``physnn-checkpoint 1 config=<C> sha256=<S>``, where ``C`` is :func:`config_digest` of
the run's ``config.json`` and ``S`` the SHA-256 of every byte before ``S``. Any change
of the file (a flipped bit anywhere, a cut, bytes written over it) changes ``S``'s input,
and so is caught before the file is unpickled; ``torch.load(weights_only=True)`` still
reads the file as it is.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

__all__ = ["NO_CONFIG", "config_digest", "seal", "unseal"]

MAGIC = b"physnn-checkpoint 1 config="
#: The config digest recorded for a run directory without ``config.json``.
NO_CONFIG = "0" * 64
_EOCD = b"PK\x05\x06"  # zip's end of central directory record: 22 bytes + the comment
_HEX = 64


def config_digest(saved: Mapping[str, Any] | None) -> str:
    """SHA-256 (hex) of a run configuration as ``config.json`` holds it (``None``:
    :data:`NO_CONFIG`); the same for any spelling of the same JSON."""
    if saved is None:
        return NO_CONFIG
    text = json.dumps(saved, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()


def seal(data: bytes, config: str) -> bytes:
    """``data`` (a ``torch.save`` archive without a comment) with its checksum and the
    ``config`` digest in the archive's comment.

    Raises:
        ValueError: ``data`` does not end in a zip record without a comment.
    """
    if len(data) < 22 or data[-22:-18] != _EOCD or data[-2:] != b"\0\0":
        raise ValueError("a checkpoint must be a zip archive without a comment "
                         "(torch.save's format)")
    head = MAGIC + config.encode() + b" sha256="
    size = len(head) + _HEX
    body = data[:-2] + size.to_bytes(2, "little") + head
    return body + hashlib.sha256(body).hexdigest().encode()


def unseal(data: bytes) -> tuple[str | None, str]:
    """The config digest recorded in checkpoint bytes ``data``, or ``None`` and why the
    bytes cannot be trusted (no checksum, or one that does not match)."""
    start = data.rfind(MAGIC, max(0, len(data) - 400))
    if start < 22 or data[start - 22:start - 18] != _EOCD:
        return None, "it has no checksum (cut short, written over, or not a checkpoint " \
                     "of this physnn)"
    size = int.from_bytes(data[start - 2:start], "little")
    head_end = len(data) - _HEX
    config = data[start + len(MAGIC):head_end].removesuffix(b" sha256=")
    if (size != len(data) - start or len(config) != _HEX
            or hashlib.sha256(data[:head_end]).hexdigest().encode() != data[head_end:]):
        return None, "its checksum does not match its content (the file was changed or " \
                     "damaged)"
    return config.decode("ascii", "replace"), ""
