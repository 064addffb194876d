import pytest
import torch

from phys import data


def test_digits_split_is_deterministic_stratified_and_scaled():
    a, b = data.load("digits"), data.load("digits")
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert a.x_train.shape == (1437, 64) and a.x_test.shape == (360, 64)
    assert a.x_train.dtype == torch.float32 and a.y_train.dtype == torch.int64
    assert a.n_classes == 10 and a.n_features == 64
    assert float(a.x_train.min()) == 0.0 and float(a.x_train.max()) == 1.0
    counts = torch.bincount(a.y_test, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # stratified: ~36 per class
    # no sample is in both splits
    train_rows = {tuple(r) for r in a.x_train.tolist()}
    overlap = sum(tuple(r) in train_rows for r in a.x_test.tolist())
    assert overlap <= 2  # the digits set holds a few exact duplicate images


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown dataset 'nope'.*digits"):
        data.load("nope")
    assert "digits" in data.names()
