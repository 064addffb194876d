"""Count digital FLOPs, and never count what a physical system computes.

:class:`FlopMeter` accumulates the FLOPs that ``torch.utils.flop_counter`` attributes to
the torch operations run inside :meth:`FlopMeter.count` (forward and backward: matrix
products, convolutions and the like; element-wise operations count zero).
:meth:`phys.Device.query` runs inside :func:`physical`, which pauses any active meter:
a measurement is done by the physics, not by a computer, even when a simulator stands
in for it. A simulator used *as a model* (in-silico backprop, a digital twin) is
called through ``simulate``/``vjp`` and is counted.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

__all__ = ["FlopMeter", "physical"]

_active: list[FlopMeter] = []


class FlopMeter:
    """Accumulates digital FLOPs over any number of :meth:`count` blocks.

    Examples::

        >>> import torch
        >>> meter = FlopMeter()
        >>> with meter.count():
        ...     _ = torch.ones(2, 3) @ torch.ones(3, 4)
        >>> meter.total
        48
    """

    def __init__(self) -> None:
        self.total = 0
        self._mode = None

    @contextlib.contextmanager
    def count(self) -> Iterator[FlopMeter]:
        """Count the FLOPs of the torch operations run inside the block."""
        self._start()
        _active.append(self)
        try:
            yield self
        finally:
            _active.pop()
            self._stop()

    def _start(self) -> None:
        from torch.utils.flop_counter import FlopCounterMode

        self._mode = FlopCounterMode(display=False)
        self._mode.__enter__()

    def _stop(self) -> None:
        if self._mode is not None:
            self._mode.__exit__(None, None, None)
            self.total += int(self._mode.get_total_flops())
            self._mode = None


@contextlib.contextmanager
def physical() -> Iterator[None]:
    """Pause the innermost active :class:`FlopMeter` (a physical measurement runs)."""
    meter = _active[-1] if _active else None
    if meter is None or meter._mode is None:
        yield
        return
    meter._stop()
    try:
        yield
    finally:
        meter._start()
