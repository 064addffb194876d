import torch

import phys
from phys.flops import FlopMeter, physical


def test_counts_matmul_forward_and_backward():
    meter = FlopMeter()
    w = torch.randn(5, 4, requires_grad=True)
    with meter.count():
        (torch.randn(3, 5) @ w).sum().backward()
    assert meter.total == 2 * (2 * 3 * 5 * 4)  # forward + weight gradient


def test_device_queries_are_not_digital_but_simulations_are():
    dev = phys.open("cavity", n_in=6, n_out=4, n_scatterers=16)
    x = torch.rand(10, 6)
    meter = FlopMeter()
    with meter.count():
        dev.query(x)
    assert meter.total == 0
    with meter.count():
        dev.simulate(x)
    assert meter.total > 0


def test_physical_pauses_and_resumes_across_blocks():
    meter = FlopMeter()
    a = torch.randn(4, 4)
    with meter.count():
        a @ a
        with physical():
            a @ a
        a @ a
    assert meter.total == 2 * (2 * 4 * 4 * 4)
    with physical():  # no active meter: nothing happens
        a @ a
