"""Layers of the hybrid models: readouts, the descriptor encoder and fusions."""

from matgl_hybrid.layers.fusion import (
    FUSIONS,
    ConcatFusion,
    DescriptorEncoder,
    FiLMFusion,
    GatedFusion,
    make_activation,
    make_fusion,
)
from matgl_hybrid.layers.readouts import (
    READOUTS,
    AttentionReadout,
    ExtensiveReadout,
    PoolingReadout,
    Set2SetReadout,
    make_readout,
)

__all__ = [
    "FUSIONS",
    "READOUTS",
    "AttentionReadout",
    "ConcatFusion",
    "DescriptorEncoder",
    "ExtensiveReadout",
    "FiLMFusion",
    "GatedFusion",
    "PoolingReadout",
    "Set2SetReadout",
    "make_activation",
    "make_fusion",
    "make_readout",
]
