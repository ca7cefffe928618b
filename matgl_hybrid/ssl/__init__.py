"""Self-supervised atomic representations (Kong et al. 2022): pretext tasks, pretraining, learned descriptor sets.

The per-layer atom embeddings NE0 … NEk of an encoder come from the prediction path
(:func:`matgl_hybrid.inference.node_embeddings`) and are re-exported here.
"""

from matgl_hybrid.inference import layer_keys, material_embeddings, node_embeddings
from matgl_hybrid.models.encoders import MASK_TOKEN, build_encoder
from matgl_hybrid.ssl.contrastive import ContrastivePretraining
from matgl_hybrid.ssl.pretext import (
    PRETEXT_VERSION,
    PretextHeads,
    PretextModule,
    choose_atoms,
    distance_bins,
    periodic_labels,
)
from matgl_hybrid.ssl.pretrain import MaskedPretraining, PretrainingResult, pretrain, pretrain_datasets

__all__ = [
    "MASK_TOKEN",
    "PRETEXT_VERSION",
    "ContrastivePretraining",
    "MaskedPretraining",
    "PretextHeads",
    "PretextModule",
    "PretrainingResult",
    "build_encoder",
    "choose_atoms",
    "distance_bins",
    "layer_keys",
    "material_embeddings",
    "node_embeddings",
    "periodic_labels",
    "pretrain",
    "pretrain_datasets",
]
