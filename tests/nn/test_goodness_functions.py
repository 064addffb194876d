import math

import pytest
import torch

from phys.nn import goodness


def test_cosine_and_meansquare_by_hand():
    y = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    xi = torch.tensor([1.0, 0.0])
    assert torch.allclose(goodness.cosine(y, xi), torch.tensor([0.6, 1.0]))
    assert torch.allclose(goodness.cosine(5 * y, xi), goodness.cosine(y, xi))  # scale-blind
    assert torch.allclose(goodness.meansquare(y), torch.tensor([12.5, 0.5]))


def test_losses_by_hand():
    g_pos, g_neg = torch.tensor([0.5, 0.0]), torch.tensor([[0.0, 0.5], [0.25, 0.0]])

    def softplus(v):
        return math.log1p(math.exp(v))

    contrast = sum(softplus(-2 * (p - n)) for p, row in zip([0.5, 0.0], [[0.0, 0.5], [0.25, 0.0]],
                                                           strict=True) for n in row) / 4
    assert goodness.contrast_loss(g_pos, g_neg, theta=2.0).item() == pytest.approx(contrast)
    ce = [-math.log(math.exp(2 * p) / (math.exp(2 * p) + sum(math.exp(2 * n) for n in row)))
          for p, row in zip([0.5, 0.0], [[0.0, 0.5], [0.25, 0.0]], strict=True)]
    assert goodness.softmax_loss(g_pos, g_neg, theta=2.0).item() == pytest.approx(sum(ce) / 2)
    hinton = (softplus(1 - 0.5) + softplus(1 - 0.0)) / 2 + sum(
        softplus(n - 1) for n in (0.0, 0.5, 0.25, 0.0)) / 4
    assert goodness.threshold_loss(g_pos, g_neg, threshold=1.0).item() == pytest.approx(hinton)


def test_softmax_with_one_negative_is_contrast():
    g_pos, g_neg = torch.rand(7), torch.rand(7, 1)
    assert torch.allclose(goodness.softmax_loss(g_pos, g_neg, 4.0),
                          goodness.contrast_loss(g_pos, g_neg, 4.0))


@pytest.mark.parametrize("loss", [goodness.contrast_loss, goodness.softmax_loss,
                                  goodness.threshold_loss])
def test_losses_refuse_mismatched_shapes(loss):
    with pytest.raises(ValueError, match=r"g_pos must be \(B,\) and g_neg \(B, K\)"):
        loss(torch.rand(4), torch.rand(4), 1.0)
    with pytest.raises(ValueError, match="g_neg"):
        loss(torch.rand(4), torch.rand(3, 2), 1.0)
