"""Throughput of the 2-D wave simulator against wavetorch 0.2.1 on the same problem.

Anchor: wavetorch (Hughes et al., Sci. Adv. 2019), the reference wave-RNN implementation,
on a 140 x 140 grid, 1000 time steps, batch 9, 2 torch threads; targets: Wave2D at least
20x its forward and 10x its forward + backward throughput. Both simulate the same
problem: one point source fed a 1000-sample waveform, 3 intensity probes, a 20-cell
graded absorbing layer (sigma 11, order 4), h = 1, dt = 0.5, c0 = 1, c1 = 0.5, in
dimensionless units, with the Kerr nonlinearity on (``c_nl != 0``) and off. Backward is
the gradient of the summed probe intensities with respect to the input waveform (for
wavetorch with its density frozen, so it skips the density gradient it would need for
training). Wave2D is timed with its native (compiled C) backend when a C compiler is
available, and with its pure-torch backend; the ratios use the first. The script reports;
it never fails on time.

    .venv/bin/python bench/wave2d_vs_wavetorch.py [--repeats 3] [--threads 2]

wavetorch is loaded only for this script (``pip install wavetorch==0.2.1 --no-deps``):
its ``__init__`` pulls in plotting and training modules and the removed
``skimage.draw.circle``, so ``cell``, ``geom``, ``rnn``, ``source`` and ``probe`` are
loaded on their own, with small stand-ins for ``skimage.draw`` and ``sklearn.metrics``
where those are missing.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import resource
import statistics
import sys
import time
import types
from collections.abc import Callable

import numpy as np
import torch

from phys.simulators.wave2d import Wave2D

GRID, STEPS, BATCH, N_PROBES = (140, 140), 1000, 9, 3
H, DT, C0, C1, PML, SIGMA, ORDER = 1.0, 0.5, 1.0, 0.5, 20, 11.0, 4
TARGET_FORWARD, TARGET_BACKWARD = 20.0, 10.0


# -- loading wavetorch without its package __init__ ---------------------------------------------

def _skimage_draw_stand_in() -> types.ModuleType:
    draw = types.ModuleType("skimage.draw")

    def circle(r: float, c: float, radius: float) -> tuple[np.ndarray, np.ndarray]:
        span = np.arange(-int(np.ceil(radius)), int(np.ceil(radius)) + 1)
        dr, dc = np.meshgrid(span, span, indexing="ij")
        inside = dr**2 + dc**2 < radius**2
        return (dr[inside] + int(r)), (dc[inside] + int(c))

    def line(r0: int, c0: int, r1: int, c1: int) -> tuple[np.ndarray, np.ndarray]:
        n = max(abs(r1 - r0), abs(c1 - c0)) + 1
        return (np.rint(np.linspace(r0, r1, n)).astype(int),
                np.rint(np.linspace(c0, c1, n)).astype(int))

    draw.circle, draw.line = circle, line
    return draw


def _install_stand_ins() -> None:
    try:
        from skimage.draw import circle  # noqa: F401 - only present in old scikit-image
    except ImportError:
        skimage = types.ModuleType("skimage")
        skimage.draw = _skimage_draw_stand_in()
        sys.modules["skimage"], sys.modules["skimage.draw"] = skimage, skimage.draw
    try:
        from sklearn.metrics import confusion_matrix  # noqa: F401
    except ImportError:
        sklearn, metrics = types.ModuleType("sklearn"), types.ModuleType("sklearn.metrics")
        metrics.confusion_matrix = None
        sklearn.metrics = metrics
        sys.modules["sklearn"], sys.modules["sklearn.metrics"] = sklearn, metrics


def load_wavetorch() -> types.SimpleNamespace | None:
    """wavetorch's cell, geom, rnn, source and probe modules, or None if not installed."""
    spec = importlib.util.find_spec("wavetorch")
    if spec is None or not spec.submodule_search_locations:
        return None
    _install_stand_ins()
    package = types.ModuleType("wavetorch")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["wavetorch"] = package
    names = ("cell", "geom", "rnn", "source", "probe")
    return types.SimpleNamespace(
        **{name: importlib.import_module(f"wavetorch.{name}") for name in names})


