"""Firmware entry point on the Pico: the protocol over USB-CDC (MicroPython only).

Copy physproto.py, circuit.py, pico_board.py and this file to the board (e.g.
``mpremote cp physproto.py circuit.py pico_board.py main.py :``) and reset it. The
USB serial port then speaks the PHYS protocol instead of the REPL: nothing may print.
To get the REPL back, tie GP22 to GND and power the board up.
"""

import os
import select
import sys

import micropython
from machine import Pin

from physproto import Core, serve
from pico_board import PicoBoard

if Pin(22, Pin.IN, Pin.PULL_UP).value() == 0:  # GP22 tied to GND at power-up: keep the REPL
    raise SystemExit

micropython.kbd_intr(-1)  # 0x03 is data here, not Ctrl-C

core = Core(PicoBoard(), max_batch=32, max_frame=1024,
            boot=int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF)
stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
poll = select.poll()
poll.register(sys.stdin, select.POLLIN)


def read(n):
    """Up to ``n`` bytes from USB-CDC; empty after a second without any."""
    data = bytearray()
    if poll.poll(1000):
        while len(data) < n and poll.poll(0):
            data += stdin.read(1)
    return data


serve(core, read, stdout.write)
