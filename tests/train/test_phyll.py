import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import phys
from phys.data import load
from phys.layers import PhysicalLayer
from phys.nn import goodness
from phys.train.phyll import (
    PhyLLConfig,
    PhyLLNetwork,
    PhyLLTrainer,
    all_wrong_labels,
    wrong_labels,
)


@settings(max_examples=200, deadline=None)
@given(
    n_classes=st.integers(2, 20),
    labels=st.lists(st.integers(0, 19), min_size=1, max_size=64),
    seed=st.integers(0, 2**31 - 1),
)
def test_random_negative_is_never_the_true_label(n_classes, labels, seed):
    y = torch.tensor(labels) % n_classes
    neg = wrong_labels(y, n_classes, torch.Generator().manual_seed(seed))
    assert neg.shape == y.shape
    assert (neg != y).all()
    assert ((neg >= 0) & (neg < n_classes)).all()


@settings(max_examples=100, deadline=None)
@given(n_classes=st.integers(2, 12), labels=st.lists(st.integers(0, 11), min_size=1, max_size=32))
def test_all_negatives_are_every_wrong_label_once(n_classes, labels):
    y = torch.tensor(labels) % n_classes
    neg = all_wrong_labels(y, n_classes)
    assert neg.shape == (len(labels), n_classes - 1)
    for row, label in zip(neg.tolist(), y.tolist(), strict=True):
        assert sorted(row) == sorted(set(range(n_classes)) - {label})


def test_random_negatives_cover_every_wrong_label():
    y = torch.zeros(5000, dtype=torch.int64)
    neg = wrong_labels(y, 4, torch.Generator().manual_seed(0))
    counts = torch.bincount(neg, minlength=4)
    assert counts[0] == 0
    assert (counts[1:] > 1500).all()  # ~1667 each


def _network(n_features=6, n_classes=3, hidden=8, layers=2, **kw):
    width, stack = n_features + n_classes, []
    for i in range(layers):
        dev = phys.open("cavity", n_in=width, n_out=8, n_scatterers=16, seed=i)
        stack.append(PhysicalLayer(dev, width, hidden, seed=i))
        width = hidden
    return PhyLLNetwork(stack, n_classes, **kw)


class SpyTrainer(PhyLLTrainer):
    """Records the label part of every first-layer input of a training step."""

    def train_step(self, x, labels):
        net = self.network
        first = net.layers[0]
        seen = []
        original = first.measure

        def measure(h):
            seen.append(h[:, net.n_features:].clone())
            return original(h)

        first.measure = measure
        try:
            loss = super().train_step(x, labels)
        finally:
            first.measure = original
        self.seen = (seen[0], labels)
        return loss


@pytest.mark.parametrize("negatives", ["random", "all"])
def test_training_step_pairs_no_sample_with_its_own_label(negatives):
    net = _network()
    trainer = SpyTrainer(net, PhyLLConfig(negatives=negatives, epochs=1))
    x = torch.rand(10, 6)
    y = torch.randint(0, 3, (10,))
    trainer.train_step(x, y)
    embedded, labels = trainer.seen
    b = len(labels)
    rows = embedded.argmax(1).view(b, -1)  # each sample's own label, then its negatives
    pos, neg = rows[:, 0], rows[:, 1:]
    assert torch.equal(pos, labels)
    assert (neg != labels.unsqueeze(1)).all()
    assert neg.shape[1] == (2 if negatives == "all" else 1)


def test_first_layer_shares_the_feature_product_across_labels():
    net = _network(n_classes=3)
    x = torch.rand(4, 6)
    labels = torch.tensor([0, 1, 2]).repeat(4)
    embedded = net.embed(x.repeat_interleave(3, 0), labels)
    expected = net.layers[0].skip(embedded)
    assert torch.allclose(net.embedded_skip(x, labels, 3), expected, atol=1e-6)
    assert torch.allclose(net.first_layer(x, labels, 3), net.layers[0](embedded), atol=1e-6)


