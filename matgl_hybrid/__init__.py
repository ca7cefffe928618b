"""Hybrid descriptor + graph neural network models for crystals, as MatGL extensions."""
