"""The firmware under MicroPython: rows per second and bytes of heap per batch.

The firmware (``firmware/micropython``: protocol core and model board) runs in its own
process on a pseudo-terminal, under MicroPython 1.27 (the WebAssembly build, run by
Node.js; installed from the npm registry on first use) and under CPython for the ratio.
``SerialDevice`` sends batches of ``--batch`` rows of 4 int16 inputs and gets 3 back,
for ``--seconds`` per point. Two boards: ``sim`` computes the transistor circuit's DC
model (the bench-top stand-in for the Pico's ADCs), ``wire`` returns its inputs, so its
numbers are the protocol core's own cost. Heap (MicroPython only, ``gc.mem_alloc``):
bytes allocated while answering one batch (collection held off), and bytes in use after
collection, interpreter and firmware included (a Pico has about 190 kB of heap; this
build grows its heap on demand, so its free count says nothing about a board's).
Target: the live heap fits a Pico with room to spare (<= 64 KiB).

    .venv/bin/python bench/micropython_firmware.py [--batch 32] [--seconds 3]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time

import torch
from _common import ROOT, machine

from phys.devices.serial import SerialDevice

RUNNER = ROOT / "firmware" / "micropython" / "wasm" / "runner.py"
TARGET_LIVE = 64 * 1024  # bytes


def load_runner():
    spec = importlib.util.spec_from_file_location("physnn_firmware_runner", RUNNER)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def measure(runner, runtime: str, board: str, batch: int, seconds: float) -> dict:
    with runner.FirmwareProcess(runtime, board=board, mem=runtime == "micropython") as fw:
        t0 = time.perf_counter()
        dev = SerialDevice(fw.port, latency=0.5)
        opened = time.perf_counter() - t0
        x = torch.rand(batch, 4, generator=torch.Generator().manual_seed(0)) * 3.3
        dev.query(x)  # warm-up
        rows, t0 = 0, time.perf_counter()
        while rows == 0 or time.perf_counter() - t0 < seconds:
            dev.query(x)
            rows += batch
        elapsed = time.perf_counter() - t0
        dev.close()
        deadline = time.monotonic() + 2
        while fw.mem_on and len(fw.mem) < rows // batch + 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        mem = [m for m in fw.mem if m[0] == batch]
    out = {"rows_per_s": rows / elapsed, "ms_per_batch": 1e3 * elapsed * batch / rows,
           "open_s": opened}
    if mem:
        out.update(allocated=statistics.median(m[1] for m in mem),
                   live=max(m[2] for m in mem), batches=len(mem))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32, help="rows per query (max 32)")
    parser.add_argument("--seconds", type=float, default=3.0, help="time per point")
    parser.add_argument("--boards", nargs="+", default=["sim", "wire"],
                        choices=["sim", "wire"])
    args = parser.parse_args(argv)
    if not 1 <= args.batch <= 32:
        parser.error("--batch must be 1..32 (the firmware's max_batch)")
    torch.set_num_threads(1)
    runner = load_runner()
    try:
        runner.tools()
    except runner.NodeMissing as err:
        print(f"not measured: {err}")
        return
    t0 = time.perf_counter()
    cached = (runner.install_folder() / ".complete").exists()
    runner.install()
    print(f"{machine()}; MicroPython {runner.pinned_version()} (WebAssembly, Node.js), "
          f"install {'cached' if cached else 'fresh'} {time.perf_counter() - t0:.2f} s; "
          f"batch {args.batch} rows of 4 int16 in, 3 out; {args.seconds:g} s per point")
    print(f"{'board':>5} {'runtime':>11} {'rows/s':>9} {'ms/batch':>9} {'open s':>7} "
          f"{'alloc B/batch':>14} {'live B':>8}")
    worst_live = 0
    for board in args.boards:
        r = {rt: measure(runner, rt, board, args.batch, args.seconds) for rt in runner.RUNTIMES}
        for rt, m in r.items():
            heap = (f"{m['allocated']:>14,.0f} {m['live']:>8,}" if "live" in m
                    else f"{'-':>14} {'-':>8}")
            print(f"{board:>5} {rt:>11} {m['rows_per_s']:>9,.0f} {m['ms_per_batch']:>9.2f} "
                  f"{m['open_s']:>7.2f} {heap}")
        ratio = r["micropython"]["rows_per_s"] / r["cpython"]["rows_per_s"]
        alloc = r["micropython"].get("allocated", float("nan"))
        print(f"{board:>5} MicroPython / CPython rows/s: {ratio:.2f}; "
              f"{alloc / args.batch:,.0f} B allocated per row")
        worst_live = max(worst_live, r["micropython"].get("live", 0))
    print(f"\nlargest live heap after a batch: {worst_live:,} B; ratio to target "
          f"{TARGET_LIVE:,} B: {worst_live / TARGET_LIVE:.2f}")


if __name__ == "__main__":
    main()
