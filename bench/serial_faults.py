"""The host driver through a faulty link: queries completed, wrong results accepted,
samples measured twice, and time lost, at 1 % and 10 % of each fault.

The virtual lab device (``phys emulate``, virtual time, 1,000,000 baud) runs in its own
process with one kind of fault at a time; ``drop``, ``corrupt``, ``duplicate`` and
``delay`` strike frames in both directions, ``reset`` restarts the device before it
handles a request. Delayed frames arrive ``--delay-seconds`` late, longer than the host's
timeout, so each one is a late answer. Every query sends 4 distinct rows to a cavity
(n_in=4, n_out=3) and every answer is compared with the simulator queried directly: a
"wrong" answer is one the host accepted that differs. "Measured twice" is what the device
measured beyond the samples the host received (resends answered from the device's
memory do not count). Time lost is the wall time beyond the fault-free run.

``--mixed`` runs every kind at once instead, at each rate and for each of ``--seeds``
(the emulator's fault seed), with the device's ``gain`` and ``offset`` set (the host
restores them after each restart): an answer is right only if it equals the simulator
times the gain plus the offset. Time lost is against the fault-free run of the same
queries with the same settings.

    .venv/bin/python bench/serial_faults.py [--queries 10000] [--rates 0.01 0.1]
    .venv/bin/python bench/serial_faults.py --mixed [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import time

import torch
from _common import machine
from _serial import emulate

import phys
from phys.devices.serial import SerialDevice, SerialDeviceError

KINDS = ("drop", "corrupt", "duplicate", "delay", "reset")
PHYSICS = {"n_in": 4, "n_out": 3, "seed": 0}
ROWS = 4
#: Settings in force with --mixed (float32 values, so the expected answers are exact).
SETTINGS = {"gain": [1.5, -2.0, 0.75], "offset": [0.25, -0.5, 1.0]}


def run(faults: str, args: argparse.Namespace, batches: list[torch.Tensor],
        expected: list[torch.Tensor], seed: int = 0, settings: bool = False) -> dict:
    options = [x for k, v in PHYSICS.items() for x in ("-o", f"{k}={v}")]
    wrong = failed = 0
    with emulate("--baud", "1000000", "--faults", faults, "--fault-seed", str(seed),
                 *options) as served:
        dev = SerialDevice(served.port, baudrate=1_000_000, latency=args.latency,
                           retries=args.retries)
        for name, values in SETTINGS.items() if settings else ():
            dev.set(name, values)
        t0 = time.perf_counter()
        for x, expect in zip(batches, expected, strict=True):
            try:
                y = dev.query(x)
            except SerialDeviceError:
                failed += 1
                continue
            wrong += not torch.equal(y, expect)
        elapsed = time.perf_counter() - t0
        link, samples = dev.link, dev.stats.samples
        dev.close()
    return {"completed": len(batches) - failed, "failed": failed, "wrong": wrong,
            "seconds": elapsed, "twice": (served.measured or 0) - samples,
            "measured": served.measured, "resends": link.resends, "stale": link.stale,
            "bad": link.bad_frames, "reboots": link.reboots}


def mixed(args: argparse.Namespace, batches: list[torch.Tensor],
          expected: list[torch.Tensor]) -> None:
    """Every fault kind at once, settings in force, over several fault seeds."""
    gain, offset = (torch.tensor(SETTINGS[k], dtype=torch.float64) for k in SETTINGS)
    expected = [(y.double() * gain + offset).float() for y in expected]
    print(f"{'faults':>22} {'seed':>5} {'completed':>10} {'failed':>7} {'wrong':>6} "
          f"{'twice':>6} {'seconds':>8} {'lost s':>7} {'resends':>8} {'late':>6} "
          f"{'damaged':>8} {'restarts':>9}")
    base = run("", args, batches, expected, settings=True)["seconds"]
    print(f"{'none':>22} {'-':>5} {args.queries:>10} {'':>7} {'':>6} {'':>6} {base:>8.1f}",
          flush=True)
    total_wrong = 0
    for rate in args.rates:
        faults = ",".join(f"{k}={rate}" for k in KINDS)
        totals = {"failed": 0, "wrong": 0, "lost": 0.0}
        for seed in args.seeds:
            r = run(f"{faults},delay_seconds={args.delay_seconds}", args, batches, expected,
                    seed=seed, settings=True)
            lost = r["seconds"] - base
            totals["failed"] += r["failed"]
            totals["wrong"] += r["wrong"]
            totals["lost"] += lost
            print(f"{'all kinds at ' + format(rate, '.0%'):>22} {seed:>5} {r['completed']:>10} "
                  f"{r['failed']:>7} {r['wrong']:>6} {r['twice']:>6} {r['seconds']:>8.1f} "
                  f"{lost:>7.1f} {r['resends']:>8} {r['stale']:>6} {r['bad']:>8} "
                  f"{r['reboots']:>9}", flush=True)
        n = len(args.seeds)
        print(f"at {rate:.0%}, {n} seeds x {args.queries} queries: {totals['wrong']} wrong, "
              f"{totals['failed']} failed, time lost {totals['lost'] / n:.1f} s per run "
              f"({totals['lost'] / n / base:.0%} of the fault-free {base:.1f} s)", flush=True)
        total_wrong += totals["wrong"]
    print(f"wrong results accepted in all runs: {total_wrong} (must be 0)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--rates", type=float, nargs="+", default=[0.01, 0.1])
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    parser.add_argument("--latency", type=float, default=0.02,
                        help="host's fixed timeout allowance, s (default 0.02)")
    parser.add_argument("--retries", type=int, default=10)
    parser.add_argument("--delay-seconds", type=float, default=0.05)
    parser.add_argument("--mixed", action="store_true",
                        help="every kind at once, gain and offset set, over --seeds")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="fault seeds of the --mixed runs (default: 0 1 2)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # tiny batches: extra threads only spin on shared cores

    gen = torch.Generator().manual_seed(0)
    batches = [torch.rand(ROWS, PHYSICS["n_in"], generator=gen) * 2 - 1
               for _ in range(args.queries)]
    reference = phys.open("cavity", **PHYSICS)
    expected = [reference.query(x) for x in batches]
    print(f"{machine()}; {args.queries} queries of {ROWS} rows per run, host latency "
          f"{args.latency} s, {args.retries} retries, delay {args.delay_seconds} s")
    if args.mixed:
        return mixed(args, batches, expected)
    print(f"{'fault':>10} {'rate':>5} {'completed':>10} {'failed':>7} {'wrong':>6} "
          f"{'twice':>6} {'seconds':>8} {'lost s':>7} {'resends':>8} {'late':>6} "
          f"{'damaged':>8} {'restarts':>9}")
    base = None
    runs = [("none", 0.0)] + [(k, r) for r in args.rates for k in args.kinds]
    total_wrong = 0
    for kind, rate in runs:
        faults = "" if kind == "none" else f"{kind}={rate},delay_seconds={args.delay_seconds}"
        r = run(faults, args, batches, expected)
        base = r["seconds"] if base is None else base
        total_wrong += r["wrong"]
        print(f"{kind:>10} {rate:>5.0%} {r['completed']:>10} {r['failed']:>7} "
              f"{r['wrong']:>6} {r['twice']:>6} {r['seconds']:>8.1f} "
              f"{r['seconds'] - base:>7.1f} {r['resends']:>8} {r['stale']:>6} "
              f"{r['bad']:>8} {r['reboots']:>9}", flush=True)
    print(f"wrong results accepted in all runs: {total_wrong} (must be 0)")


if __name__ == "__main__":
    main()
