"""The native backend of :class:`~phys.simulators.wave2d.Wave2D`: C kernels compiled on
first use, and a stepper that runs them.

The torch stepper needs six to ten full passes over the fields per step, each a separate
kernel; the C loops in ``kernels.c`` (shipped with this package) do one, with the whole
time loop in one call per batch chunk. They implement exactly the same updates (same
layout, same coefficients). The file is compiled once per process and per precision
(``-DREAL=float`` and ``-DREAL=double``) with the system C compiler (``$CC``, ``cc`` or
``gcc``); without one, :func:`resolve_backend` falls back to torch. The kernels release
the GIL, so a batch is split over Python threads, one per torch thread.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import functools
import importlib.resources
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from importlib.abc import Traversable
from typing import Any

import torch

from phys.simulators.wave2d.stepper import Checkpoint, _Stepper

__all__ = ["resolve_backend"]

#: The C source, a data file of this package.
KERNEL_FILE = "kernels.c"
#: Compiler flags, tried in order.
_FLAGS = (["-O3", "-march=native"], ["-O3"])

_LL, _P, _I = ctypes.c_longlong, ctypes.c_void_p, ctypes.c_int
_SIGNATURES = {  # argument types of wave2d_<name>; "real" is float or double
    "march": [_LL] * 7 + [_I] + [_P] * 4 + ["real"] + [_P, _P, _LL, _P, _LL, _P, _LL, _P, _P,
                                                        _LL, _P],
    "tape": [_LL] * 7 + [_I] + [_P] * 4 + ["real"] + [_P] * 3 + [_LL, _P, _LL, _P],
    "adjoint": [_LL] * 7 + [_I] + [_P] * 4 + ["real"] + [_P, _P, _LL, _P, _P, _P, _I, _P, _LL,
                                                         _P, _LL, _P, _LL, _P],
}
#: C type (the ``-DREAL=`` value) and ctypes type per torch dtype.
_C_REAL = {torch.float32: ("float", ctypes.c_float),
           torch.float64: ("double", ctypes.c_double)}


def kernel_source() -> Traversable:
    """The package's ``kernels.c``."""
    return importlib.resources.files(__package__).joinpath(KERNEL_FILE)


