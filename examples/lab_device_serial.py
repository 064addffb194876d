"""Train through a lab device on a serial port, or through its stand-in.

With ``--port`` this opens the device there: a microcontroller running the firmware in
``firmware/micropython``, or a virtual lab device served by ``phys emulate`` in another
shell. If the port does not answer, a simulated cavity stands in (with a warning).
Without ``--port`` it starts the virtual lab device itself, on a pseudo-terminal, with
link faults (``--faults``, by default 0.5 % of frames dropped, corrupted, duplicated or
delayed), so the whole path - protocol, pty, retries - runs on any machine.

Both physical layers take turns on the one device. Run:

    python examples/lab_device_serial.py [--port /dev/ttyACM0] [--epochs N]
"""

import argparse
import contextlib

import phys
from phys.data import load
from phys.devices.emulator import Emulator
from phys.train.phyll import PhyLLConfig, PhyLLNetwork, PhyLLTrainer

parser = argparse.ArgumentParser()
parser.add_argument("--port", help="serial port or URL of a lab device")
parser.add_argument("--baudrate", type=int, default=1_000_000,
                    help="line rate; it sizes the timeouts (USB-CDC ignores it)")
parser.add_argument("--epochs", type=int, default=5)
parser.add_argument("--faults", default="drop=0.005,corrupt=0.005,duplicate=0.005,delay=0.005",
                    help="link faults of the virtual lab device (without --port)")
args = parser.parse_args()

with contextlib.ExitStack() as stack:
    port = args.port
    if port is None:  # a virtual lab device in this process, on a real pty
        lab = stack.enter_context(Emulator.serving(
            "cavity", n_in=16, n_out=16, seed=0, baudrate=args.baudrate, faults=args.faults))
        port = lab.port
    device = stack.enter_context(phys.open(port, baudrate=args.baudrate, fallback="cavity",
                                           n_in=16, n_out=16))
    info = device.info
    print(f"{info.name} on {port}: n_in={info.n_in} n_out={info.n_out} "
          f"range=[{info.in_min:g}, {info.in_max:g}] max_batch={info.max_batch}")

    data = load("digits")
    width, layers = data.n_features + data.n_classes, []
    for i in range(2):
        layers.append(phys.PhysicalLayer(device, width, 64, seed=i))
        width = 64
    network = PhyLLNetwork(layers, data.n_classes)
    trainer = PhyLLTrainer(network, PhyLLConfig(epochs=args.epochs, lr=1e-2,
                                                negatives="random"))
    trainer.fit(data.x_train, data.y_train)
    usage = trainer.device_usage()
    print(f"test accuracy {trainer.evaluate(data.x_test, data.y_test):.3f}, "
          f"device queries {usage['device_queries']}, "
          f"estimated lab time {usage['lab_seconds'] or 0:.0f} s")
    link = getattr(device, "link", None)
    if link is not None:
        print(f"link: {link.requests} requests, {link.resends} resent, {link.stale} late "
              f"answers and {link.bad_frames} damaged frames dropped")
