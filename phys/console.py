"""What the ``phys`` command line prints besides its results: the library's log lines
(logger ``phys``: progress, resumes, twin fitting) and its warnings, one plain line each
on stderr.

The library itself only logs; a program that imports physnn decides where the lines go.
"""

from __future__ import annotations

import logging
import sys
import warnings
from typing import Any, TextIO

__all__ = ["configure"]


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record is emitted."""

    @property
    def stream(self) -> TextIO:  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:  # StreamHandler.__init__ sets it
        pass


class _Format(logging.Formatter):
    """The message alone; ``phys: warning:`` before warnings and errors."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record).replace("\r", " ")
        if record.levelno >= logging.WARNING:
            return f"phys: {record.levelname.lower()}: {text}"
        return text


def _one_line(message: Warning | str, category: type[Warning], filename: str, lineno: int,
              file: TextIO | None = None, line: str | None = None) -> None:
    print(f"phys: warning: {message}", file=sys.stderr if file is None else file)


def configure(level: int = logging.INFO) -> None:
    """Send the ``phys`` logger's records at ``level`` and above to stderr, one line
    each, and print warnings as one ``phys: warning: ...`` line (once per call site)."""
    logger = logging.getLogger("phys")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(_Format("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(level)
    warnings.showwarning = _one_line
