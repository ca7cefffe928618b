"""Models: HybridModel (backbone + readout + descriptor fusion), NativeModel (the backbone as MatGL ships it),
HybridEnsemble, and the backbone adapters."""

from matgl_hybrid.models.backbones import BACKBONES, get_backbone
from matgl_hybrid.models.ensemble import HybridEnsemble
from matgl_hybrid.models.hybrid import HybridModel
from matgl_hybrid.models.native import NativeModel

__all__ = ["BACKBONES", "HybridEnsemble", "HybridModel", "NativeModel", "get_backbone"]