def _compiler() -> list[str] | None:
    """The C compiler command (``$CC``, ``cc`` or ``gcc``), or ``None``."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not compiler or sys.platform == "win32":
        return None
    return shlex.split(compiler)


def _compile(compiler: list[str], source: os.PathLike[str], real: str, so_file: str) -> bool:
    """Build the shared library ``so_file`` from ``source`` with ``REAL`` defined as
    ``real``; ``False`` when the compiler fails with every set of flags."""
    for flags in _FLAGS:
        try:
            done = subprocess.run([*compiler, *flags, f"-DREAL={real}", "-shared", "-fPIC",
                                   os.fspath(source), "-o", so_file],
                                  capture_output=True, timeout=120)
        except (OSError, subprocess.SubprocessError):
            return False
        if done.returncode == 0:
            return True
    return False


def _load(so_file: str, c_real: type) -> ctypes.CDLL:
    """Load a compiled library and declare the signatures of its kernels."""
    lib = ctypes.CDLL(so_file)
    for name, args in _SIGNATURES.items():
        fn = getattr(lib, f"wave2d_{name}")
        fn.argtypes = [c_real if a == "real" else a for a in args]
        fn.restype = None
    return lib


@functools.lru_cache(maxsize=1)
def _native_library() -> dict[torch.dtype, ctypes.CDLL] | None:
    """The C kernels, one library per dtype, compiled and loaded once per process;
    ``None`` without a working C compiler."""
    compiler = _compiler()
    if compiler is None:
        return None
    libraries = {}
    with tempfile.TemporaryDirectory(prefix="physnn-wave2d-") as tmp, \
            importlib.resources.as_file(kernel_source()) as source:
        for dtype, (real, c_real) in _C_REAL.items():
            so_file = os.path.join(tmp, f"wave2d_{real}.so")
            if not _compile(compiler, source, real, so_file):
                return None
            libraries[dtype] = _load(so_file, c_real)  # mapped: the file may go
    return libraries


def resolve_backend(backend: str) -> str:
    """``"native"`` or ``"torch"`` for a requested ``"auto"``, ``"native"`` or ``"torch"``.

    Raises:
        RuntimeError: ``backend="native"`` without a C compiler.
    """
    if backend != "torch" and _native_library() is not None:
        return "native"
    if backend == "native":
        raise RuntimeError("backend='native' needs a C compiler (set $CC, or install cc or "
                           "gcc); use backend='auto' or 'torch' to run without one")
    return "torch"


_POOL: tuple[int, int, concurrent.futures.ThreadPoolExecutor] | None = None  # pid, size, pool


def _thread_pool(workers: int) -> concurrent.futures.ThreadPoolExecutor:
    """A shared pool of at least ``workers`` threads (a new one after a fork)."""
    global _POOL
    if _POOL is None or _POOL[0] != os.getpid() or _POOL[1] < workers:
        if _POOL is not None and _POOL[0] == os.getpid():
            _POOL[2].shutdown(wait=False)
        pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="wave2d")
        _POOL = (os.getpid(), workers, pool)
    return _POOL[2]


def _over_batch(fn: Callable[[int, int], None], batch: int) -> None:
    """Run ``fn(b0, b1)`` on ranges of the batch, one per torch thread (the C kernels
    release the GIL, so Python threads run them in parallel)."""
    n = max(1, min(torch.get_num_threads(), batch))
    if n == 1:
        fn(0, batch)
        return
    edges = [batch * k // n for k in range(n + 1)]
    pool = _thread_pool(n)
    futures = [pool.submit(fn, edges[k], edges[k + 1]) for k in range(n)]
    for future in futures:
        future.result()


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


class _NativeStepper(_Stepper):
    """:class:`_Stepper` whose :meth:`forward` and :meth:`adjoint` run the C kernels.

    The nonlinear adjoint works one sample at a time: per chunk of ``every`` steps it
    recomputes the sample's fields from the checkpoint onto a tape (``every`` fields, which
    stay in cache) and derives the Jacobian coefficients from them on the fly.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.device.type != "cpu":  # the kernels take raw pointers to host memory
            raise ValueError(f"the native wave2d kernels run on the CPU only, got maps on "
                             f"{self.device}; use backend='torch'")
        libraries = _native_library()
        if libraries is None:
            raise RuntimeError("no C compiler found for the native wave2d kernels")
        lib = libraries[self.dtype]
        self._c = {name: getattr(lib, f"wave2d_{name}") for name in _SIGNATURES}
        linear = self.linear
        a, c = (self.a_lin, self.c_lin) if linear else (self.a2, self.kappa)
        # arguments shared by every kernel: linear, bc, a, c, chat, cnl
        self._medium = (int(linear), _ptr(self.bc), _ptr(a), _ptr(c), _ptr(self.chat),
                        self.cnl_hat)
        self._coefficients = (a, c)  # keep the pointed-to tensors alive
        #: dtype and device (the CPU) of the buffers the kernels write.
        self._new: dict[str, Any] = {"dtype": self.dtype, "device": self.device}

    def forward(self, drive: torch.Tensor, n_steps: int, every: int = 0,
                ) -> tuple[torch.Tensor, list[Checkpoint]]:
        batch = drive.shape[1]
        drive = drive.to(**self._new).contiguous()
        record = torch.empty(n_steps, batch, len(self.probes), **self._new)
        prev, cur = self.zeros(batch), self.zeros(batch)
        n_ckpt = -(-n_steps // every) if every > 0 else 0
        ckpt = torch.empty(n_ckpt, 2, batch, self.p, **self._new) if n_ckpt else None

        def run(b0: int, b1: int) -> None:
            self._c["march"](batch, b0, b1, self.w, self.p, 0, n_steps, *self._medium,
                             _ptr(prev), _ptr(cur), len(self.sources), _ptr(self.sources),
                             drive.shape[0], _ptr(drive), len(self.probes), _ptr(self.probes),
                             _ptr(record), every, _ptr(ckpt))

        _over_batch(run, batch)
        return record, [] if ckpt is None else [(c[0], c[1]) for c in ckpt]

    def adjoint(self, grad_record: torch.Tensor, n_drive: int,
                checkpoints: list[Checkpoint], every: int,
                drive: torch.Tensor) -> torch.Tensor:
        n_steps, batch = grad_record.shape[0], grad_record.shape[1]
        grad_record = grad_record.to(**self._new).contiguous()
        grad_drive = torch.zeros(n_drive, batch, len(self.sources), **self._new)
        lam = (self.zeros(batch), self.zeros(batch))
        weighted = self.zeros(batch)
        drive = drive.to(**self._new).contiguous()
        chunk = max(every, 1)
        tape = None if self.linear else torch.zeros(chunk + 1, batch, self.p, **self._new)

        def adjoint(b0: int, b1: int, lams: tuple[torch.Tensor, torch.Tensor], hi: int,
                    lo: int, jacobian: bool, first: int = 0,
                    ) -> tuple[torch.Tensor, torch.Tensor]:
            """Steps hi..lo; returns (lam[lo], lam[lo + 1]) as (lam1, lam2) for the next."""
            self._c["adjoint"](batch, b0, b1, self.w, self.p, hi, lo, *self._medium,
                               _ptr(self.m4k), _ptr(tape), first, _ptr(lams[0]),
                               _ptr(lams[1]), _ptr(weighted), int(jacobian),
                               _ptr(grad_record), len(self.probes), _ptr(self.probes),
                               len(self.sources), _ptr(self.sources), n_drive,
                               _ptr(grad_drive))
            return lams[::-1] if (hi - lo + 1) % 2 else lams

        def run(b0: int, b1: int) -> None:
            if self.linear:
                adjoint(b0, b1, adjoint(b0, b1, lam, n_steps, n_steps, False), n_steps - 1, 1,
                        True)
                return
            for b in range(b0, b1):  # one sample at a time: its tape stays in cache
                lams = adjoint(b, b + 1, lam, n_steps, n_steps, False)
                for first in range((n_steps - 1) // chunk * chunk, -1, -chunk):
                    last = min(first + chunk, n_steps)  # adjoint steps max(first, 1)..last-1
                    if last - 1 < max(first, 1):
                        continue
                    prev, cur = checkpoints[first // chunk]
                    self._c["tape"](batch, b, b + 1, self.w, self.p, first, last - 1,
                                    *self._medium, _ptr(prev), _ptr(cur), _ptr(tape),
                                    len(self.sources), _ptr(self.sources), drive.shape[0],
                                    _ptr(drive))
                    lams = adjoint(b, b + 1, lams, last - 1, max(first, 1), True, first)

        _over_batch(run, batch)
        return grad_drive


