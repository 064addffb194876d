"""Supervised training of any ``nn.Module`` classifier on the shared training loop:
cross-entropy on its logits, Adam, the learning-rate schedule of
:class:`~phys.train.base.TrainConfig`, and the same callbacks, checkpoints and resume as
every trainer.

:func:`drawing_from` builds a model with its initial parameters drawn from a seeded
``torch.Generator``, leaving torch's global random state as it was.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F  # noqa: N812 - torch's convention
from torch import nn

from phys.train.base import TrainConfig, Trainer

__all__ = ["SupervisedTrainer", "drawing_from"]


@contextlib.contextmanager
def drawing_from(generator: torch.Generator) -> Iterator[torch.Generator]:
    """Within the block, torch's global CPU random numbers come from ``generator`` (which
    advances by what was drawn); the global state is restored afterwards.

    For modules that initialise themselves from the global generator (``nn.Linear``,
    ``nn.Conv2d`` ...) without a global ``torch.manual_seed``.

    Examples::

        >>> before = torch.get_rng_state()
        >>> with drawing_from(torch.Generator().manual_seed(0)):
        ...     a = nn.Linear(3, 2)
        >>> with drawing_from(torch.Generator().manual_seed(0)):
        ...     b = nn.Linear(3, 2)
        >>> torch.equal(a.weight, b.weight), torch.equal(torch.get_rng_state(), before)
        (True, True)
    """
    if not isinstance(generator, torch.Generator) or generator.device.type != "cpu":
        raise ValueError(f"generator must be a CPU torch.Generator, got {generator!r}")
    with torch.random.fork_rng(devices=[]):
        torch.set_rng_state(generator.get_state())
        try:
            yield generator
        finally:
            generator.set_state(torch.get_rng_state())


class SupervisedTrainer(Trainer):
    """Cross-entropy training of a classifier ``model`` (logits out) with Adam.

    Batches are moved to ``device``, where the model is; the training accuracy can be
    the running accuracy of the training steps (``config.train_accuracy="running"``: no
    second pass over the training data).

    Args:
        model: Any ``nn.Module`` mapping ``(B, *input_shape)`` to logits
            ``(B, n_classes)``; moved to ``device``.
        n_classes: Number of labels.
        input_shape: Shape of one sample (an int for flat features).
        config: Options (:class:`~phys.train.base.TrainConfig`): ``lr`` and
            ``weight_decay`` of Adam, ``schedule``, ``epochs``, ``batch_size``, ``seed``
            (the batch order).
        device: torch device to train on.

    Shape:
        - ``train_step(x, labels)``: ``(B, *input_shape), (B,) -> (loss, correct)``.
        - ``predict(x)``: ``(B, *input_shape) -> (B,)``.

    Examples::

        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
        >>> trainer = SupervisedTrainer(model, 3, (2, 2), TrainConfig(epochs=1))
        >>> x, y = torch.randn(8, 2, 2), torch.randint(0, 3, (8,))
        >>> history = trainer.fit(x, y)
        >>> len(history), 0 <= history[-1]["train_accuracy"] <= 1
        (1, True)
    """

    step_reports_correct = True

    #: What the loss is, for plots; one loss for the whole network, so ``layer_losses``
    #: stays ``None``.
    loss_label: ClassVar[str] = "cross-entropy"

    def __init__(self, model: nn.Module, n_classes: int, input_shape: int | Sequence[int],
                 config: TrainConfig | None = None, *,
                 device: str | torch.device = "cpu") -> None:
        super().__init__(config or TrainConfig())
        if not isinstance(model, nn.Module):
            raise ValueError(f"model must be an nn.Module, got {type(model).__name__}")
        if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 2:
            raise ValueError(f"n_classes must be an int >= 2, got {n_classes!r}")
        shape = (input_shape,) if isinstance(input_shape, int) else tuple(input_shape)
        if not shape or any(isinstance(s, bool) or not isinstance(s, int) or s < 1
                            for s in shape):
            raise ValueError(f"input_shape must be ints >= 1, got {input_shape!r}")
        self.device = torch.device(device)
        self.network = model.to(self.device)
        self.n_features = shape if len(shape) > 1 else shape[0]
        self.n_classes = n_classes
        cfg = self.config
        self.optimizers = [torch.optim.Adam(self.network.parameters(), lr=cfg.lr,
                                            weight_decay=cfg.weight_decay)]

    def train_step(self, x: torch.Tensor, labels: torch.Tensor) -> tuple[float, int]:
        x, labels = x.to(self.device), labels.to(self.device)
        self.network.train()
        logits = self.network(x)
        loss = F.cross_entropy(logits, labels)
        opt = self.optimizers[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
        return float(loss.detach()), int((logits.argmax(1) == labels).sum())

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        self.network.eval()
        try:
            return self.network(x.to(self.device)).argmax(dim=1)
        finally:
            self.network.train()
