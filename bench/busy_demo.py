"""`make demo` on an idle machine and on a machine whose every core is busy.

Target: a busy/idle wall-time ratio of at most 1.5. Runs the demo
(`phys train --device cavity --data digits --out TMP`, as `make demo` does) in a
subprocess, process start and imports included, once with the machine as it is and once
while `--busy` other processes (default: one per CPU, `os.cpu_count()`) keep every core
busy: each a Python process spinning in a loop (`--load spin`, the default) or one
running 1-thread 256×256 matrix products (`--load matmul`); they start 0.5 s before the
measured run and are killed after it (each also stops on its own after `--timeout`).

Each setting runs the same command with its own flags and environment:

- `default`: the command as a user types it;
- `threads=N`: with `--threads N` (`threads` alone: the cores available to this process);
- `old`: the behaviour before `phys train` chose its threads, reproduced through the
  environment: `OMP_WAIT_POLICY=ACTIVE` and `OMP_NUM_THREADS` = torch's own thread count.

Thread variables of this process's environment (`OMP_NUM_THREADS`, `OMP_WAIT_POLICY`,
`MKL_NUM_THREADS`, `GOMP_SPINCOUNT`) are removed before a setting's own are added, so
every setting starts from a clean shell. Prints, per setting, the median over `--repeat`
runs of the idle and busy wall times and their ratio. It never fails on time.

    .venv/bin/python bench/busy_demo.py [--settings old default threads=1] [--epochs 20]
        [--repeat 1] [--load spin|matmul] [--busy N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

TARGET_RATIO = 1.5
PROG = Path(sys.argv[0]).name
THREAD_VARS = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS", "GOMP_SPINCOUNT")
DEMO = ["train", "--device", "cavity", "--data", "digits"]
LOADS = {
    "spin": "import time\nend = time.monotonic() + {t}\nwhile time.monotonic() < end:\n    pass\n",
    "matmul": ("import time, torch\ntorch.set_num_threads(1)\na = torch.randn(256, 256)\n"
               "end = time.monotonic() + {t}\nwhile time.monotonic() < end:\n    a @ a\n"),
}


@dataclass
class Setting:
    """One way of running the demo: extra ``phys train`` flags and environment."""

    name: str
    flags: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Run:
    """One finished (or timed-out) demo run."""

    wall: float
    seconds: float | None = None
    test_accuracy: float | None = None
    event_files: int = 0
    timed_out: bool = False


def clean_env() -> dict[str, str]:
    """This process's environment without the thread variables."""
    return {k: v for k, v in os.environ.items() if k not in THREAD_VARS}


def cores_available() -> int:
    """Cores this process may run on (its affinity where the OS tells it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def torch_default_threads() -> int:
    """torch's own intra-op thread count in a fresh process with a clean environment."""
    out = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                         env=clean_env(), capture_output=True, text=True, check=True, timeout=120)
    return int(out.stdout.strip())


def parse_setting(text: str) -> Setting:
    """``default``, ``old``, ``threads`` or ``threads=N`` as a :class:`Setting`."""
    if text == "default":
        return Setting("default")
    if text == "old":
        return Setting("old", env={"OMP_WAIT_POLICY": "ACTIVE",
                                   "OMP_NUM_THREADS": str(torch_default_threads())})
    if text == "threads":
        text = f"threads={cores_available()}"
    name, _, value = text.partition("=")
    if name == "threads" and value.isdigit() and int(value) >= 1:
        return Setting(text, flags=["--threads", value])
    raise ValueError(f"setting {text!r}: expected default, old, threads or threads=N (N >= 1)")


def require_flags(flags: set[str]) -> None:
    """Fail before any run when ``phys train --help`` lacks one of ``flags``."""
    if not flags:
        return
    out = subprocess.run([sys.executable, "-m", "phys.cli", "train", "--help"],
                         env=clean_env(), capture_output=True, text=True, timeout=120)
    missing = sorted(f for f in flags if f not in out.stdout)
    if out.returncode != 0 or missing:
        raise SystemExit(f"{PROG}: phys train has no {', '.join(missing) or 'help'} here, "
                         "which this measurement needs")


