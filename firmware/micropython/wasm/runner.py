"""Run the firmware in a child process, under MicroPython or CPython, on a real pty.

    python firmware/micropython/wasm/runner.py [--cpython] [--dtype f32]

prints the port and serves until Ctrl-C; ``phys.open(PORT)`` then talks to the firmware
as to a board. Under MicroPython it is the WebAssembly build from the npm registry, run
by Node.js (``run.mjs``), installed once by :func:`install` with ``npm ci`` from the
committed ``package-lock.json`` (pinned version, tarball integrity checked) into
``${XDG_CACHE_HOME:-~/.cache}/physnn/npm``. Between the pty and the process, a link
passes the frames on and can strike them with :class:`phys.devices.faults.Faults`
(dropped, corrupt, duplicated, late frames; a reset restarts the process, a real power
cycle). The tests and ``bench/micropython_firmware.py`` use :class:`FirmwareProcess`.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import os
import random
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import tty
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIRMWARE = HERE.parent
PACKAGE = "@micropython/micropython-webassembly-pyscript"
RUNTIMES = ("micropython", "cpython")
INSTALL_TIMEOUT = 600.0  # seconds for npm ci


class NodeMissing(RuntimeError):
    """``node`` or ``npm`` is not on PATH."""


class InstallError(RuntimeError):
    """``npm ci`` failed; the message carries npm's own output."""


def pinned_version() -> str:
    lock = json.loads((HERE / "package-lock.json").read_text(encoding="utf-8"))
    return lock["packages"][f"node_modules/{PACKAGE}"]["version"]


def cache_folder() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "physnn" / "npm"


