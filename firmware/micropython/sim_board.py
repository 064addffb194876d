"""A board without hardware: the circuit of ../WIRING.md computed from its DC model.

Same interface as ``pico_board.PicoBoard``, so the firmware core runs unchanged under
CPython (tests, ``pty_runner.py``) or on a bare Pico for bench-top checks. The DAC is
quantised to the PWM duty steps and the ADC to 12 bits, as on the board; there is no
noise, so answers are deterministic.
"""

import circuit

SETTLE_MAX_US = 100000


class SimBoard:
    NAME = "pico-transistors (model)"
    N_IN = len(circuit.PWM_PINS)
    N_OUT = len(circuit.ADC_PINS)
    IN_MIN, IN_MAX = 0.0, circuit.VCC
    OUT_MIN, OUT_MAX = 0.0, circuit.VCC
    STOCHASTIC = False
    PARAMS = [{"index": 0, "name": "settle_us", "size": 1, "min": 0, "max": SETTLE_MAX_US}]

    def __init__(self):
        self.power_up()

    @property
    def SAMPLE_TIME(self):  # noqa: N802 - the board interface names it like a constant
        return self.settle_us * 1e-6

    def power_up(self):
        self.settle_us = circuit.SETTLE_US

    def set(self, index, values):
        self.settle_us = int(values[0])

    def measure(self, volts):
        steps, full = circuit.PWM_STEPS, (1 << circuit.ADC_BITS) - 1
        dac = [round(v / circuit.VCC * steps) * circuit.VCC / steps for v in volts]
        out = []
        for row in circuit.R_BASE:
            v = circuit.collector_voltage(dac, row)
            out.append(round(v / circuit.VCC * full) * circuit.VCC / full)
        return out


class WireBoard(SimBoard):
    """The same interface with no model: outputs are the first ``N_OUT`` inputs, so what
    a batch costs is the protocol core's own work (benchmarks)."""

    NAME = "pico-transistors (wire)"

    def measure(self, volts):
        return volts[:self.N_OUT]
