"""Target outputs: a head's raw values (B, T) -> the model's prediction, in the target's units or as probabilities."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class Destandardize(nn.Module):
    """Regression output: standardized values (B, T) -> target units, ``x · std + mean``.

    The mean and standard deviation (T,) are buffers, not saved with the weights: the model's constructor
    arguments (``target_mean``, ``target_std``) are their one record.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32), persistent=False)

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        """Standardized values (B, T) -> values in the target units (B, T)."""
        return raw * self.std + self.mean


class Probabilities(nn.Module):
    """Classification output: logits (B, T) -> probabilities, ``sigmoid(x)``.

    It keeps the logits of its last forward pass (``logits``, until read), from which training takes the binary
    cross-entropy: exact, with a gradient, where the sigmoid of a confident mistake has rounded to 0 or 1.
    """

    def __init__(self):
        super().__init__()
        self.logits: torch.Tensor | None = None

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        """Logits (B, T) -> probabilities (B, T); the logits are kept in ``logits``."""
        self.logits = raw
        return torch.sigmoid(raw)


def make_output(
    task_type: str, n_targets: int, mean: Sequence[float] | None = None, std: Sequence[float] | None = None
) -> nn.Module:
    """The output of a ``task_type`` model: :class:`Destandardize` (regression; mean 0 and std 1 by default) or
    :class:`Probabilities` (classification)."""
    if task_type == "classification":
        return Probabilities()
    if task_type != "regression":
        raise ValueError(f"task_type must be 'regression' or 'classification', got {task_type!r}")
    for name, values in (("target_mean", mean), ("target_std", std)):
        if values is not None and len(values) != n_targets:
            raise ValueError(f"{name} has {len(values)} values for {n_targets} targets")
    return Destandardize([0.0] * n_targets if mean is None else mean, [1.0] * n_targets if std is None else std)
