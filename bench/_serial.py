"""Helper of the serial benchmarks: ``phys emulate`` in its own process."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Served:
    """The port of a running ``phys emulate``; after it stops, its closing line and the
    samples it measured."""

    port: str
    summary: str = ""
    measured: int | None = None


@contextlib.contextmanager
def emulate(*args: str) -> Iterator[Served]:
    """Run ``phys emulate ARGS`` in a separate process (so the virtual device does not
    share the host's interpreter); stop it on exit."""
    with tempfile.TemporaryDirectory() as tmp:
        port_file = Path(tmp) / "port"
        proc = subprocess.Popen(
            [sys.executable, "-m", "phys.cli", "emulate", *args, "--port-file", str(port_file)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
            env={**os.environ, "OMP_NUM_THREADS": "1"})
        served = None
        try:
            deadline = time.monotonic() + 120
            while not (port_file.exists() and port_file.read_text().strip()):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"phys emulate did not start: {proc.communicate()}")
                time.sleep(0.05)
            served = Served(port_file.read_text().strip())
            yield served
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                out, _ = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                out = ""
            if served is not None and out.strip():
                served.summary = out.strip().splitlines()[-1]
                found = re.search(r"(\d+) samples measured", served.summary)
                served.measured = int(found.group(1)) if found else None
