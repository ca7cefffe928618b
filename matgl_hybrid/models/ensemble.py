"""HybridEnsemble: K HybridModels trained with different seeds; mean prediction and its spread."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from matgl.models._core import MatGLModel
from torch import nn

from matgl_hybrid.checkpoint import VerifiedCheckpointMixIn
from matgl_hybrid.models.hybrid import HybridModel


class HybridEnsemble(VerifiedCheckpointMixIn, MatGLModel):
    """An ensemble of :class:`HybridModel` members (chemprop-style uncertainty).

    Saved and loaded like any MatGL model: ``members`` holds each member's constructor arguments, the state
    dict holds their weights (``members.<k>.…``).
    """

    __version__ = 1

    def __init__(self, members: Sequence[dict[str, Any]], **kwargs):
        """Build the members from their constructor arguments (``member._init_args``)."""
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.save_args(locals(), kwargs)
        self.members = nn.ModuleList([HybridModel(**dict(m)) for m in members])

    @classmethod
    def from_models(cls, models: Sequence[HybridModel]) -> HybridEnsemble:
        """An ensemble holding (copies of the weights of) trained models."""
        ensemble = cls([m._init_args for m in models])
        for target, source in zip(ensemble.members, models, strict=True):
            target.load_state_dict(source.state_dict())
        return ensemble.eval()

    def forward(self, g: Any, state_attr: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        """Mean of the members' predictions (target units)."""
        return torch.stack([m(g, state_attr=state_attr) for m in self.members]).mean(dim=0)

    def check_structure(self, structure: Any, id: str) -> None:
        """Raise ``InvalidStructureError`` unless the members can predict ``structure`` (they share elements)."""
        for member in self.members:
            member.check_structure(structure, id)

    def predict(self, structures: Sequence, return_std: bool = False, **kwargs) -> np.ndarray | tuple:
        """Mean prediction over members, and with ``return_std`` their standard deviation (same shape)."""
        predictions = np.stack([m.predict(structures, **kwargs) for m in self.members])
        mean = predictions.mean(axis=0)
        return (mean, predictions.std(axis=0)) if return_std else mean

    def predict_structure(self, structure, **kwargs) -> torch.Tensor:
        """Mean prediction for one structure."""
        return torch.as_tensor(self.predict([structure], **kwargs)[0])
