"""Creep layers: same maths as written per patch / per circuit, unitary through training."""

from __future__ import annotations

import functools
import itertools

import pytest
import torch

from phys.quantum.creep import DataReUploadingLinear, FlippedQuanv3x3, quanv_direct
from phys.quantum.unitary import (
    hermitian_exp,
    pauli_strings,
    pauli_sum,
    reupload,
    unitarity_error,
)

C128 = torch.complex128
SIGMA = {"I": torch.eye(2, dtype=C128),
         "X": torch.tensor([[0, 1], [1, 0]], dtype=C128),
         "Y": torch.tensor([[0, -1j], [1j, 0]], dtype=C128),
         "Z": torch.tensor([[1, 0], [0, -1]], dtype=C128)}


def paulis(n: int) -> torch.Tensor:
    """Every non-identity n-qubit Pauli string as a dense matrix, by Kronecker products."""
    strings = ["".join(s) for s in itertools.product("IXYZ", repeat=n)][1:]
    return torch.stack([functools.reduce(torch.kron, [SIGMA[c] for c in s]) for s in strings])


def expm_unitary(theta: torch.Tensor, n: int) -> torch.Tensor:
    """exp(i sum theta_k P_k) by torch.linalg.matrix_exp in complex128."""
    return torch.linalg.matrix_exp(1j * torch.einsum("...k,kij->...ij", theta.to(C128),
                                                     paulis(n)))


def test_pauli_strings_and_sum_match_kronecker_products() -> None:
    assert pauli_strings(1) == ["X", "Y", "Z"]
    assert pauli_strings(2)[:5] == ["IX", "IY", "IZ", "XI", "XX"]
    for n in (1, 2, 3):
        theta = torch.randn(2, 4 ** n - 1, dtype=torch.float64)
        expected = torch.einsum("bk,kij->bij", theta.to(C128), paulis(n))
        assert torch.allclose(pauli_sum(theta, n), expected, atol=1e-12)


def _sym_exp(a: torch.Tensor, t: float = 0.7) -> torch.Tensor:
    return hermitian_exp((a + a.mH) / 2, t)


@pytest.mark.parametrize("dtype", [torch.float64, C128])
def test_hermitian_exp_values_and_gradients_even_for_equal_eigenvalues(dtype) -> None:
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(2, 4, 4, dtype=dtype, generator=gen)
    degenerate = torch.zeros(2, 4, 4, dtype=dtype)
    degenerate[1, :2, :2] = 1.0  # eigenvalues 0, 0, 0, 2 and 0, 0, 0, 0
    for m in (a, degenerate):
        h = (m + m.mH) / 2
        assert torch.allclose(_sym_exp(m), torch.linalg.matrix_exp(0.7j * h.to(C128)),
                              atol=1e-12)
        assert torch.autograd.gradcheck(_sym_exp, (m.clone().requires_grad_(True),))


def _conv_reference(x: torch.Tensor, layer: FlippedQuanv3x3) -> torch.Tensor:
    """The layer as the paper writes it, one patch and one channel pair at a time."""
    psi = expm_unitary(layer.weight.detach().double(), 2)[..., 0]  # (O, C, 4)
    batch, channels, height, width = x.shape
    out = torch.zeros(batch, layer.out_channels, height - 2, width - 2, dtype=torch.float64)
    for b, o, i, j in itertools.product(range(batch), range(layer.out_channels),
                                        range(height - 2), range(width - 2)):
        total = 0.0
        for c in range(channels):
            m = torch.zeros(4, 4, dtype=torch.float64)
            m[:3, :3] = x[b, c, i:i + 3, j:j + 3]
            h = ((m + m.T) / 2).to(C128)
            total += (psi[o, c].conj() @ h @ psi[o, c]).real
        out[b, o, i, j] = total / channels + layer.bias[o].item()
    return out


def test_flipped_quanv_equals_the_per_patch_expectation() -> None:
    layer = FlippedQuanv3x3(2, 3)
    x = torch.randn(2, 2, 5, 6, dtype=torch.float64)
    expected = _conv_reference(x, layer)
    assert torch.allclose(layer(x.float()).double(), expected, atol=1e-5)
    assert torch.allclose(quanv_direct(x.float(), layer).double(), expected, atol=1e-5)


@pytest.mark.parametrize("options", [{}, {"stride": 2}, {"padding": 1},
                                     {"stride": (2, 1), "padding": (0, 2)}])
