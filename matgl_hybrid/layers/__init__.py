"""Layers of the hybrid models: readouts, the descriptor scaler and encoder, and fusions."""

from matgl_hybrid.layers.descriptor_scaler import DescriptorScaler
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
    MaxReadout,
    MeanReadout,
    Set2SetReadout,
    SumReadout,
    make_readout,
)

__all__ = [
    "FUSIONS",
    "READOUTS",
    "AttentionReadout",
    "ConcatFusion",
    "DescriptorEncoder",
    "DescriptorScaler",
    "ExtensiveReadout",
    "FiLMFusion",
    "GatedFusion",
    "MaxReadout",
    "MeanReadout",
    "Set2SetReadout",
    "SumReadout",
    "make_activation",
    "make_fusion",
    "make_readout",
]
