"""Level 2 with and without unitarity: why the paper's quantum linear layer learns fast.

``HybridNet(2)`` on an MNIST subset, trained as in the paper (Adam lr 5e-4, batch 200),
three times: with ``DataReUploadingLinear`` as physnn builds it (real coefficients, every
trainable gate exactly unitary), the same with ``gain="uniform"`` (probabilities times
2**7 after the measurement), and with the paper code's complex-typed coefficients
(``exp(i sum_k (a_k + i b_k) P_k)``, ``b`` starting at 0 and trained too), which leave
unitarity. Prints train and test accuracy and max |U^dagger U - I| of the trainable
gates after every epoch. Minutes on 2 cores. Never asserts.

    .venv/bin/python bench/swap_level2_unitarity.py [--epochs 4] [--subset 6000]
        [--test-subset 2000] [--lr 5e-4] [--threads 1]
        [--variants unitary unitary-gain-uniform complex]
"""

from __future__ import annotations

import argparse
import time

from _common import machine, use_shared_data

VARIANTS = ("unitary", "unitary-gain-uniform", "complex")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--subset", type=int, default=6000)
    parser.add_argument("--test-subset", type=int, default=2000)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    args = parser.parse_args()
    use_shared_data()
    import torch
    from torch import nn
    from torch.nn import functional as F  # noqa: N812

    from phys.quantum.creep import DataReUploadingLinear
    from phys.quantum.study import load_images
    from phys.quantum.swap import HybridNet
    from phys.quantum.unitary import pauli_sum, unitarity_error

    class ComplexCoefficients(DataReUploadingLinear):
        """The paper code's gates: complex coefficients, so not unitary once trained."""

        def __init__(self, *a: int) -> None:
            super().__init__(*a)
            self.weight_imag = nn.Parameter(torch.zeros_like(self.weight))

        def unitaries(self) -> torch.Tensor:
            n = self.n_qubits
            g = pauli_sum(self.weight.double(), n) + 1j * pauli_sum(self.weight_imag.double(), n)
            return torch.linalg.matrix_exp(1j * g).to(torch.complex64)

    torch.set_num_threads(args.threads)
    x_tr, y_tr, x_te, y_te = load_images("mnist", subset=args.subset,
                                         test_subset=args.test_subset)
    print(f"{machine()}, threads {torch.get_num_threads()}; MNIST {len(x_tr)} train / "
          f"{len(x_te)} test images, Adam lr {args.lr:g}, batch 200")
    for variant in args.variants:
        torch.manual_seed(0)
        model = HybridNet(2, gain="uniform" if variant == "unitary-gain-uniform" else 1.0)
        if variant == "complex":
            model.fc = ComplexCoefficients(16 * 28 * 28, 10, 10)
        opt = torch.optim.Adam(model.parameters(), lr=args.lr)
        gen = torch.Generator().manual_seed(0)
        t0 = time.perf_counter()
        for epoch in range(1, args.epochs + 1):
            correct = 0
            for idx in torch.randperm(len(x_tr), generator=gen).split(200):
                out = model(x_tr[idx])
                loss = F.cross_entropy(out, y_tr[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                correct += int((out.argmax(1) == y_tr[idx]).sum())
            with torch.no_grad():
                test = sum(int((model(x_te[i:i + 250]).argmax(1) == y_te[i:i + 250]).sum())
                           for i in range(0, len(x_te), 250)) / len(x_te)
                error = unitarity_error(model.fc.unitaries())
            print(f"{variant}: epoch {epoch} train accuracy {correct / len(x_tr):.3f} test "
                  f"accuracy {test:.3f} max|U^dagger U - I| {error:.2g} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
