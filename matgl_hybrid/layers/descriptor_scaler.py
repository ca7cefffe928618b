"""DescriptorScaler: a fitted DescriptorTransform as a layer, so that a model takes raw descriptors."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class DescriptorScaler(nn.Module):
    """Median imputation, standardization and clipping to the training range of raw descriptors: (B, D) -> (B, D);
    a state without bounds (before 0.5) holds only the columns constant in training at their training value.

    The medians, means, scales and (when the transform clips) bounds (D,) of a fitted
    :class:`~matgl_hybrid.descriptors.DescriptorTransform` are buffers (not saved with the weights: the transform's
    JSON state, a constructor argument of the model, is the one record of them), so the transform travels with the
    model and ``model(graph)`` takes the descriptors as :func:`~matgl_hybrid.descriptors.featurize` computes them.
    Every non-finite value counts as missing. The statistics stay float64 whatever dtype the model is given (a
    ``precision="64-true"`` or ``"bf16-true"`` Trainer converts it); the output takes the model's dtype.
    """

    def __init__(self, state: dict[str, Any]):
        """``state``: ``DescriptorTransform.to_dict()`` (feature names, medians, means, scales; lower and upper
        bounds of the standardized values when it clips)."""
        super().__init__()
        self.feature_names: tuple[str, ...] = tuple(state["feature_names"])
        self.clip = "lower" in state or "upper" in state  # as DescriptorTransform.from_dict reads it
        names = ("median", "mean", "scale", "lower", "upper") if self.clip else ("median", "mean", "scale")
        if missing := [k for k in names if k not in state]:
            raise ValueError(f"descriptor transform: no {', '.join(missing)} in its state")
        for name in names:
            values = torch.tensor(state[name], dtype=torch.float64)
            if values.shape != (len(self.feature_names),):
                raise ValueError(
                    f"descriptor transform: {name} has {values.numel()} values for {self.n_features} names"
                )
            self.register_buffer(name, values, persistent=False)
        if not self.clip:  # the columns DescriptorTransform.transform holds at their training value: its rule,
            # ``constant_in_training`` (layers import no descriptors), on the same float64 values
            held = (self.scale == 1.0) & ((self.mean - self.median).abs() <= 1e-9 * self.median.abs() + 1e-12)
            self.register_buffer("constant", held | (self.scale <= 1e-12 * self.mean.abs()), persistent=False)
        self.statistics = names
        self.register_buffer("dtype_probe", torch.empty(0), persistent=False)  # takes the dtype the model is given

    def _apply(self, fn: Any, recurse: bool = True) -> DescriptorScaler:
        """As ``nn.Module._apply`` (``.to``, ``.double()``, ``.cuda()``), but the statistics keep float64: they
        move to the new device only (rounded to bf16, say, nearby descriptor values would collapse)."""
        kept = {name: getattr(self, name) for name in self.statistics}
        super()._apply(fn, recurse)
        for name, values in kept.items():
            self._buffers[name] = values.to(getattr(self, name).device)
        return self

    @property
    def n_features(self) -> int:
        """Number of descriptors D."""
        return len(self.feature_names)

    def forward(self, descriptors: torch.Tensor | None) -> torch.Tensor:
        """Raw descriptors (B, D), NaN or ±inf where missing -> imputed, standardized, clipped (B, D), in the
        model's dtype (float32 unless converted).

        Computed in float64 (the buffers' precision), as ``DescriptorTransform.transform`` does.

        Raises:
            ValueError: ``descriptors`` is None (the graph batch carries none).
        """
        if descriptors is None:
            raise ValueError("this model fuses descriptors: the graph batch has no 'descriptor' attribute")
        raw = descriptors.to(self.median.dtype)
        filled = torch.where(torch.isfinite(raw), raw, self.median)
        standardized = (filled - self.mean) / self.scale
        if self.clip:
            scaled = torch.clamp(standardized, self.lower, self.upper)
        else:  # a state without bounds: columns constant in training give their training value (DescriptorTransform)
            scaled = torch.where(self.constant, (self.median - self.mean) / self.scale, standardized)
        return scaled.to(self.dtype_probe.dtype)
