"""A lab device that stops answering mid-run: ``phys train`` saves, says so, waits for the
device to come back and goes on; when it does not come back in time, it exits naming
``--resume``, and the resumed run finishes. The devices are ``phys emulate`` on
pseudo-terminals with the unplug fault, reached through a symbolic link as a by-id path
would reach a USB device (the link moves to the device that comes back)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
import torch

from phys.devices.emulator import Emulator
from phys.devices.serial import SerialDevice, SerialDeviceError
from phys.experiment import TrainSpec
from phys.runs import train as train_run

ROOT = Path(__file__).resolve().parents[2]
PHYS = [sys.executable, "-m", "phys.cli"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
PHYSICS = {"n_in": 16, "n_out": 16, "seed": 0}
CONFIG = dict(data="digits", layers=1, hidden=32, epochs=2, negatives="random", lr=1e-2,
              seed=0)
UNPLUG = 0.01  # per frame from the host; about 95 frames an epoch here


def first_unplug(seed: int) -> int:
    """The frame at which ``phys emulate --faults unplug=UNPLUG --fault-seed seed`` is
    unplugged (its fault generator is ``random.Random(seed + 1)``, drawn once a frame)."""
    rng, frame = random.Random(seed + 1), 1
    while rng.random() >= UNPLUG:
        frame += 1
    return frame


def emulate(tmp_path: Path, name: str, fault_seed: int | None) -> tuple[subprocess.Popen, str]:
    port_file = tmp_path / f"{name}.port"
    faults = [] if fault_seed is None else ["--faults", f"unplug={UNPLUG}", "--fault-seed",
                                            str(fault_seed)]
    options = [x for k, v in PHYSICS.items() for x in ("-o", f"{k}={v}")]
    proc = subprocess.Popen([*PHYS, "emulate", "--device", "cavity", *options, *faults,
                             "--port-file", str(port_file)], cwd=ROOT, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (port_file.exists() and port_file.read_text().strip()):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    return proc, port_file.read_text().strip()


def point(link: Path, port: str) -> None:
    """Move the device link to ``port`` atomically."""
    tmp = link.with_name(link.name + ".new")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(port)
    os.replace(tmp, link)


def wait_exit(proc: subprocess.Popen, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while proc.poll() is None:
        assert time.monotonic() < deadline, "the emulator was never unplugged"
        time.sleep(0.02)


def test_device_loss_waits_then_gives_up_naming_resume_and_the_resume_finishes(
        tmp_path, one_thread):
    # unplugged while training the first epoch (the frames after HELLO are its 23 steps),
    # and again some way after coming back
    seeds = [next(s for s in range(1000) if lo <= first_unplug(s) <= hi)
             for lo, hi in ((5, 20), (60, 150))]
    lab_a, port_a = emulate(tmp_path, "a", seeds[0])
    lab_b, port_b = emulate(tmp_path, "b", seeds[1])
    lab_c, port_c = emulate(tmp_path, "c", None)
    link = tmp_path / "ttyLAB"
    point(link, port_a)
    out = tmp_path / "run"
    args = [f"--{k.replace('_', '-')}={v}" for k, v in CONFIG.items()]
    train = subprocess.Popen([*PHYS, "train", "--device", f"serial://{link}", *args,
                              "-o", "latency=0.5", "--device-wait", "5", "--no-progress",
                              "--out", str(out)], cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        wait_exit(lab_a)  # unplugged: the link leads nowhere for a while
        time.sleep(1.0)
        point(link, port_b)  # plugged in again
        wait_exit(lab_b)  # unplugged again, and this time it stays away
        _, err = train.communicate(timeout=300)
        assert train.returncode == 3, err
        assert "the device stopped answering (training epoch 1)" in err
        assert "waiting up to 5 s for the device to come back" in err
        assert "the device is back; training continues" in err
        assert err.count("saved the run to") == 2
        last = err.strip().splitlines()[-1]
        assert "did not come back within 5 s" in last
        assert last.endswith(f"continue with: phys train --resume {out}")
        assert not (out / "results.json").exists()

        point(link, port_c)
        resumed = subprocess.run([*PHYS, "train", "--resume", str(out), "--no-progress"],
                                 cwd=ROOT, env=ENV, capture_output=True, text=True,
                                 timeout=300)
        assert resumed.returncode == 0, resumed.stderr
    finally:
        for proc in (train, lab_a, lab_b, lab_c):
            if proc.poll() is None:
                proc.terminate()
                proc.communicate(timeout=30)
    results = json.loads((out / "results.json").read_text())
    assert results["epochs"] == 2 and results["checkpoints"]["resumed_from_epoch"] in (0, 1)

    direct = train_run(TrainSpec(device="cavity", device_options=PHYSICS, **CONFIG))
    # the same physics through the wire: the same training (a step cut short by the loss
    # is taken again from where it started, so only its repeated queries add samples)
    assert abs(results["test_accuracy"] - direct["test_accuracy"]) <= 0.02
    assert results["device_samples"] >= direct["device_samples"]


def test_a_port_that_fails_while_draining_is_a_lost_device(monkeypatch):
    """A pty whose other end closes between the write and ``tcdrain`` raises
    ``termios.error`` (not an ``OSError``): the driver reports it as a lost device."""
    with Emulator.serving("cavity", n_in=4, n_out=3) as lab, SerialDevice(lab.port) as dev:
        def vanished() -> None:
            raise termios.error(5, "Input/output error")

        monkeypatch.setattr(dev._port, "flush", vanished)
        with pytest.raises(SerialDeviceError, match=r"writing QUERY seq=\d+ failed \(device "
                                                    r"unplugged\?\): .*Input/output error"):
            dev.query(torch.zeros(2, 4))