@contextmanager
def busy(count: int, load: str, timeout: float) -> Iterator[None]:
    """``count`` processes keeping a core busy each, for the duration of the block."""
    code = LOADS[load].format(t=timeout)
    procs = [subprocess.Popen([sys.executable, "-c", code], env=clean_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for _ in range(count)]
    try:
        time.sleep(0.5 if load == "spin" else 3.0)  # matmul: let torch import first
        yield
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()


def run_demo(setting: Setting, out: Path, epochs: int | None, timeout: float,
             extra: list[str] | None = None) -> Run:
    """The demo with ``setting`` into the fresh directory ``out``; wall time in seconds."""
    cmd = [sys.executable, "-m", "phys.cli", *DEMO, "--out", str(out), *setting.flags,
           *(extra or [])]
    if epochs is not None:
        cmd += ["--epochs", str(epochs)]
    env = {**clean_env(), **setting.env}
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return Run(wall=time.perf_counter() - t0, timed_out=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{PROG}: {' '.join(cmd)} exited {proc.returncode}:\n"
                         + proc.stderr[-2000:])
    results = json.loads((out / "results.json").read_text())
    events = sum(1 for _ in out.rglob("events.out.tfevents*"))
    return Run(wall, results.get("seconds"), results.get("test_accuracy"), events)


def median(runs: list[Run], key: str = "wall") -> float | None:
    """Median of ``key`` over the runs that finished; None when none did."""
    values = [getattr(r, key) for r in runs if not r.timed_out and getattr(r, key) is not None]
    return statistics.median(values) if values else None


def fmt(value: float | None, spec: str = ".1f") -> str:
    return "—" if value is None else format(value, spec)


def measure(settings: list[Setting], args: argparse.Namespace) -> dict[str, dict[str, list]]:
    """Idle and busy runs of every setting, interleaved over the repeats."""
    runs: dict[str, dict[str, list]] = {s.name: {"idle": [], "busy": []} for s in settings}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeat):
            for setting in settings:
                for phase in ("idle", "busy"):
                    out = Path(tmp) / f"{setting.name}-{phase}-{rep}"
                    if phase == "idle":
                        run = run_demo(setting, out, args.epochs, args.timeout)
                    else:
                        with busy(args.busy, args.load, args.timeout + 30):
                            run = run_demo(setting, out, args.epochs, args.timeout)
                    runs[setting.name][phase].append(run)
                    print(f"  {setting.name:>12} {phase}: {fmt(run.wall)} s"
                          f"{' (timed out)' if run.timed_out else ''}, test accuracy "
                          f"{fmt(run.test_accuracy, '.4f')}", flush=True)
    return runs


def report(runs: dict[str, dict[str, list]]) -> None:
    """The table: setting, idle s, busy s, busy/idle and the ratio to the target."""
    print(f"\n{'setting':>12} {'idle s':>8} {'busy s':>8} {'busy/idle':>10} "
          f"{'/ target':>9}  test accuracy idle / busy")
    for name, phases in runs.items():
        idle, hot = median(phases["idle"]), median(phases["busy"])
        ratio = hot / idle if idle and hot else None
        accs = " / ".join(fmt(median(phases[p], "test_accuracy"), ".4f") for p in phases)
        late = sum(r.timed_out for p in phases.values() for r in p)
        print(f"{name:>12} {fmt(idle):>8} {fmt(hot):>8} {fmt(ratio, '.2f'):>10} "
              f"{fmt(ratio / TARGET_RATIO if ratio else None, '.2f'):>9}  {accs}"
              f"{f'  ({late} timed out)' if late else ''}")
    print(f"target busy/idle <= {TARGET_RATIO} (last column <= 1 meets it)")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--settings", nargs="+", default=["old", "default", "threads=1"],
                   help="default, old, threads, threads=N (default: old default threads=1)")
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs of the demo (default: phys train's, as make demo)")
    p.add_argument("--repeat", type=int, default=1, help="runs per setting and phase (median)")
    p.add_argument("--busy", type=int, default=os.cpu_count() or 1,
                   help="busy processes (default: os.cpu_count())")
    p.add_argument("--load", choices=sorted(LOADS), default="spin",
                   help="what each busy process runs (default: spin)")
    p.add_argument("--timeout", type=float, default=900.0,
                   help="seconds a run may take before it is stopped (default 900)")
    return p


def main(argv: list[str] | None = None) -> None:
    p = parser()
    args = p.parse_args(argv)
    if args.repeat < 1 or args.busy < 1 or args.timeout <= 0 or (args.epochs or 1) < 1:
        p.error("--repeat, --busy, --epochs and --timeout must be positive")
    try:
        settings = [parse_setting(s) for s in args.settings]
    except ValueError as err:
        p.error(f"--settings: {err}")
    if len({s.name for s in settings}) < len(settings):
        p.error("--settings: a setting is named twice")
    require_flags({f for s in settings for f in s.flags if f.startswith("--")})
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{os.cpu_count()} cpus ({cores_available()} available), load average {load:.2f}; "
          f"busy: {args.busy} x {args.load}; repeat {args.repeat}")
    for s in settings:
        print(f"  {s.name}: flags {' '.join(s.flags) or '-'}; env "
              f"{' '.join(f'{k}={v}' for k, v in s.env.items()) or '-'}")
    report(measure(settings, args))


if __name__ == "__main__":
    main()
