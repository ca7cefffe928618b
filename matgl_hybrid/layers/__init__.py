"""Layers of the hybrid models: readouts, the descriptor scaler and encoder, fusions, and target outputs."""

from matgl_hybrid.layers.descriptor_scaler import DescriptorScaler
from matgl_hybrid.layers.fusion import (
    FUSIONS,
    ConcatFusion,
    DescriptorEncoder,
    FiLMFusion,
    GatedFusion,
    GraphOnly,
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
from matgl_hybrid.layers.targets import Destandardize, make_output

__all__ = [
    "FUSIONS",
    "READOUTS",
    "AttentionReadout",
    "ConcatFusion",
    "DescriptorEncoder",
    "DescriptorScaler",
    "Destandardize",
    "ExtensiveReadout",
    "FiLMFusion",
    "GatedFusion",
    "GraphOnly",
    "MaxReadout",
    "MeanReadout",
    "Set2SetReadout",
    "SumReadout",
    "make_activation",
    "make_fusion",
    "make_output",
    "make_readout",
]
