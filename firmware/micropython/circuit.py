"""Component values of the nonlinear circuit (see ../WIRING.md) and its DC model.

Four filtered PWM outputs (the "DAC", buffered by an op-amp) drive the bases of three
NPN transistors through a resistor matrix; each transistor has an emitter resistor and a
collector load, and an ADC reads each collector. The DC model below is what
``sim_board.py`` measures when there is no board: Ebers-Moll forward-active transistor
(exponential base-emitter diode, current gain ``BETA``) with hard saturation.
MicroPython-compatible (``math`` only).
"""

import math

VCC = 3.3  # supply and ADC reference, volts
# base resistor from input i to transistor j, ohms (rows: transistors, columns: inputs)
R_BASE = (
    (220e3, 470e3, 1000e3, 680e3),
    (680e3, 220e3, 470e3, 1000e3),
    (1000e3, 680e3, 220e3, 470e3),
)
R_PULLDOWN = 100e3  # base to ground
R_COLLECTOR = 4.7e3  # collector to VCC
R_EMITTER = 1e3  # emitter to ground
BETA = 200.0  # 2N3904 current gain, typical
I_SAT = 6.7e-15  # 2N3904 saturation current, amperes
V_THERMAL = 0.02585  # kT/q at 300 K, volts
V_CE_SAT = 0.1  # collector-emitter voltage of a saturated transistor, volts

PWM_PINS = (0, 1, 2, 3)  # GP0..GP3
ADC_PINS = (26, 27, 28)  # GP26..GP28 = ADC0..ADC2
PWM_FREQ = 62500  # Hz: 125 MHz / 62.5 kHz = 2000 duty steps
PWM_STEPS = 2000
ADC_BITS = 12
SETTLE_US = 5000  # two RC stages of 4.7 kOhm x 100 nF settle to 12 bits in ~10 tau
ADC_READS = 8  # conversions averaged per channel


def thevenin(volts, row):
    """Open-circuit voltage and resistance of one base network."""
    g = 1.0 / R_PULLDOWN
    i = 0.0
    for v, r in zip(volts, row):
        g += 1.0 / r
        i += v / r
    return i / g, 1.0 / g


def base_current(v_th, r_th):
    """Solve V_th = V_BE(I_B) + I_B R_th + (BETA + 1) I_B R_E for I_B by bisection."""
    r_total = r_th + (BETA + 1.0) * R_EMITTER
    lo, hi = 0.0, max(v_th, 0.0) / r_total
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        v_be = V_THERMAL * math.log(BETA * mid / I_SAT + 1.0)
        if v_be + mid * r_total > v_th:
            hi = mid
        else:
            lo = mid
    return 0.5 * (lo + hi)


def collector_voltage(volts, row):
    """DC collector voltage of one transistor stage for the input voltages ``volts``."""
    v_th, r_th = thevenin(volts, row)
    i_b = base_current(v_th, r_th)
    i_c = BETA * i_b
    v_c = VCC - i_c * R_COLLECTOR
    v_e = (i_c + i_b) * R_EMITTER
    if v_c < v_e + V_CE_SAT:  # saturated: the collector load limits the current
        i_c = (VCC - V_CE_SAT - i_b * R_EMITTER) / (R_COLLECTOR + R_EMITTER)
        v_c = VCC - i_c * R_COLLECTOR
    return v_c
