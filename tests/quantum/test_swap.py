"""Swapping classical layers for quantum ones keeps every shape."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from phys.quantum.creep import DataReUploadingLinear, FlippedQuanv3x3
from phys.quantum.swap import HybridNet, swap, swappable


def test_hybrid_net_levels_have_the_classical_shapes() -> None:
    x = torch.randn(3, 1, 32, 32)
    nets = [HybridNet(level) for level in (0, 1, 2)]
    shapes = []
    for net in nets:
        h, per_layer = x, []
        for layer in net:
            h = layer(h)
            per_layer.append(tuple(h.shape))
        shapes.append(per_layer)
    assert shapes[0] == shapes[1] == shapes[2]
    assert shapes[0] == [(3, 32, 30, 30), (3, 16, 28, 28), (3, 16 * 28 * 28), (3, 10)]
    kinds = [[type(m).__name__ for m in net] for net in nets]
    assert kinds[0] == ["Conv2d", "Conv2d", "Flatten", "Linear"]
    assert kinds[1] == ["FlippedQuanv3x3", "FlippedQuanv3x3", "Flatten", "Linear"]
    assert kinds[2] == ["FlippedQuanv3x3", "FlippedQuanv3x3", "Flatten",
                        "DataReUploadingLinear"]
    assert nets[2].fc.n_qubits == 7
    counts = [sum(p.numel() for p in net.parameters()) for net in nets]
    assert counts == [320 + 4624 + 125450, 512 + 7696 + 125450, 512 + 7696 + 10 * 16383 + 10]


def test_hybrid_net_three_channels_and_gradients_reach_the_input() -> None:
    net = HybridNet(2, in_channels=3, n_classes=4, image_size=8, reps=2)
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    net(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is not None for p in net.parameters())


class Nested(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(2, 4, 3, stride=2, padding=1), nn.ReLU(),
                                      nn.Conv2d(4, 4, 5), nn.Conv2d(4, 3, 3, padding="same"))
        self.head = nn.Linear(3 * 4 * 4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


def test_swap_by_name_and_kind_on_any_model_keeps_shapes() -> None:
    model = Nested()
    x = torch.randn(2, 2, 16, 16)
    assert swappable(model) == {"features.0": "conv", "features.3": "conv", "head": "linear"}
    by_name = swap(model, ["features.0", "head"], reps=2)
    assert isinstance(by_name.features[0], FlippedQuanv3x3)
    assert by_name.features[0].stride == (2, 2) and by_name.features[0].padding == (1, 1)
    assert isinstance(by_name.features[3], nn.Conv2d)
    assert isinstance(by_name.head, DataReUploadingLinear)
    assert isinstance(model.head, nn.Linear)  # not in place: the original is untouched
    assert by_name(x).shape == model(x).shape == (2, 5)
    convs = swap(model, "conv")
    assert [type(m).__name__ for m in convs.features] == ["FlippedQuanv3x3", "ReLU", "Conv2d",
                                                           "FlippedQuanv3x3"]
    assert convs(x).shape == (2, 5)
    same = swap(model, "all", reps=1, inplace=True)
    assert same is model and isinstance(model.head, DataReUploadingLinear)


def test_swap_errors_are_clear() -> None:
    with pytest.raises(ValueError, match=r"Sequential has no 3x3 nn.Conv2d to swap"):
        swap(nn.Sequential(nn.Linear(4, 2), nn.ReLU()), "conv")
    with pytest.raises(ValueError, match=r"has no nn.Linear or 3x3 nn.Conv2d to swap"):
        swap(nn.Sequential(nn.Conv2d(1, 2, 5), nn.ReLU()))
    with pytest.raises(ValueError, match=r"has no module 'body'; swappable: features.0, "):
        swap(Nested(), "body")
    with pytest.raises(ValueError, match=r"cannot swap 'features.2' \(Conv2d\): kernel_size"):
        swap(Nested(), "features.2")
    with pytest.raises(ValueError, match=r"cannot swap 'features.1' \(ReLU\)"):
        swap(Nested(), ["features.1"])
    with pytest.raises(ValueError, match="level must be 0, 1 or 2"):
        HybridNet(3)
