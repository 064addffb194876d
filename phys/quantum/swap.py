"""Swap classical layers for quantum ones of the same shapes, one kind at a time.

``swap(model, names)`` replaces named ``nn.Linear`` modules with
:class:`~phys.quantum.creep.DataReUploadingLinear` and 3x3 ``nn.Conv2d`` modules with
:class:`~phys.quantum.creep.FlippedQuanv3x3`; :class:`HybridNet` is the model of "Let the
Quantum Creep In" (arXiv 2409.17583) at replacement level 0, 1 or 2.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Iterable

from torch import nn

from phys.quantum.creep import DataReUploadingLinear, FlippedQuanv3x3

__all__ = ["KINDS", "HybridNet", "swap", "swappable"]

#: Words that select modules by kind instead of by name.
KINDS = ("conv", "linear", "all")


def _conv_problem(conv: nn.Conv2d) -> str | None:
    """Why ``conv`` has no :class:`FlippedQuanv3x3` of the same shape, or ``None``."""
    if tuple(conv.kernel_size) != (3, 3):
        return f"kernel_size {tuple(conv.kernel_size)} is not 3x3"
    if tuple(conv.dilation) != (1, 1) or conv.groups != 1:
        return "dilation and groups must be 1"
    if conv.padding_mode != "zeros":
        return f"padding_mode {conv.padding_mode!r} is not 'zeros'"
    return None


def _kind(module: nn.Module) -> str | None:
    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, nn.Conv2d) and _conv_problem(module) is None:
        return "conv"
    return None


def swappable(model: nn.Module) -> dict[str, str]:
    """Names of the modules :func:`swap` can replace, mapped to their kind
    (``"linear"`` or ``"conv"``)."""
    return {name: kind for name, module in model.named_modules()
            if name and (kind := _kind(module)) is not None}


def _quantum(module: nn.Module, reps: int, gain: float | str) -> nn.Module:
    if isinstance(module, nn.Linear):
        new: nn.Module = DataReUploadingLinear(module.in_features, module.out_features, reps,
                                               gain=gain)
    else:
        padding = module.padding
        if isinstance(padding, str):  # "same" (stride 1) or "valid"
            padding = (1, 1) if padding == "same" else (0, 0)
        new = FlippedQuanv3x3(module.in_channels, module.out_channels,
                              stride=tuple(module.stride), padding=tuple(padding))
    return new.to(module.weight.device)


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def _resolve(model: nn.Module, name: str) -> list[str]:
    """The swappable module names that ``name`` (a module name or a kind) stands for."""
    available = swappable(model)
    modules = dict(model.named_modules())
    if name in KINDS:
        found = [n for n, kind in available.items() if name in ("all", kind)]
        if not found:
            what = {"conv": "3x3 nn.Conv2d", "linear": "nn.Linear",
                    "all": "nn.Linear or 3x3 nn.Conv2d"}[name]
            raise ValueError(f"swap: {type(model).__name__} has no {what} to swap")
        return found
    if name not in modules or not name:
        raise ValueError(f"swap: {type(model).__name__} has no module {name!r}; "
                         f"swappable: {', '.join(available) or '(none)'}")
    if name not in available:
        module = modules[name]
        why = (_conv_problem(module) if isinstance(module, nn.Conv2d)
               else "only nn.Linear and 3x3 nn.Conv2d have quantum versions")
        raise ValueError(f"swap: cannot swap {name!r} ({type(module).__name__}): {why}")
    return [name]


def swap(model: nn.Module, names: str | Iterable[str] = "all", *, reps: int = 10,
         gain: float | str = 1.0, inplace: bool = False) -> nn.Module:
    """Replace classical layers of ``model`` with quantum layers of the same shapes.

    ``nn.Linear(in, out)`` becomes ``DataReUploadingLinear(in, out, reps)`` and a 3x3
    ``nn.Conv2d`` (any stride and zero padding) becomes ``FlippedQuanv3x3`` with the same
    channels, stride and padding; inputs and outputs keep their shapes. The quantum layers
    start from their own initialisation.

    Args:
        model: Any module.
        names: Module names as in ``model.named_modules()``, or the kinds ``"conv"``,
            ``"linear"`` or ``"all"``; a string or several.
        reps: Repetitions of each :class:`DataReUploadingLinear`.
        gain: Factor on each :class:`DataReUploadingLinear`'s probabilities (a number, or
            ``"uniform"`` for ``2**n_qubits``).
        inplace: Change ``model`` itself instead of a deep copy.

    Returns:
        The model with the layers swapped.

    Raises:
        ValueError: a name that is not a module of ``model``, a named module that cannot be
            swapped (saying why), or a kind with no module in ``model``.

    Examples::

        >>> from torch import nn
        >>> net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
        >>> [type(m).__name__ for m in swap(net, "conv")]
        ['FlippedQuanv3x3', 'Flatten', 'Linear']
    """
    wanted = [names] if isinstance(names, str) else list(names)
    if not wanted:
        raise ValueError("swap: no module names given")
    chosen = [n for name in wanted for n in _resolve(model, name)]
    target = model if inplace else copy.deepcopy(model)
    originals = dict(target.named_modules())
    for name in dict.fromkeys(chosen):
        _set(target, name, _quantum(originals[name], reps, gain))
    return target


class HybridNet(nn.Sequential):
    """The model of "Let the Quantum Creep In" at a replacement level.

    ``Conv2d(C, 32, 3) -> Conv2d(32, 16, 3) -> Flatten -> Linear(16 (S-4)^2, n_classes)``,
    no activations, no normalisation; ``S = 32`` (MNIST padded by 2). Level 1 swaps both
    convolutions for :class:`FlippedQuanv3x3`, level 2 also the linear layer for
    :class:`DataReUploadingLinear` (7 qubits for 32x32 inputs).

    Args:
        level: 0 (classical), 1 or 2.
        in_channels: Image channels ``C``.
        n_classes: Outputs.
        image_size: Side ``S`` of the square input images.
        reps: Repetitions of the quantum linear layer (level 2).
        gain: Factor on the quantum linear layer's probabilities (level 2): a number, or
            ``"uniform"`` (128 for 7 qubits); see :class:`DataReUploadingLinear`.

    Shape:
        - Input: ``(B, C, S, S)``.
        - Output: ``(B, n_classes)`` logits.

    Examples::

        >>> import torch
        >>> HybridNet(1, image_size=12)(torch.rand(2, 1, 12, 12)).shape
        torch.Size([2, 10])
    """

    LEVELS = {0: (), 1: ("conv1", "conv2"), 2: ("conv1", "conv2", "fc")}

    def __init__(self, level: int = 0, *, in_channels: int = 1, n_classes: int = 10,
                 image_size: int = 32, reps: int = 10, gain: float | str = 1.0) -> None:
        if level not in self.LEVELS:
            raise ValueError(f"HybridNet: level must be 0, 1 or 2, got {level!r}")
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 5:
            raise ValueError(f"HybridNet: image_size must be an int >= 5, got {image_size!r}")
        side = image_size - 4
        super().__init__(OrderedDict(
            conv1=nn.Conv2d(in_channels, 32, 3),
            conv2=nn.Conv2d(32, 16, 3),
            flatten=nn.Flatten(),
            fc=nn.Linear(16 * side * side, n_classes),
        ))
        self.level = level
        if level:
            swap(self, self.LEVELS[level], reps=reps, gain=gain, inplace=True)

    def extra_repr(self) -> str:
        return f"level={self.level}"
