"""Self-supervised atomic representations (Kong et al. 2022): masked-atom pretraining and per-layer embeddings."""

from matgl_hybrid.ssl.embeddings import layer_keys, material_embeddings, node_embeddings
from matgl_hybrid.ssl.pretext import MASK_TOKEN, PretextHeads, choose_masked, distance_bins, periodic_labels
from matgl_hybrid.ssl.pretrain import MaskedPretraining, pretrain

__all__ = [
    "MASK_TOKEN",
    "MaskedPretraining",
    "PretextHeads",
    "choose_masked",
    "distance_bins",
    "layer_keys",
    "material_embeddings",
    "node_embeddings",
    "periodic_labels",
    "pretrain",
]