def wavetorch_model(wt: types.SimpleNamespace, c_nl: float) -> Callable[[torch.Tensor],
                                                                         torch.Tensor]:
    """The benchmark problem in wavetorch: waveform ``(B, T)`` -> probe intensities."""
    geom = wt.geom.WaveGeometryFreeForm(GRID, H, C0, C1, abs_N=PML, abs_sig=SIGMA,
                                        abs_p=ORDER, rho="half")
    geom.rho.requires_grad_(False)  # only input gradients, as for Wave2D
    cell = wt.cell.WaveCell(DT, geom, c_nl=c_nl)
    source = wt.source.WaveSource(GRID[0] // 2, PML + 2)
    ys = np.linspace(PML + 2, GRID[1] - PML - 3, N_PROBES).round().astype(int)
    probes = [wt.probe.WaveIntensityProbe(GRID[0] - PML - 3, int(y)) for y in ys]
    model = wt.rnn.WaveRNN(cell, source, probes)

    def run(x: torch.Tensor) -> torch.Tensor:
        return model(x).sum(dim=1)  # (B, T, probes) -> time-integrated intensity

    return run


# -- timing --------------------------------------------------------------------------------------

def _time(fn: Callable[[], object], repeats: int) -> list[float]:
    fn()  # warm-up: allocator, kernel selection
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def measure(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
            repeats: int) -> tuple[float, float]:
    """Median (forward, forward + backward) seconds per batch."""

    def fwd() -> None:
        with torch.no_grad():
            forward(x)

    def fwd_bwd() -> None:
        xg = x.clone().requires_grad_(True)
        forward(xg).sum().backward()

    return statistics.median(_time(fwd, repeats)), statistics.median(_time(fwd_bwd, repeats))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs each (default 3)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.threads < 1:
        parser.error("--repeats and --threads must be positive")
    torch.set_num_threads(args.threads)
    print(f"grid {GRID[0]}x{GRID[1]}, {STEPS} steps, batch {BATCH}, {N_PROBES} probes, "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    if hasattr(os, "getloadavg"):  # other processes on the cores distort the numbers
        print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cpus")
    wt = load_wavetorch()
    if wt is None:
        print("wavetorch is not installed: comparison skipped "
              "(pip install wavetorch==0.2.1 --no-deps)")
    x = 0.5 * torch.randn(BATCH, STEPS, generator=torch.Generator().manual_seed(0)).clamp(-1, 1)

    configs = (("nonlinear", 0.1), ("linear", 0.0))

    def wave2d(c_nl: float, backend: str) -> Wave2D:
        return Wave2D(n_out=N_PROBES, input_mode="waveform", grid=GRID, n_steps=STEPS, h=H,
                      dt=DT, c0=C0, c1=C1, c_nl=c_nl, pml=PML, pml_sigma=SIGMA,
                      pml_order=ORDER, max_batch=BATCH, backend=backend)

    default = wave2d(0.0, "auto").backend  # native when a C compiler is found
    backends = (default, "torch") if default != "torch" else ("torch",)
    print(f"Wave2D backends: {', '.join(backends)} (ratios use {default})")
    ours = {}
    for label, c_nl in configs:
        for backend in backends:
            ours[label, backend] = measure(wave2d(c_nl, backend).simulate, x, args.repeats)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory after Wave2D: {rss:.0f} MiB")
    theirs = {label: measure(wavetorch_model(wt, c_nl), x, args.repeats)
              for label, c_nl in configs} if wt is not None else {}

    print(f"{'samples/s':30s}{'forward':>12s}{'fwd+bwd':>12s}")
    for label, _ in configs:
        for backend in backends:
            fwd, bwd = ours[label, backend]
            print(f"{f'Wave2D {backend} ({label})':30s}{BATCH / fwd:12.1f}{BATCH / bwd:12.1f}")
        if label not in theirs:
            continue
        print(f"{f'wavetorch ({label})':30s}{BATCH / theirs[label][0]:12.1f}"
              f"{BATCH / theirs[label][1]:12.1f}")
        fwd, bwd = (theirs[label][i] / ours[label, backends[0]][i] for i in (0, 1))
        print(f"{f'ratio ({label})':30s}{fwd:11.1f}x{bwd:11.1f}x   targets "
              f"{TARGET_FORWARD:g}x / {TARGET_BACKWARD:g}x")


if __name__ == "__main__":
    main()
