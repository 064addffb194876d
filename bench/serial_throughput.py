"""Serial link throughput as a share of the line rate, over a pseudo-terminal.

The virtual lab device (``phys emulate --realtime``) runs in its own process and paces
every frame at the modelled baud rate (10 bits per byte, so the line carries at most
baud/10 bytes/s); its measurements take no modelled time, so the link is the only limit.
The host driver sends batches of 1 .. 256 rows of 16 float32 values and gets 16 back.
Reported per batch: bytes on the line both ways (frames with all overhead) per second as
a share of baud/10, and the same for the values alone. Target: >= 90 % at batch >= 64.

    .venv/bin/python bench/serial_throughput.py [--bauds 115200 1000000] [--seconds 2]
"""

from __future__ import annotations

import argparse
import time

import torch
from _common import machine
from _serial import emulate

from phys.devices.serial import SerialDevice

TARGET = 0.90
N = 16  # values per row, each way


def measure(port: str, baud: int, batch: int, seconds: float, min_queries: int) -> dict:
    dev = SerialDevice(port, baudrate=baud, latency=0.2)
    x = torch.rand(batch, N) * 2 - 1
    dev.query(x)  # warm-up
    sent, received, queries = dev.link.bytes_sent, dev.link.bytes_received, 0
    t0 = time.perf_counter()
    while queries < min_queries or time.perf_counter() - t0 < seconds:
        dev.query(x)
        queries += 1
    elapsed = time.perf_counter() - t0
    wire = dev.link.bytes_sent - sent + dev.link.bytes_received - received
    payload = queries * batch * 2 * N * 4
    resends = dev.link.resends
    dev.close()
    line = baud / 10
    return {"queries": queries, "wire": wire / elapsed / line,
            "payload": payload / elapsed / line, "resends": resends,
            "per_query_ms": 1e3 * elapsed / queries}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bauds", type=int, nargs="+", default=[115200, 1_000_000])
    parser.add_argument("--batches", type=int, nargs="+",
                        default=[1, 2, 4, 8, 16, 32, 64, 128, 256])
    parser.add_argument("--seconds", type=float, default=2.0,
                        help="time per point (at least --min-queries queries)")
    parser.add_argument("--min-queries", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # the host only packs bytes: extra threads would spin
    print(f"{machine()}; pty, phys emulate --realtime, cavity n_in=n_out={N} "
          f"(n_scatterers=16), float32 values")
    worst_big = 1.0
    for baud in args.bauds:
        with emulate("--realtime", "--baud", str(baud), "--max-batch", "256", "-o", f"n_in={N}",
                     "-o", f"n_out={N}", "-o", "n_scatterers=16") as served:
            print(f"\n{baud} baud (line rate {baud / 10:,.0f} bytes/s)")
            print(f"{'batch':>6} {'queries':>8} {'ms/query':>9} {'line share':>11} "
                  f"{'values share':>13} {'resends':>8}")
            for batch in args.batches:
                r = measure(served.port, baud, batch, args.seconds, args.min_queries)
                print(f"{batch:>6} {r['queries']:>8} {r['per_query_ms']:>9.2f} "
                      f"{r['wire']:>10.1%} {r['payload']:>13.1%} {r['resends']:>8}")
                if batch >= 64:
                    worst_big = min(worst_big, r["wire"])
    print(f"\nlowest line share at batch >= 64: {worst_big:.1%}; "
          f"ratio to target {TARGET:.0%}: {worst_big / TARGET:.2f}")


if __name__ == "__main__":
    main()
