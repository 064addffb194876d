"""What TensorBoard event files cost `make demo`: the demo with and without them.

Target: at most 2 % overhead. Runs the demo (`phys train --device
cavity --data digits --out TMP`, which writes event files into its run directory) and the
same with `--no-tensorboard`, alternating which goes first, `--repeat` times each, with
the process settings of `busy_demo.py` (`--settings default`, `threads=N` or `old`; one
setting here). Prints the medians of both the subprocess wall time (process start and
imports included) and the training `seconds` of each run's `results.json`, the overhead
in percent against the 2 % target, and how many event files the runs wrote (0 without
event files: then there is nothing to measure). With `--busy`, every run has the other
cores busy as in `busy_demo.py`. Whole runs differ by a few percent from one another, so
it also times the callback's own methods in one in-process fit of the demo network (the
share of the fit spent inside them). It never fails on time.

    .venv/bin/python bench/tensorboard_overhead.py [--settings default] [--epochs 20]
        [--repeat 3] [--busy]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
from pathlib import Path

from busy_demo import (
    Run,
    Setting,
    busy,
    cores_available,
    fmt,
    median,
    parse_setting,
    require_flags,
    run_demo,
)

TARGET_PERCENT = 2.0
OFF = "--no-tensorboard"


def measure(setting: Setting, args: argparse.Namespace) -> dict[str, list[Run]]:
    """``repeat`` runs with and without event files, alternating which runs first."""
    runs: dict[str, list[Run]] = {"with": [], "without": []}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeat):
            order = ("with", "without") if rep % 2 == 0 else ("without", "with")
            for kind in order:
                out = Path(tmp) / f"{kind}-{rep}"
                load = (busy(args.busy_procs, args.load, args.timeout + 30) if args.busy
                        else contextlib.nullcontext())
                with load:
                    run = run_demo(setting, out, args.epochs, args.timeout,
                                   extra=[OFF] if kind == "without" else None)
                runs[kind].append(run)
                print(f"  {kind:>7} event files: wall {fmt(run.wall)} s, training "
                      f"{fmt(run.seconds, '.2f')} s, {run.event_files} event file(s)"
                      f"{' (timed out)' if run.timed_out else ''}", flush=True)
    return runs


def percent(with_: float | None, without: float | None) -> float | None:
    """Overhead of ``with_`` over ``without`` in percent."""
    if with_ is None or not without:
        return None
    return 100.0 * (with_ - without) / without


def report(runs: dict[str, list[Run]]) -> None:
    """Both medians and the overhead, for wall time and training seconds."""
    print(f"\n{'':>18} {'with s':>8} {'without s':>10} {'overhead %':>11} {'/ target':>9}")
    for label, key in (("wall (subprocess)", "wall"), ("training seconds", "seconds")):
        on, off = median(runs["with"], key), median(runs["without"], key)
        over = percent(on, off)
        print(f"{label:>18} {fmt(on, '.2f'):>8} {fmt(off, '.2f'):>10} {fmt(over, '+.2f'):>11} "
              f"{fmt(over / TARGET_PERCENT if over is not None else None, '.2f'):>9}")
    print(f"target overhead <= {TARGET_PERCENT:.0f} % (last column <= 1 meets it)")
    if not any(r.event_files for r in runs["with"]):
        print("no event files were written with TensorBoard on: nothing was measured")
    if any(r.event_files for r in runs["without"]):
        print(f"event files were written with {OFF}: the comparison is void")


def time_inside(epochs: int | None) -> tuple[float, float]:
    """``(seconds inside the TensorBoard callback, seconds of the fit)`` of the demo's
    network trained in this process (1 torch thread), each callback method timed: a
    measure of the overhead that the noise of whole runs cannot hide."""
    import time

    import torch

    from phys import data
    from phys.experiment import TrainSpec, build
    from phys.runs.tensorboard import TensorBoardLog

    torch.set_num_threads(1)
    spec = TrainSpec(device="cavity", data="digits", **({} if epochs is None else
                                                         {"epochs": epochs}))
    dataset = data.load("digits")
    trainer, _ = build(spec, dataset.n_features, dataset.n_classes, [])
    spent = [0.0]

    def timed(method):
        def call(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                spent[0] += time.perf_counter() - t0
        return call

    with tempfile.TemporaryDirectory() as tmp:
        log = TensorBoardLog(tmp)
        for name in ("on_fit_start", "on_batch_end", "on_epoch_end", "on_fit_end"):
            setattr(log, name, timed(getattr(log, name)))
        t0 = time.perf_counter()
        trainer.fit(dataset.x_train, dataset.y_train, dataset.x_test, dataset.y_test,
                    callbacks=[log])
        return spent[0], time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--settings", default="default",
                   help="default, old, threads or threads=N (see busy_demo.py; default: default)")
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs of the demo (default: phys train's, as make demo)")
    p.add_argument("--repeat", type=int, default=3, help="runs with and without (median)")
    p.add_argument("--busy", action="store_true", help="keep every core busy during each run")
    p.add_argument("--busy-procs", type=int, default=os.cpu_count() or 1,
                   help="busy processes with --busy (default: os.cpu_count())")
    p.add_argument("--load", choices=("spin", "matmul"), default="spin",
                   help="what each busy process runs (default: spin)")
    p.add_argument("--timeout", type=float, default=900.0,
                   help="seconds a run may take before it is stopped (default 900)")
    args = p.parse_args(argv)
    if args.repeat < 1 or args.busy_procs < 1 or args.timeout <= 0 or (args.epochs or 1) < 1:
        p.error("--repeat, --busy-procs, --epochs and --timeout must be positive")
    try:
        setting = parse_setting(args.settings)
    except ValueError as err:
        p.error(f"--settings: {err}")
    require_flags({OFF, *(f for f in setting.flags if f.startswith("--"))})
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{os.cpu_count()} cpus ({cores_available()} available), load average {load:.2f}; "
          f"setting {setting.name}; repeat {args.repeat}"
          f"{f'; busy: {args.busy_procs} x {args.load}' if args.busy else ''}")
    report(measure(setting, args))
    inside, total = time_inside(args.epochs)
    share = 100 * inside / total
    print(f"inside the callback (in this process, 1 thread): {inside:.3f} s of {total:.2f} s "
          f"training, {share:.2f} %  / target {share / TARGET_PERCENT:.2f}")


if __name__ == "__main__":
    main()