def tools() -> tuple[str, str]:
    """Paths of ``node`` and ``npm``; :class:`NodeMissing` if either is not on PATH."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        missing = " and ".join(n for n, p in (("node", node), ("npm", npm)) if p is None)
        raise NodeMissing(f"Node.js is needed to run the firmware under MicroPython: "
                          f"{missing} not on PATH")
    return node, npm


def install_folder() -> Path:
    """Where :func:`install` puts the package: named by a hash of the lock file, so a new
    pin installs anew."""
    files = [HERE / "package.json", HERE / "package-lock.json"]
    key = hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()[:16]
    return cache_folder() / key


def install() -> Path:
    """Path of ``micropython.mjs``, installed with ``npm ci`` on first use (reused after).

    ``npm ci`` checks the tarball against the lock file's integrity hash. The folder
    (:func:`install_folder`) is filled under a temporary name and renamed when complete.
    """
    _, npm = tools()
    target = install_folder()
    root = target.parent
    mjs = target / "node_modules" / PACKAGE / "micropython.mjs"
    if (target / ".complete").exists() and mjs.exists():
        return mjs
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{target.name}-"))
    try:
        for f in (HERE / "package.json", HERE / "package-lock.json"):
            shutil.copyfile(f, tmp / f.name)
        cmd = [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--cache",
               str(root / "_cacache")]
        try:
            done = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True,
                                  timeout=INSTALL_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise InstallError(f"npm ci of {PACKAGE}@{pinned_version()} took over "
                               f"{INSTALL_TIMEOUT:.0f} s") from None
        if done.returncode != 0:
            raise InstallError(f"npm ci of {PACKAGE}@{pinned_version()} failed (exit "
                               f"{done.returncode}):\n{(done.stderr or done.stdout)[-4000:]}")
        got = json.loads((tmp / "node_modules" / PACKAGE / "package.json").read_text())
        if got["version"] != pinned_version():
            raise InstallError(f"npm installed {PACKAGE}@{got['version']}, "
                               f"expected {pinned_version()}")
        (tmp / ".complete").write_text(got["version"] + "\n")
        tmp.chmod(0o755)
        if target.exists():  # an unfinished folder left behind
            shutil.rmtree(target, ignore_errors=True)
        try:
            tmp.rename(target)
        except OSError:  # another process installed it meanwhile
            if not (target / ".complete").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return mjs


def command(runtime: str, firmware: Path = FIRMWARE, dtype: str = "i16", boot: int = 0,
            mem: bool = False, board: str = "sim", loop: str = "js") -> list[str]:
    """The command line that serves ``firmware`` on stdin/stdout under ``runtime``."""
    common = ["--dtype", dtype, "--boot", str(boot), "--board", board]
    if runtime == "cpython":
        return [sys.executable, str(firmware / "stdio_main.py"), *common]
    if runtime != "micropython":
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    node, _ = tools()
    return [node, str(HERE / "run.mjs"), "--micropython", str(install()), "--firmware",
            str(firmware), *common, "--loop", loop, *(["--mem"] if mem else [])]


def frames(buffer: bytearray, data: bytes) -> list[bytes]:
    """Complete frames (each with its 0x00) once ``data`` is added to ``buffer``."""
    buffer += data
    out = []
    while (end := buffer.find(b"\x00")) >= 0:
        out.append(bytes(buffer[:end + 1]))
        del buffer[:end + 1]
    return out


class FirmwareProcess:
    """The firmware in a child process behind a pty, through a link that may strike faults.

    Args:
        runtime: ``"micropython"`` (Node.js and the WebAssembly build) or ``"cpython"``.
        firmware: Folder of the firmware's ``.py`` files.
        dtype: Values on the wire, ``"i16"`` or ``"f32"``.
        faults: Link faults (:class:`phys.devices.faults.Faults`); none by default.
        fault_seed: Seed of the fault draws.
        board: ``"sim"`` (the circuit model) or ``"wire"`` (outputs = inputs).
        loop: Under MicroPython, ``"js"`` (Node's loop feeds the core) or ``"python"``
            (``physproto.serve``, the loop of the Pico's ``main.py``).
        mem: Report each batch's heap use (MicroPython): :attr:`mem` gets a tuple
            ``(rows, bytes allocated answering, bytes live after, bytes free after)``.

    :attr:`port` is the pty to open; :attr:`faults_struck` counts faults by kind,
    :attr:`boots` the power cycles, :attr:`stderr` keeps what the firmware printed.
    """

    def __init__(self, runtime: str = "micropython", *, firmware: Path = FIRMWARE,
                 dtype: str = "i16", faults=None, fault_seed: int = 0, mem: bool = False,
                 board: str = "sim", loop: str = "js"):
        self.runtime, self.firmware, self.dtype, self.mem_on = runtime, firmware, dtype, mem
        self.board, self.loop = board, loop
        self.faults = faults
        self.rng = random.Random(fault_seed)
        self.faults_struck: dict[str, int] = {}
        self.mem: list[tuple[int, int, int, int]] = []
        self.stderr: list[str] = []
        self.boots = 0
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.port = os.ttyname(self.slave)
        self._stop = threading.Event()
        self._held: dict[str, list] = {"in": [], "out": []}
        self._release = {"in": 0.0, "out": 0.0}
        self._tick = 0
        self.proc = self._spawn()
        self._thread = threading.Thread(target=self._relay, daemon=True)
        self._thread.start()

    # -- the process ---------------------------------------------------------------------
    def _spawn(self) -> subprocess.Popen:
        proc = subprocess.Popen(command(self.runtime, self.firmware, self.dtype, self.boots,
                                        self.mem_on, self.board, self.loop),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, bufsize=0)
        threading.Thread(target=self._drain, args=(proc,), daemon=True).start()
        return proc

    def _drain(self, proc: subprocess.Popen) -> None:
        for raw in proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if line.startswith("mem "):
                self.mem.append(tuple(int(v) for v in line.split()[1:5]))
            else:
                self.stderr.append(line)

    def power_cycle(self) -> None:
        """Kill the firmware and start it again: settings and memory gone, a new boot."""
        self._end(self.proc)
        self.boots += 1
        self.proc = self._spawn()

    @staticmethod
    def _end(proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        for f in (proc.stdin, proc.stdout):
            try:
                f.close()
            except OSError:
                pass

    def wait_exit(self, timeout: float) -> int | None:
        """The firmware's exit status, or ``None`` if it still runs after ``timeout`` s."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    # -- the link ------------------------------------------------------------------------
    def _hit(self, kind: str) -> bool:
        p = getattr(self.faults, kind, 0.0) if self.faults is not None else 0.0
        if p > 0 and self.rng.random() < p:
            self.faults_struck[kind] = self.faults_struck.get(kind, 0) + 1
            return True
        return False

    def _pass(self, direction: str, frame: bytes) -> None:
        """Link faults on one frame, then it queues for its side (never reordered)."""
        if len(frame) > 1:
            if direction == "in" and self._hit("reset"):
                self.power_cycle()  # the request is lost with the old process
                return
            if self._hit("drop"):
                return
            if self._hit("corrupt"):
                data = bytearray(frame[:-1])
                for _ in range(self.rng.randint(1, 3)):
                    data[self.rng.randrange(len(data))] ^= 1 << self.rng.randrange(8)
                frame = bytes(data) + b"\x00"
        copies = 2 if len(frame) > 1 and self._hit("duplicate") else 1
        late = len(frame) > 1 and self._hit("delay")
        now = time.monotonic()
        at = max(self._release[direction], now + (self.faults.delay_seconds if late else 0))
        self._release[direction] = at
        for _ in range(copies):
            self._tick += 1
            heapq.heappush(self._held[direction], (at, self._tick, frame))

    def _deliver(self) -> float:
        """Send what is due; seconds until the next frame is (at most 0.05)."""
        wait, now = 0.05, time.monotonic()
        for direction, held in self._held.items():
            while held and held[0][0] <= now:
                frame = heapq.heappop(held)[2]
                try:
                    if direction == "in":
                        self.proc.stdin.write(frame)
                    else:
                        os.write(self.master, frame)
                except OSError:
                    pass  # the firmware died or restarts: the frame is lost
            if held:
                wait = min(wait, max(held[0][0] - now, 0.0))
        return wait

    def _relay(self) -> None:
        host, device = bytearray(), bytearray()
        while not self._stop.is_set():
            out = self.proc.stdout
            try:
                ready = select.select([self.master, out], [], [], self._deliver())[0]
            except (OSError, ValueError):  # the process was replaced meanwhile
                continue
            for f in ready:
                if f is not self.master and out is not self.proc.stdout:
                    device.clear()  # a reset restarted the firmware: its old output is gone
                    continue
                try:
                    data = os.read(f if f is self.master else out.fileno(), 4096)
                except (OSError, ValueError):
                    data = b""
                if f is self.master:
                    for frame in frames(host, data):
                        self._pass("in", frame)
                elif data:
                    for frame in frames(device, data):
                        self._pass("out", frame)
                else:  # the firmware ended: wait for close() or a restart
                    self._stop.wait(0.02)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._end(self.proc)
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self) -> FirmwareProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpython", action="store_true", help="run it under CPython")
    parser.add_argument("--dtype", default="i16", choices=("i16", "f32"))
    args = parser.parse_args(argv)
    runtime = "cpython" if args.cpython else "micropython"
    with FirmwareProcess(runtime, dtype=args.dtype) as fw:
        print(fw.port, flush=True)
        try:
            while fw.proc.poll() is None:
                time.sleep(0.2)
        except KeyboardInterrupt:
            return 0
    print("\n".join(fw.stderr), file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
