import pytest
import torch

from phys import registry
from phys.experiment import TrainSpec, open_layer_device
from phys.layers import PhysicalLayer


@pytest.mark.parametrize("name", sorted(registry.available()))
def test_every_registered_device_opens_at_a_layer_size(name):
    """phys train opens each device with n_in = features + classes of digits (74)."""
    with open_layer_device(name, 74, 16, seed=3, options={}) as dev:
        assert (dev.info.n_in, dev.info.n_out) == (74, 16)
        layer = PhysicalLayer(dev, 74, 8)
        assert layer(torch.rand(3, 74)).shape == (3, 8)


def test_spec_validation():
    with pytest.raises(ValueError,
                       match="trainer must be one of phyll, backprop, pat, readout, got 'sgd'"):
        TrainSpec(trainer="sgd")
    with pytest.raises(ValueError, match="twin must be one of surrogate, simulator"):
        TrainSpec(twin="oracle")
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        TrainSpec(epochs=0)
    with pytest.raises(ValueError, match="activation must be one of relu, abs, got 'tanh'"):
        TrainSpec(activation="tanh")


def test_spec_activations_are_the_layers_own():
    from phys import layers
    from phys.experiment import ACTIVATIONS, _open_devices, prepare

    assert set(ACTIVATIONS) == set(layers._ACTIVATIONS)
    spec = TrainSpec(layers=2, hidden=6, measurements=4, activation="abs",
                     device_options={"n_scatterers": 8})
    opened = []
    built = _open_devices(spec, prepare(spec), 9, opened)
    try:
        assert [layer.activation for layer in built] == ["abs", "abs"]
        x = torch.randn(5, 9)
        z = built[0].digital(built[0].measure(x), x)
        assert (z > 0).all()  # |.| has no dead zone, unlike relu
    finally:
        for dev in opened:
            dev.close()
