"""A user-written block trained by the PhyLL trainer behaves as the built-in layer."""

import pytest
import torch
from torch import nn

import phys
from phys.data import load
from phys.nn import DeviceLayer, rms_normalize, seeded_linear
from phys.train.phyll import PhyLLConfig, PhyLLNetwork, PhyLLTrainer


class MirrorBlock(nn.Module):
    """Written as a user would: a DeviceLayer and a linear map on [measurement, input],
    seeded in the order PhysicalLayer draws (projection, then weights)."""

    def __init__(self, device, in_features, out_features, seed):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.in_features, self.out_features = in_features, out_features
        self.physics = DeviceLayer(device, in_features, seed=gen)
        self.linear = seeded_linear(device.info.n_out + in_features, out_features, gen)

    def forward(self, x):
        m = self.physics(x)
        return torch.relu(self.linear(torch.cat([rms_normalize(m), rms_normalize(x)], dim=1)))


def _trained(block_type, data, epochs=2):
    width, blocks = data.n_features + data.n_classes, []
    for i, hidden in enumerate((48, 32)):
        dev = phys.open("cavity", n_in=40, n_out=24, n_scatterers=32, seed=i)
        blocks.append(block_type(dev, width, hidden, seed=i))
        width = hidden
    trainer = PhyLLTrainer(PhyLLNetwork(blocks, data.n_classes, seed=3),
                           PhyLLConfig(epochs=epochs, lr=3e-3, batch_size=64, seed=5))
    history = trainer.fit(data.x_train, data.y_train, data.x_test, data.y_test)
    return trainer, history


@pytest.fixture(scope="module")
def digits():
    return load("digits")


def test_user_block_trains_as_the_physical_layer(digits):
    def physical(dev, width, hidden, seed):
        return phys.PhysicalLayer(dev, width, hidden, seed=seed)

    ours, ours_history = _trained(MirrorBlock, digits)
    builtin, builtin_history = _trained(physical, digits)
    untrained = MirrorBlock(phys.open("cavity", n_in=40, n_out=24, n_scatterers=32), 74, 48, 0)
    assert not torch.allclose(ours.network.layers[0].linear.weight, untrained.linear.weight)
    acc = ours_history[-1]["test_accuracy"]
    assert acc == pytest.approx(builtin_history[-1]["test_accuracy"], abs=1e-6)
    assert acc > 0.5  # it learned: chance is 0.1
    for mine, theirs in zip(ours.network.layers, builtin.network.layers, strict=True):
        assert torch.allclose(mine.linear.weight, theirs.linear.weight, atol=1e-5)
        assert torch.allclose(mine.linear.bias, theirs.linear.bias, atol=1e-5)
    assert ours.device_usage()["device_samples"] == builtin.device_usage()["device_samples"]


def test_user_blocks_get_the_label_in_the_first_block_and_detached_inputs():
    seen = []

    class Recording(MirrorBlock):
        def forward(self, x):
            seen.append((self, x))
            return super().forward(x)

    blocks = [Recording(phys.open("cavity", n_in=9, n_out=6, n_scatterers=8), 9, 8, 0),
              Recording(phys.open("cavity", n_in=8, n_out=6, n_scatterers=8), 8, 5, 1)]
    net = PhyLLNetwork(blocks, 3)
    trainer = PhyLLTrainer(net, PhyLLConfig(negatives="all", label_scale=2.0))
    x, labels = torch.rand(4, 6), torch.tensor([0, 1, 2, 1])
    trainer.train_step(x, labels)
    (first, h0), (second, h1) = seen
    assert first is blocks[0] and second is blocks[1]
    assert h0.shape == (4 * 3, 9)  # every sample with its label, then its 2 wrong ones
    assert torch.equal(h0[::3, 6:].argmax(1), labels) and (h0[:, 6:].amax(1) == 2.0).all()
    assert not h1.requires_grad and h1.shape == (12, 8)
    assert len(trainer.layer_optimizers) == 2


def test_a_block_without_sizes_or_parameters_is_refused():
    dev = phys.open("cavity", n_in=9, n_out=4, n_scatterers=8)
    with pytest.raises(ValueError, match=r"layer 0 \(Identity\) .* in_features and out_features"):
        PhyLLNetwork([nn.Identity()], 3)
    net = PhyLLNetwork([DeviceLayer(dev)], 3)  # sizes, but nothing to train
    with pytest.raises(ValueError, match=r"block 0 \(DeviceLayer\) has no trainable"):
        PhyLLTrainer(net)
