"""Hybrid descriptor + graph neural network models for crystals, as MatGL extensions.

The public API is re-exported here lazily (importing the package does not import torch or MatGL):
``featurize``, ``DescriptorTransform``, ``HybridModel``, ``HybridEnsemble``, ``TrainSpec``, ``fit``,
``load_checkpoint``, ``save_checkpoint``, ``load_pretrained``, ``load``, ``load_records`` (``load_model`` and
``save_model`` are the deprecated names of the checkpoint functions).
"""

from importlib import import_module

from matgl_hybrid.version import __version__

_EXPORTS = {
    "featurize": "matgl_hybrid.descriptors",
    "DescriptorTransform": "matgl_hybrid.descriptors",
    "HybridModel": "matgl_hybrid.models",
    "HybridEnsemble": "matgl_hybrid.models",
    "TrainSpec": "matgl_hybrid.training",
    "fit": "matgl_hybrid.training",
    "load_checkpoint": "matgl_hybrid.checkpoint",
    "save_checkpoint": "matgl_hybrid.checkpoint",
    "load_model": "matgl_hybrid.checkpoint",
    "save_model": "matgl_hybrid.checkpoint",
    "load_pretrained": "matgl_hybrid.pretrained",
    "load": "matgl_hybrid.data",
    "load_records": "matgl_hybrid.data",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'matgl_hybrid' has no attribute {name!r}")
