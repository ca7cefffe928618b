"""HybridEnsemble: K HybridModels trained with different seeds; mean prediction and its spread."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from matgl.models._core import MatGLModel
from torch import nn

from matgl_hybrid.checkpoint import VerifiedCheckpointMixIn, weight_dtype
from matgl_hybrid.models.base import Predicting
from matgl_hybrid.models.hybrid import HybridModel

#: What the members of an ensemble must share: one set of graphs and descriptors serves them all, and their
#: predictions are averaged, so they predict the same target in the same units.
SHARED = (
    "element_types",
    "cutoff",
    "descriptor_set",
    "descriptor_version",
    "descriptor_names",
    "target_names",
    "target_units",
    "task_type",
)


class HybridEnsemble(Predicting, VerifiedCheckpointMixIn, MatGLModel):
    """An ensemble of :class:`HybridModel` members (chemprop-style uncertainty).

    Saved and loaded like any MatGL model: ``members`` holds each member's constructor arguments, the state
    dict holds their weights (``members.<k>.…``). The members share elements, cutoff and descriptor set, so a
    prediction builds the graphs and descriptors once for all of them.
    """

    __version__ = 2  # members of HybridModel version 2

    def __init__(self, members: Sequence[dict[str, Any]], **kwargs):
        """Build the members from their constructor arguments (``member._init_args``)."""
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.save_args(locals(), kwargs)
        self.members = nn.ModuleList([HybridModel(**dict(m)) for m in members])
        for name in SHARED:
            values = {repr(getattr(m, name)) for m in self.members}
            if len(values) > 1:
                raise ValueError(f"ensemble members differ in {name}: {sorted(values)}")

    def __getattr__(self, name: str) -> Any:
        """What the members share (:data:`SHARED`) is read from the first member."""
        if name in SHARED:
            return getattr(self.members[0], name)
        return super().__getattr__(name)

    @classmethod
    def from_models(cls, models: Sequence[HybridModel]) -> HybridEnsemble:
        """An ensemble holding (copies of the weights of) trained models."""
        ensemble = cls([m._init_args for m in models]).to(weight_dtype(models[0]))  # float64 members stay float64
        for target, source in zip(ensemble.members, models, strict=True):
            target.load_state_dict(source.state_dict())
        return ensemble.eval()

    def forward(self, g: Any, state_attr: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        """Mean of the members' predictions (target units)."""
        return torch.stack([m(g, state_attr=state_attr) for m in self.members]).mean(dim=0)
