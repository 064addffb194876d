"""Run the firmware core on a pseudo-terminal under CPython, with the circuit model.

    python firmware/micropython/pty_runner.py     # prints the port, serves until Ctrl-C

Then ``phys.open(PORT)`` talks to the same protocol core the Pico runs, measuring
``sim_board.SimBoard``. ``serve`` is what the host's tests use.
"""

import os
import select
import sys
import threading
import tty

from physproto import Core
from sim_board import SimBoard


def open_pty():
    """``(master fd, slave fd, path)`` of a new raw pseudo-terminal."""
    master, slave = os.openpty()
    tty.setraw(slave)
    return master, slave, os.ttyname(slave)


def serve(core, master, stop):
    """Feed what the host writes to ``core`` and write its answers, until ``stop`` is set
    or the pty is closed."""
    while not stop.is_set():
        try:
            if not select.select([master], [], [], 0.05)[0]:
                continue
            data = os.read(master, 4096)
        except OSError:
            return
        for out in core.feed(data):
            view = memoryview(out)
            while view:
                try:
                    view = view[os.write(master, view):]
                except BlockingIOError:
                    select.select([], [master], [], 0.05)
                except OSError:
                    return


def main():
    master, slave, path = open_pty()
    print(path, flush=True)
    try:
        serve(Core(SimBoard()), master, threading.Event())
    except KeyboardInterrupt:
        pass
    finally:
        os.close(master)
        os.close(slave)
    return 0


if __name__ == "__main__":
    sys.exit(main())