def test_flipped_quanv_fast_path_equals_direct_values_and_gradients(options: dict) -> None:
    layer = FlippedQuanv3x3(3, 4, **options)
    x = torch.randn(2, 3, 9, 8)
    ref = torch.nn.Conv2d(3, 4, 3, **options)
    fast_x, direct_x = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    fast, direct = layer(fast_x), quanv_direct(direct_x, layer)
    assert fast.shape == direct.shape == ref(x).shape
    assert torch.allclose(fast, direct, atol=1e-5)
    g = torch.randn_like(fast)
    grads_fast = torch.autograd.grad((fast * g).sum(), [fast_x, layer.weight, layer.bias])
    grads_direct = torch.autograd.grad((direct * g).sum(), [direct_x, layer.weight, layer.bias])
    for a, b in zip(grads_fast, grads_direct, strict=True):
        assert torch.allclose(a, b, atol=1e-4), float((a - b).abs().max())


def _linear_reference(x: torch.Tensor, layer: DataReUploadingLinear,
                      weight: torch.Tensor) -> torch.Tensor:
    """The data re-uploading circuit with torch.linalg.matrix_exp and Kronecker Paulis."""
    n, dim = layer.n_qubits, 2 ** layer.n_qubits
    m = torch.nn.functional.pad(x, (0, dim * dim - x.shape[-1])).reshape(-1, dim, dim)
    data = torch.linalg.matrix_exp(1j * ((m + m.mT) / 2).to(C128) / layer.reps)
    trained = expm_unitary(weight, n)
    state = torch.full((x.shape[0], dim), dim ** -0.5, dtype=C128)
    for r in range(layer.reps):
        state = torch.einsum("ij,bj->bi", trained[r], torch.einsum("bij,bj->bi", data, state))
    return state[:, :layer.out_features].abs().square() + layer.bias.double()


def test_data_reuploading_linear_equals_the_circuit_values_and_gradients() -> None:
    layer = DataReUploadingLinear(13, 5, reps=3).double()
    assert layer.n_qubits == 3  # 4**2 = 16 < 13 + 1? no: 2**2 = 4 < 5 outputs needs 3
    x = torch.randn(4, 13, dtype=torch.float64, requires_grad=True)
    w = layer.weight.detach().clone().requires_grad_(True)
    expected = _linear_reference(x, layer, w)
    ours = layer(x)
    assert torch.allclose(ours, expected, atol=1e-10)
    g = torch.randn_like(ours)
    gx, gw = torch.autograd.grad((ours * g).sum(), [x, layer.weight])
    ex, ew = torch.autograd.grad((expected * g).sum(), [x, w])
    assert torch.allclose(gx, ex, atol=1e-9) and torch.allclose(gw, ew, atol=1e-9)


def test_reupload_equals_forming_each_unitary_even_for_equal_eigenvalues() -> None:
    """The fused evolution against hermitian_exp + matrix products, with H having a
    repeated eigenvalue (where differentiating eigh itself divides by zero)."""
    torch.manual_seed(1)
    q, _ = torch.linalg.qr(torch.randn(8, 8, dtype=torch.float64))
    h = torch.stack([q @ torch.diag(torch.tensor([2.0, 2, 2, -1, -1, 0.5, 3, 3],
                                                 dtype=torch.float64)) @ q.T,
                     torch.randn(8, 8, dtype=torch.float64)])
    h = ((h + h.mT) / 2).requires_grad_(True)
    theta = torch.randn(3, 63, dtype=torch.float64, requires_grad=True)
    trained = hermitian_exp(pauli_sum(theta, 3))
    ours = reupload(h, trained, 0.7)
    state = torch.full((2, 8, 1), 8 ** -0.5, dtype=C128)
    data = hermitian_exp(h, 0.7)
    for w in trained:
        state = w @ (data @ state)
    expected = state.squeeze(-1)
    assert torch.allclose(ours, expected, atol=1e-12)
    g = torch.randn(2, 8, dtype=C128)
    got = torch.autograd.grad((ours * g.conj()).real.sum(), [h, theta], retain_graph=True)
    want = torch.autograd.grad((expected * g.conj()).real.sum(), [h, theta])
    assert all(torch.isfinite(a).all() and torch.allclose(a, b, atol=1e-10)
               for a, b in zip(got, want, strict=True))
    with pytest.raises(ValueError, match="real symmetric"):
        reupload(h.detach().to(C128), trained, 0.7)


def test_float32_linear_matches_float64() -> None:
    layer = DataReUploadingLinear(20, 4, reps=2)
    x = torch.randn(3, 20)
    wide = DataReUploadingLinear(20, 4, reps=2).double()
    wide.load_state_dict(layer.state_dict())
    assert torch.allclose(layer(x).double(), wide(x.double()), atol=1e-5)


def test_qubit_counts() -> None:
    assert DataReUploadingLinear(15, 4).n_qubits == 2   # 4**2 >= 16, 2**2 >= 4
    assert DataReUploadingLinear(16, 4).n_qubits == 3   # 4**2 < 17
    assert DataReUploadingLinear(3, 9).n_qubits == 4    # 2**3 < 9 outputs
    assert DataReUploadingLinear(16 * 28 * 28, 10).n_qubits == 7