def test_softmax_loss_with_one_negative_is_the_contrast_loss():
    g_pos, g_neg = torch.rand(7), torch.rand(7, 1)
    losses = [PhyLLTrainer(_network(), PhyLLConfig(loss=kind)).layer_loss(g_pos, g_neg)
              for kind in ("contrast", "softmax")]
    assert torch.allclose(*losses)
    g_neg = torch.rand(7, 4)  # several negatives: the two losses differ
    losses = [PhyLLTrainer(_network(), PhyLLConfig(loss=kind)).layer_loss(g_pos, g_neg)
              for kind in ("contrast", "softmax")]
    assert not torch.allclose(*losses)


def test_only_digital_weights_change_and_inputs_are_detached_between_layers():
    net = _network()
    trainer = PhyLLTrainer(net, PhyLLConfig(epochs=1))
    buffers = {k: v.clone() for k, v in net.named_buffers()}
    w0 = [layer.linear.weight.clone() for layer in net.layers]
    trainer.train_step(torch.rand(8, 6), torch.randint(0, 3, (8,)))
    for k, v in net.named_buffers():
        assert torch.equal(v, buffers[k]), k
    for before, layer in zip(w0, net.layers, strict=True):
        assert not torch.equal(before, layer.linear.weight)
    assert len(trainer.layer_optimizers) == 2
    # each optimiser owns exactly its layer's parameters
    for opt, layer in zip(trainer.layer_optimizers, net.layers, strict=True):
        owned = {id(p) for g in opt.param_groups for p in g["params"]}
        assert owned == {id(p) for p in layer.parameters()}


def test_goodness_prediction_costs_one_query_per_class_and_linear_one():
    net = _network(n_classes=3)
    dev = net.layers[0].device
    x = torch.rand(5, 6)
    s0 = dev.stats.samples
    net.predict(x, "goodness")
    assert dev.stats.samples - s0 == 5 * 3
    s0 = dev.stats.samples
    net.predict(x, "linear")
    assert dev.stats.samples - s0 == 5


def _separable(seed):
    """240 samples of 6 features in [0, 1] around 3 random centres, and their labels."""
    gen = torch.Generator().manual_seed(seed)
    centers = torch.rand(3, 6, generator=gen)
    y = torch.randint(0, 3, (240,), generator=gen)
    return (centers[y] + 0.05 * torch.randn(240, 6, generator=gen)).clamp(0, 1), y


@pytest.mark.parametrize("goodness,loss,lr", [
    ("cosine", "contrast", 3e-3),
    ("cosine", "softmax", 3e-3),
    ("meansquare", "threshold", 1e-2),  # mean(y^2) must first grow to the threshold
    ("meansquare", "contrast", 3e-3),
])
def test_every_goodness_and_loss_learns_a_separable_task(goodness, loss, lr):
    x, y = _separable(seed=0)
    net = _network(goodness=goodness, hidden=16)
    trainer = PhyLLTrainer(net, PhyLLConfig(epochs=15, goodness=goodness, loss=loss, lr=lr,
                                            batch_size=32))
    trainer.fit(x[:200], y[:200])
    assert trainer.evaluate(x[200:], y[200:]) >= 0.9


def test_dropout_hides_a_seeded_fraction_of_outputs_in_training_only():
    y = torch.rand(400, 50) + 0.1
    net = _network()
    dropped = PhyLLTrainer(net, PhyLLConfig(dropout=0.3, seed=4))._drop(y)
    zeroed = (dropped == 0).float().mean()
    assert 0.27 < zeroed < 0.33
    kept = dropped != 0
    assert torch.allclose(dropped[kept], y[kept] / 0.7)  # inverted dropout
    again = PhyLLTrainer(_network(), PhyLLConfig(dropout=0.3, seed=4))._drop(y)
    assert torch.equal(dropped, again)
    assert PhyLLTrainer(net, PhyLLConfig())._drop(y) is y
    # training losses see the drop, evaluation does not
    x, labels = torch.rand(16, 6), torch.randint(0, 3, (16,))
    plain, drop = (PhyLLTrainer(_network(), PhyLLConfig(dropout=p, lr=1e-12)) for p in (0, 0.5))
    assert plain.train_step(x, labels) != drop.train_step(x, labels)
    assert plain.evaluate(x, labels) == drop.evaluate(x, labels)


