"""Checks of what :meth:`~phys.Device.query` answers: shapes, dtypes, where, and counts."""

from __future__ import annotations

import math

import torch

from phys.device import Device
from phys.testing.core import Broken, CheckContext, check, expect

__all__ = ["check_dtype", "check_empty", "check_finite", "check_no_grad",
           "check_range_inclusive", "check_result_device", "check_shape", "check_single",
           "check_stats"]


@check("shape")
def check_shape(device: Device, context: CheckContext) -> None:
    """A ``(B, n_in)`` batch gives a tensor ``(B, n_out)``."""
    info = device.info
    y = device.query(context.inputs(info, 5))
    expect(isinstance(y, torch.Tensor), f"query returned {type(y).__name__}")
    expect(tuple(y.shape) == (5, info.n_out),
           f"(5, {info.n_in}) gave {tuple(y.shape)}, expected (5, {info.n_out})")


@check("dtype")
def check_dtype(device: Device, context: CheckContext) -> None:
    """Answers are float32, for float32 and float64 inputs alike."""
    x = context.inputs(device.info, 5)
    for dtype in (torch.float32, torch.float64):
        y = device.query(x.to(dtype))
        expect(y.dtype == torch.float32, f"{dtype} input gave {y.dtype} output")


@check("finite")
def check_finite(device: Device, context: CheckContext) -> None:
    """Answers to in-range inputs have no NaN or Inf."""
    y = device.query(context.inputs(device.info, 5))
    expect(bool(torch.isfinite(y).all()), "output has NaN or Inf")


@check("single")
def check_single(device: Device, context: CheckContext) -> None:
    """One input vector ``(n_in,)`` gives one output vector ``(n_out,)``."""
    info = device.info
    y = device.query(context.inputs(info, 1)[0])
    expect(tuple(y.shape) == (info.n_out,),
           f"({info.n_in},) gave {tuple(y.shape)}, expected ({info.n_out},)")


@check("no-grad")
def check_no_grad(device: Device, context: CheckContext) -> None:
    """Answers carry no autograd graph, even for inputs that require grad."""
    x = context.inputs(device.info, 5).requires_grad_(True)
    y = device.query(x)
    expect(not y.requires_grad and y.grad_fn is None,
           "query output carries an autograd graph")


def _input_devices() -> list[torch.device]:
    places = [torch.device("cpu")]
    if torch.cuda.is_available():
        places.append(torch.device("cuda", torch.cuda.current_device()))
    return places


@check("result-device")
def check_result_device(device: Device, context: CheckContext) -> None:
    """Answers come back float32 on the input's torch device (each of cpu and, where there
    is one, cuda), for batches and single vectors."""
    x = context.inputs(device.info, 3)
    for place in _input_devices():
        for given in (x.to(place), x[0].to(place)):
            y = device.query(given)
            expect(y.device == place,
                   f"an input on {place} gave an answer on {y.device}")
            expect(y.dtype == torch.float32,
                   f"an input on {place} gave a {y.dtype} answer")


@check("range-inclusive")
def check_range_inclusive(device: Device, context: CheckContext) -> None:
    """Inputs exactly at ``in_min`` and ``in_max`` are accepted."""
    info = device.info
    edges = torch.stack([torch.full((info.n_in,), info.in_min),
                         torch.full((info.n_in,), info.in_max)])
    try:
        y = device.query(edges)
    except ValueError as err:
        raise Broken(f"in_min / in_max rows refused: {err}") from err
    expect(tuple(y.shape) == (2, info.n_out),
           f"in_min / in_max rows gave {tuple(y.shape)}")


@check("empty")
def check_empty(device: Device, context: CheckContext) -> None:
    """An empty batch ``(0, n_in)`` gives ``(0, n_out)``."""
    info = device.info
    y = device.query(torch.zeros(0, info.n_in))
    expect(tuple(y.shape) == (0, info.n_out),
           f"(0, {info.n_in}) gave {tuple(y.shape)}, expected (0, {info.n_out})")


@check("stats")
def check_stats(device: Device, context: CheckContext) -> None:
    """``stats`` counts one query per round trip of at most ``max_batch`` rows, every
    sample, and non-negative wall seconds."""
    info = device.info
    stats = device.stats
    queries, samples = stats.queries, stats.samples
    device.query(context.inputs(info, 5))
    stats = device.stats
    expect(stats.samples == samples + 5,
           f"5 rows counted {stats.samples - samples} samples")
    round_trips = math.ceil(5 / info.max_batch)
    expect(stats.queries == queries + round_trips,
           f"5 rows with max_batch={info.max_batch} counted {stats.queries - queries} "
           f"queries, expected {round_trips}")
    expect(stats.wall_seconds >= 0, f"wall_seconds is {stats.wall_seconds}")
