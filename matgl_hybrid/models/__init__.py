"""Models: HybridModel (backbone + readout + descriptor fusion), HybridEnsemble, and the backbone adapters."""

from matgl_hybrid.models.backbones import BACKBONES, get_backbone
from matgl_hybrid.models.ensemble import HybridEnsemble
from matgl_hybrid.models.hybrid import HybridModel

__all__ = ["BACKBONES", "HybridEnsemble", "HybridModel", "get_backbone"]