def test_training_with_dropout_learns_a_separable_task():
    x, y = _separable(seed=1)
    trainer = PhyLLTrainer(_network(hidden=32), PhyLLConfig(
        epochs=15, loss="softmax", lr=3e-3, batch_size=32, dropout=0.3))
    trainer.fit(x[:200], y[:200])
    assert trainer.evaluate(x[200:], y[200:]) >= 0.9


def test_digits_reaches_stated_accuracy_quickly():
    """The embedded default task: 2 cavity layers on digits, 8 epochs, >= 0.95 test."""
    data = load("digits")
    width, layers = data.n_features + data.n_classes, []
    for i in range(2):
        dev = phys.open("cavity", n_in=width, n_out=64, seed=i)
        layers.append(PhysicalLayer(dev, width, 256, seed=i))
        width = 256
    net = PhyLLNetwork(layers, data.n_classes)
    trainer = PhyLLTrainer(net, PhyLLConfig(epochs=8, lr=1e-3))
    history = trainer.fit(data.x_train, data.y_train, data.x_test, data.y_test)
    assert history[-1]["test_accuracy"] >= 0.95
    usage = trainer.device_usage()
    assert usage["device_samples"] > 0 and usage["device_queries"] > 0
    assert history[-1]["device_samples"] == usage["device_samples"]


def test_linear_readout_learns_too():
    """The cheap readout (1 query per sample instead of 10) learns, below goodness."""
    data = load("digits")
    dev = phys.open("cavity", n_in=74, n_out=32, n_scatterers=32)
    net = PhyLLNetwork([PhysicalLayer(dev, 74, 128)], 10)
    trainer = PhyLLTrainer(net, PhyLLConfig(epochs=8, lr=3e-3, readout="linear"))
    trainer.fit(data.x_train, data.y_train)
    assert trainer.evaluate(data.x_test, data.y_test) >= 0.8


