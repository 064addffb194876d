"""The Raspberry Pi Pico (RP2040) board: PWM "DACs" in, ADCs out (MicroPython only).

Wiring, parts and the circuit are in ../WIRING.md. Each input value is a voltage
0 .. 3.3 V set as a PWM duty cycle on GP0..GP3; a two-stage RC filter and an op-amp
follower turn it into a steady voltage that drives the transistor stages. After the
settle time the ADCs on GP26..GP28 read the three collector voltages.
"""

import time

from machine import ADC, PWM, Pin

import circuit

SETTLE_MAX_US = 100000


class PicoBoard:
    NAME = "pico-transistors"
    N_IN = len(circuit.PWM_PINS)
    N_OUT = len(circuit.ADC_PINS)
    IN_MIN, IN_MAX = 0.0, circuit.VCC
    OUT_MIN, OUT_MAX = 0.0, circuit.VCC
    STOCHASTIC = True  # ADC noise
    PARAMS = [{"index": 0, "name": "settle_us", "size": 1, "min": 0, "max": SETTLE_MAX_US}]

    def __init__(self):
        self.pwm = []
        for pin in circuit.PWM_PINS:
            p = PWM(Pin(pin))
            p.freq(circuit.PWM_FREQ)
            p.duty_u16(0)
            self.pwm.append(p)
        self.adc = [ADC(Pin(pin)) for pin in circuit.ADC_PINS]
        self.power_up()

    @property
    def SAMPLE_TIME(self):
        return self.settle_us * 1e-6 + 2e-6 * circuit.ADC_READS * self.N_OUT

    def power_up(self):
        self.settle_us = circuit.SETTLE_US
        for p in self.pwm:
            p.duty_u16(0)

    def set(self, index, values):
        self.settle_us = int(values[0])

    def measure(self, volts):
        for p, v in zip(self.pwm, volts):
            p.duty_u16(int(v / circuit.VCC * 65535 + 0.5))
        time.sleep_us(self.settle_us)
        out = []
        for adc in self.adc:
            total = 0
            for _ in range(circuit.ADC_READS):
                total += adc.read_u16()
            out.append(total / circuit.ADC_READS / 65535 * circuit.VCC)
        return out
