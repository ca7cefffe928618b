"""Node inputs of a backbone, chosen when a model is built: the atoms' types as they are, or NEGNN's (Kong et al.
2022) types ⊕ frozen pretrained NE vectors, which MEGNet's node embedding then takes in."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from matgl.models import MEGNet
from matgl.models._core import MatGLModel
from torch import nn

from matgl_hybrid.graphs import swapped_attributes
from matgl_hybrid.inference import embedding_width, layer_node_features
from matgl_hybrid.models.backbones import get_backbone


class NodeEmbeddingInput(nn.Module):
    """Replaces MEGNet's node-type embedding: ``[type, NE…]`` (N, 1 + D) -> Linear(emb(type) ⊕ NE) (N, F).

    MEGNet passes ``g.node_type`` straight to its node embedding layer; NEGNN sets it to the node type (as a
    float column) followed by the frozen NE vectors of the same atom.
    """

    def __init__(self, ntypes: int, dim: int, ne_dim: int, activation: nn.Module):
        super().__init__()
        self.types = nn.Embedding(ntypes, dim)
        self.project = nn.Sequential(nn.Linear(dim + ne_dim, dim), activation)

    def forward(self, node_attr: torch.Tensor) -> torch.Tensor:
        """``[type, NE…]`` (N, 1 + D) -> the activated projection of emb(type) ⊕ NE (N, F)."""
        own = self.types(node_attr[:, 0].long())
        return self.project(torch.cat([own, node_attr[:, 1:].to(own.dtype)], dim=-1))


class NodeTypes(nn.Module):
    """The node input of a plain backbone: ``g.node_type`` (N,) as it is."""

    def forward(self, g: Any, state_attr: torch.Tensor | None = None) -> torch.Tensor:
        """A batch of N atoms -> their ``g.node_type`` (N,); ``state_attr`` is ignored."""
        return g.node_type


class FrozenEncoder(nn.Module):
    """NEGNN's node input: a pretrained encoder kept frozen; gives ``[type, NE…]`` (N, 1 + D) for the atoms of a batch,
    the input of :class:`NodeEmbeddingInput`. ``width``: D."""

    def __init__(self, spec: dict[str, Any], element_types: Sequence[str], cutoff: float):
        super().__init__()
        self.spec = dict(spec)
        self.encoder: MatGLModel = get_backbone(spec["backbone"]).cls(**spec["kwargs"])
        if abs(self.encoder.cutoff - cutoff) > 1e-9:
            raise ValueError(f"NEGNN needs the encoder's cutoff ({self.encoder.cutoff} Å) for its graphs, got {cutoff}")
        self.encoder.requires_grad_(False)
        self.layers = list(spec["layers"])
        self.width = embedding_width(self.encoder, self.layers)
        encoder_types = list(self.encoder.element_types)
        missing = [e for e in element_types if e not in encoder_types]
        if missing:
            raise ValueError(f"the pretrained encoder does not know {missing}")
        self.register_buffer(
            "type_map", torch.tensor([encoder_types.index(e) for e in element_types]), persistent=False
        )

    def forward(self, g: Any, state_attr: torch.Tensor | None = None) -> torch.Tensor:
        """A batch of N atoms -> ``[type, NE…]`` (N, 1 + D): each atom's type (the model's element order) as a float,
        then the frozen encoder's NE vectors of its layers."""
        self.encoder.eval()
        with swapped_attributes(g, node_type=self.type_map[g.node_type]), torch.no_grad():
            self.encoder(g, state_attr=state_attr)
        ne = layer_node_features(self.encoder, self.layers)
        return torch.cat([g.node_type.unsqueeze(-1).float(), ne], dim=-1)


def node_input(node_embeddings: dict[str, Any] | None, backbone: str, model: MatGLModel, cutoff: float) -> nn.Module:
    """The node input of ``model`` (a ``backbone`` built for its element types and ``cutoff``): :class:`NodeTypes`,
    or with ``node_embeddings`` (:func:`encoder_spec`) NEGNN's :class:`FrozenEncoder`, for which MEGNet's node
    embedding is replaced (in place) by a :class:`NodeEmbeddingInput`."""
    if node_embeddings is None:
        return NodeTypes()
    if backbone != "megnet":
        raise ValueError("node_embeddings (NEGNN) is implemented for the MEGNet backbone")
    encoder = FrozenEncoder(node_embeddings, model.element_types, cutoff)
    embedding = model.embedding
    embedding.layer_node_embedding = NodeEmbeddingInput(
        len(model.element_types), embedding.dim_node_embedding, encoder.width, embedding.activation
    )
    return encoder


def encoder_spec(encoder: MatGLModel, layers: Sequence[int]) -> dict[str, Any]:
    """The ``node_embeddings`` argument of :class:`~matgl_hybrid.models.HybridModel` for a pretrained encoder (the
    backbone it is named by its class: a MEGNet encoder, as NEGNN needs, or refused here in one line).

    Raises:
        ValueError: the encoder is not a MEGNet.
    """
    if not isinstance(encoder, MEGNet):
        raise ValueError(f"node_embeddings (NEGNN) needs a MEGNet encoder, this one is a {type(encoder).__name__}")
    return {"backbone": "megnet", "kwargs": dict(encoder._init_args), "layers": list(layers)}
