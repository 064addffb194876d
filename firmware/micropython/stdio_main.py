"""The firmware with the circuit model (``sim_board``) on a byte stream.

The same protocol core and board as on the Pico, with the serial line given as two
functions: under CPython ``python stdio_main.py [--dtype f32] [--boot N] [--board
wire]`` serves on its stdin and stdout; under MicroPython ``wasm/run.mjs`` feeds :func:`make_core`'s core
with the bytes of Node's stdin and writes its frames to Node's stdout.
"""

import sys

from physproto import Core, serve
from sim_board import SimBoard, WireBoard

BOARDS = {"sim": SimBoard, "wire": WireBoard}


def make_core(boot=0, dtype="i16", board="sim"):
    """The firmware's protocol core on a model board (``"sim"``: the circuit; ``"wire"``:
    outputs = inputs), set up as ``main.py`` sets it up on the Pico."""
    return Core(BOARDS[board](), max_batch=32, max_frame=1024, boot=boot, dtype=dtype)


def run(read, write, boot=0, dtype="i16", board="sim"):
    """Serve a model board on ``read``/``write`` (see ``physproto.serve``)."""
    serve(make_core(boot, dtype, board), read, write)


def main(argv):
    import argparse
    import os

    parser = argparse.ArgumentParser(description="the firmware on stdin/stdout")
    parser.add_argument("--dtype", default="i16", choices=("i16", "f32"))
    parser.add_argument("--boot", type=int, default=0)
    parser.add_argument("--board", default="sim", choices=sorted(BOARDS))
    args = parser.parse_args(argv)

    def read(n):
        return os.read(0, n) or None

    def write(frame):
        view = memoryview(frame)
        while view:
            view = view[os.write(1, view):]

    run(read, write, boot=args.boot, dtype=args.dtype, board=args.board)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
