"""Encoders of self-supervised learning: MatGL backbones whose node types include a mask token."""

from __future__ import annotations

from collections.abc import Sequence

from matgl.models._core import MatGLModel

from matgl_hybrid.checkpoint import MASK_TOKEN
from matgl_hybrid.models.backbones import get_backbone

__all__ = ["MASK_TOKEN", "build_encoder", "with_mask_token"]


def with_mask_token(element_types: Sequence[str]) -> tuple[str, ...]:
    """The element list of an encoder that can mask atoms: the elements, then :data:`MASK_TOKEN`."""
    return (*[e for e in element_types if e != MASK_TOKEN], MASK_TOKEN)


def build_encoder(
    backbone: str, element_types: Sequence[str], cutoff: float, backbone_kwargs: dict | None = None
) -> MatGLModel:
    """A MatGL backbone whose node types are ``element_types`` plus :data:`MASK_TOKEN` (the encoder of SSL)."""
    return get_backbone(backbone).cls(
        element_types=with_mask_token(element_types), cutoff=cutoff, **dict(backbone_kwargs or {})
    )
