"""Hybrid descriptor + graph neural network models for crystals, as MatGL extensions.

The public API is re-exported here lazily (importing the package does not import torch or MatGL):
``featurize``, ``DescriptorTransform``, ``HybridModel``, ``HybridEnsemble``, ``TrainSpec``, ``fit``,
``load_checkpoint``, ``save_checkpoint``, ``load_pretrained``, ``load``, ``load_records`` (``load_model`` and
``save_model`` are the deprecated names of the checkpoint functions).
"""

from matgl_hybrid.version import __version__

__all__ = [
    "DescriptorTransform",
    "HybridEnsemble",
    "HybridModel",
    "TrainSpec",
    "__version__",
    "featurize",
    "fit",
    "load",
    "load_checkpoint",
    "load_model",
    "load_pretrained",
    "load_records",
    "save_checkpoint",
    "save_model",
]


def __getattr__(name: str):
    """The public API, imported at first use (``import matgl_hybrid`` imports neither torch nor MatGL)."""
    if name in {"featurize", "DescriptorTransform"}:
        from matgl_hybrid import descriptors as module
    elif name in {"HybridModel", "HybridEnsemble"}:
        from matgl_hybrid import models as module
    elif name in {"TrainSpec", "fit"}:
        from matgl_hybrid import training as module
    elif name in {"load_checkpoint", "save_checkpoint", "load_model", "save_model"}:
        from matgl_hybrid import checkpoint as module
    elif name == "load_pretrained":
        from matgl_hybrid import pretrained as module
    elif name in {"load", "load_records"}:
        from matgl_hybrid import data as module
    else:
        raise AttributeError(f"module 'matgl_hybrid' has no attribute {name!r}")
    return getattr(module, name)
