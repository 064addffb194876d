"""SCPI queries per second through the pty responder against the line rate of the replies.

The SCPI responder (``python -m phys.devices.scpi_responder``) runs in its own process
and paces every byte at the baud rate (10 bits per byte, each way); PyVISA with the
pyvisa-py backend queries it over the pseudo-terminal as an ``ASRL`` resource. For each
query: queries per second, and the limit the line sets on the replies alone,
``baud / (10 * reply bytes)``; the ratio of the two is printed. The commands take line
time too (half duplex, as a SCPI exchange is), so a ratio below 1 is expected: the share
the commands would take is printed beside it. Then whole ``visa:`` batches (rows/s).

    .venv/bin/python bench/scpi_rate.py [--baud 115200] [--seconds 2]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from _common import ROOT, machine

import phys

N_IN, N_OUT = 16, 16
RIG = (ROOT / "examples" / "scpi_rig.toml").read_text()


def start(baud: int) -> tuple[subprocess.Popen, dict[str, str]]:
    cmd = [sys.executable, "-m", "phys.devices.scpi_responder", "-o", f"n_in={N_IN}",
           "-o", f"n_out={N_OUT}", "-o", "n_scatterers=16", "--baudrate", str(baud),
           "--seconds", "600"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    resources = dict(proc.stdout.readline().strip().split(": ") for _ in range(2))
    return proc, resources


def rate(resource: str, setup: list[str], command: str, binary: bool, baud: int,
         seconds: float) -> dict:
    import pyvisa

    inst = pyvisa.ResourceManager("@py").open_resource(
        resource, read_termination="\n", write_termination="\n", timeout=20000)
    for line in setup:
        inst.write(line)
    reply = inst.query_binary_values(command, container=bytes, datatype="B") if binary \
        else inst.query(command)
    size = (len(reply) + len(f"#{len(str(len(reply)))}{len(reply)}") if binary
            else len(reply)) + 1  # the terminator
    n, t0 = 0, time.perf_counter()
    while n < 3 or time.perf_counter() - t0 < seconds:
        if binary:
            inst.query_binary_values(command, datatype="B", container=bytes)
        else:
            inst.query(command)
        n += 1
    qps = n / (time.perf_counter() - t0)
    inst.close()
    limit = baud / (10 * size)
    both = baud / (10 * (size + len(command) + 1))
    return {"qps": qps, "bytes": size, "limit": limit, "ratio": qps / limit,
            "ratio_both": qps / both}


def rows_per_second(resources: dict[str, str], changes: list[tuple[str, str]], batch: int,
                    seconds: float) -> float:
    text = RIG
    for old, new in [("n = 4", f"n = {N_IN}"), ("n = 3", f"n = {N_OUT}"),
                     ("max_batch = 16", f"max_batch = {batch}"), *changes]:
        text = text.replace(old, new, 1)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rig.toml"
        path.write_text(text)
        with phys.open(f"visa:{resources['gen']}", rig=str(path),
                       resources={"scope": resources["scope"]}) as dev:
            x = torch.rand(batch, N_IN) * 2 - 1
            dev.query(x)
            n, t0 = 0, time.perf_counter()
            while n < 2 or time.perf_counter() - t0 < seconds:
                dev.query(x)
                n += 1
            return n * batch / (time.perf_counter() - t0)


BATCHED = [('batch = "row"', 'batch = "instrument"'),
           ('mode = "each"', 'mode = "vector"\nencoding = "binary"'),
           ('set = "SOUR{i}:VOLT {value:.6f}"', 'set = "SOUR:DATA {values}"')]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baud", type=int, default=115200)
    parser.add_argument("--seconds", type=float, default=2.0, help="time per point")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(f"{machine()}; pty responder at {args.baud} baud, cavity {N_IN} -> {N_OUT}, "
          f"pyvisa-py")
    proc, res = start(args.baud)
    try:
        one_row = [f"SOUR:LIST {','.join(['0.5'] * N_IN)}", "INIT"]
        batch = [f"SOUR:LIST {','.join(['0.5'] * N_IN * 64)}", "INIT"]
        points = [("*IDN?", res["gen"], [], False), ("FETC? (1 row)", res["scope"], one_row,
                  False), ("FETC:DATA? (64 rows)", res["scope"], batch, True)]
        for label, resource, setup, binary in points:
            command = label.split(" ")[0]
            r = rate(resource, setup, command, binary, args.baud, args.seconds)
            print(f"{label:22s} {r['qps']:8.1f} queries/s, reply {r['bytes']:5d} bytes, "
                  f"line limit {r['limit']:8.1f}/s: ratio {r['ratio']:.3f} "
                  f"(with the command's bytes: {r['ratio_both']:.3f})")
        print(f"visa: rows/s, row by row (16 SOUR<i>:VOLT each): "
              f"{rows_per_second(res, [], 16, args.seconds):.1f}")
        print(f"visa: rows/s, batch of 64 as one block each way: "
              f"{rows_per_second(res, BATCHED, 64, args.seconds):.1f}")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