def test_checkpoint_round_trip_with_weights_only(tmp_path):
    net = _network()
    trainer = PhyLLTrainer(net, PhyLLConfig(epochs=1))
    x, y = torch.rand(20, 6), torch.randint(0, 3, (20,))
    trainer.fit(x, y)
    path = tmp_path / "c.pt"
    torch.save(trainer.state_dict(), path)
    state = torch.load(path, weights_only=True)
    fresh = PhyLLTrainer(_network(), PhyLLConfig(epochs=1))
    fresh.load_state_dict(state)
    assert fresh.epoch == 1
    for a, b in zip(fresh.network.state_dict().values(), net.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_bad_training_data_is_refused_before_any_query():
    net = _network()
    trainer = PhyLLTrainer(net, PhyLLConfig(epochs=1))
    dev = net.layers[0].device
    bad_x = torch.rand(4, 6)
    bad_x[1, 2] = float("nan")
    cases = [
        (bad_x, torch.zeros(4, dtype=torch.int64), "NaN"),
        (torch.rand(4, 5), torch.zeros(4, dtype=torch.int64), r"\(N, 6\)"),
        (torch.rand(4, 6), torch.full((4,), 3), "labels"),
        (torch.rand(4, 6), torch.zeros(3, dtype=torch.int64), "labels"),
    ]
    for x, y, match in cases:
        with pytest.raises(ValueError, match=match):
            trainer.fit(x, y)
    assert dev.stats.queries == 0


def test_config_and_network_validation():
    with pytest.raises(ValueError, match="goodness"):
        PhyLLConfig(goodness="energy")
    with pytest.raises(ValueError, match="negatives"):
        PhyLLConfig(negatives="shuffled")
    with pytest.raises(ValueError, match="epochs"):
        PhyLLConfig(epochs=0)
    for bad in (-0.1, 1.0, float("nan")):
        with pytest.raises(ValueError, match="dropout"):
            PhyLLConfig(dropout=bad)
    dev = phys.open("cavity", n_in=9, n_out=4, n_scatterers=8)
    a = PhysicalLayer(dev, 9, 5)
    b = PhysicalLayer(phys.open("cavity", n_in=7, n_out=4, n_scatterers=8), 7, 5)
    with pytest.raises(ValueError, match="layer 1 takes 7 inputs"):
        PhyLLNetwork([a, b], 3)
    with pytest.raises(ValueError, match="at least one layer"):
        PhyLLNetwork([], 3)


@pytest.mark.parametrize("subset,expected", [(20, 20), (None, 50), (500, 50)])
def test_training_accuracy_is_measured_on_a_fixed_subset(subset, expected):
    net = _network(n_classes=3)
    trainer = PhyLLTrainer(net, PhyLLConfig(epochs=2, batch_size=25,
                                            train_eval_samples=subset))
    x, y = torch.rand(50, 6), torch.randint(0, 3, (50,))
    trainer.fit(x, y)
    # each epoch tries 3 labels on each evaluated sample, in both layers
    assert trainer.device_usage()["eval_device_samples"] == 2 * expected * 3 * 2
    with pytest.raises(ValueError, match="train_eval_samples"):
        PhyLLConfig(train_eval_samples=0)


def test_the_config_goodness_is_the_one_trained_with():
    x, labels = torch.rand(8, 6), torch.randint(0, 3, (8,))
    losses = {}
    for kind in ("cosine", "meansquare"):
        net = _network(layers=1)  # the network leaves goodness to the config
        trainer = PhyLLTrainer(net, PhyLLConfig(goodness=kind, negatives="all"))
        assert net.goodness_kind == kind
        rows = torch.cat([labels.unsqueeze(1), all_wrong_labels(labels, 3)], dim=1).reshape(-1)
        with torch.no_grad():
            out = net.first_layer(x, rows, 3)
        g = (goodness.meansquare(out) if kind == "meansquare"
             else goodness.cosine(out, net.xi0)).view(8, 3)
        expected = goodness.contrast_loss(g[:, 0], g[:, 1:], trainer.config.theta)
        losses[kind] = trainer.train_step(x, labels)
        assert losses[kind] == pytest.approx(float(expected), rel=1e-5)
    assert losses["cosine"] != pytest.approx(losses["meansquare"], rel=1e-3)


def test_the_config_label_scale_is_the_one_embedded():
    net = _network()
    assert net.label_scale == PhyLLConfig().label_scale  # one default, the config's
    PhyLLTrainer(net, PhyLLConfig(label_scale=1.5))
    assert net.label_scale == 1.5
    embedded = net.embed(torch.rand(2, 6), torch.tensor([0, 2]))
    assert embedded[:, 6:].amax(1).tolist() == [1.5, 1.5]


def test_a_network_built_with_other_options_than_the_config_is_refused():
    with pytest.raises(ValueError, match="label_scale: the network was built with 1.0 but the "
                                         "config has 3.0"):
        PhyLLTrainer(_network(label_scale=1.0), PhyLLConfig())
    with pytest.raises(ValueError, match="goodness: the network was built with 'meansquare'"):
        PhyLLTrainer(_network(goodness="meansquare"), PhyLLConfig(goodness="cosine"))
    agreed = _network(label_scale=2.0, goodness="meansquare")
    PhyLLTrainer(agreed, PhyLLConfig(label_scale=2.0, goodness="meansquare"))
    assert (agreed.label_scale, agreed.goodness_kind) == (2.0, "meansquare")


def test_bad_network_options_are_refused_with_their_names():
    with pytest.raises(ValueError, match="goodness must be one of cosine, meansquare, got "
                                         "'bogus'"):
        _network(goodness="bogus")
    with pytest.raises(ValueError, match="label_scale must be >= 0.0"):
        _network(label_scale=-1.0)
    with pytest.raises(ValueError, match="label_scale must be a number"):
        _network(label_scale="3")
    with pytest.raises(ValueError, match="n_classes must be an int >= 2"):
        PhyLLNetwork([PhysicalLayer(phys.open("cavity", n_in=9, n_out=4), 9, 5)], 1)


def test_a_physics_dominant_network_learns_through_the_measurements_alone(tmp_path):
    from phys.experiment import TrainSpec
    from phys.runs import train

    result = train(TrainSpec(skip=False, epochs=3, layers=1, hidden=64), out=tmp_path / "r",
                   tensorboard=False, progress=False)
    assert result["test_accuracy"] > 0.5  # chance: 0.1