def test_parameters_are_real() -> None:
    for layer in (FlippedQuanv3x3(2, 3), DataReUploadingLinear(10, 3, reps=2)):
        assert all(not p.is_complex() for p in layer.parameters())


def test_unitary_before_and_after_100_optimiser_steps() -> None:
    torch.manual_seed(0)
    conv, linear = FlippedQuanv3x3(2, 3), DataReUploadingLinear(30, 6, reps=3)
    x_img, x_vec = torch.randn(8, 2, 6, 6), torch.randn(8, 30) * 5
    before = {"conv": conv.weight.detach().clone(), "linear": linear.weight.detach().clone()}
    opt = torch.optim.Adam([*conv.parameters(), *linear.parameters()], lr=0.05)
    for step in range(101):
        if step in (0, 100):
            errors = [unitarity_error(conv.unitaries()), unitarity_error(linear.unitaries()),
                      unitarity_error(linear.data_unitaries(x_vec))]
            assert max(errors) < 1e-5, (step, errors)
        if step == 100:
            break
        opt.zero_grad()
        loss = conv(x_img).square().mean() + (linear(x_vec) - 1).square().mean()
        loss.backward()
        opt.step()
    assert (conv.weight - before["conv"]).abs().max() > 1.0  # training really moved them
    assert (linear.weight - before["linear"]).abs().max() > 0.5


def test_gain_multiplies_the_probabilities_and_uniform_reads_one() -> None:
    torch.manual_seed(0)
    plain = DataReUploadingLinear(13, 5, reps=2)
    scaled = DataReUploadingLinear(13, 5, reps=2, gain=2.5)
    uniform = DataReUploadingLinear(13, 5, reps=2, gain="uniform")
    for layer in (scaled, uniform):
        layer.load_state_dict(plain.state_dict())
    x = torch.randn(4, 13)
    probs = plain(x) - plain.bias
    assert torch.allclose(scaled(x) - scaled.bias, 2.5 * probs, atol=1e-6)
    assert uniform.gain == 2 ** uniform.n_qubits == 8
    assert "gain=8" in repr(uniform)
    with torch.no_grad():  # no data, no rotation: |+>^n, each probability 2**-n, read as 1
        uniform.weight.zero_()
        assert torch.allclose(uniform(torch.zeros(2, 13)) - uniform.bias,
                              torch.ones(2, 5), atol=1e-6)
    assert unitarity_error(uniform.unitaries()) < 1e-6  # the gain is after the measurement


def test_uniform_gain_learns_where_bare_probabilities_hardly_do() -> None:
    """Probabilities of a 4-qubit state start near 1/16: as logits they barely differ, so
    cross-entropy moves slowly; read relative to uniform they train (8x8 digits, 5 epochs)."""
    from phys import data

    ds = data.load("digits")
    x, y = torch.as_tensor(ds.x_train).float(), torch.as_tensor(ds.y_train)
    x_test, y_test = torch.as_tensor(ds.x_test).float(), torch.as_tensor(ds.y_test)
    accuracy = {}
    for gain in (1.0, "uniform"):
        torch.manual_seed(0)
        layer = DataReUploadingLinear(64, 10, reps=2, gain=gain)
        opt = torch.optim.Adam(layer.parameters(), lr=0.01)
        for epoch in range(5):
            order = torch.randperm(len(x), generator=torch.Generator().manual_seed(epoch))
            for idx in order.split(50):
                loss = torch.nn.functional.cross_entropy(layer(x[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
        with torch.no_grad():
            accuracy[gain] = float((layer(x_test).argmax(1) == y_test).float().mean())
    assert accuracy["uniform"] > 0.6 and accuracy[1.0] < 0.3, accuracy


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="in_channels"):
        FlippedQuanv3x3(0, 2)
    with pytest.raises(ValueError, match="stride"):
        FlippedQuanv3x3(1, 2, stride=0)
    with pytest.raises(ValueError, match="n_qubits >= 2"):
        DataReUploadingLinear(10, 3, n_qubits=1)
    with pytest.raises(ValueError, match=r"21 qubits need a 2\*\*21 x 2\*\*21 .*: 32 TiB"):
        DataReUploadingLinear(4 ** 20, 3)
    for gain in (0, -1.0, float("nan"), "max", True):
        with pytest.raises(ValueError, match="gain must be a finite number > 0 or 'uniform'"):
            DataReUploadingLinear(10, 3, gain=gain)
    with pytest.raises(ValueError, match=r"shape \(\*, 10\)"):
        DataReUploadingLinear(10, 3)(torch.zeros(2, 11))
