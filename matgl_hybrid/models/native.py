"""NativeModel: a MatGL backbone exactly as MatGL ships it (its own readout and head), with target standardization."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from matgl.config import DEFAULT_ELEMENTS
from matgl.models import TensorNet

from matgl_hybrid.graphs import swapped_attributes
from matgl_hybrid.models.backbones import num_graphs
from matgl_hybrid.models.base import GraphModel, per_target


class NativeModel(GraphModel):
    """The baseline of the hybrids: the backbone with its own readout and head (e.g. MEGNet's Set2Set), predicting
    ``output(backbone(g with node_input(g)))``; it cannot fuse descriptors.

    ``HybridModel(readout="native", …)`` builds one (and ``isinstance(model, HybridModel)`` holds), so
    configurations and checkpoints saved that way load as a NativeModel. With ``node_embeddings`` it is a NEGNN
    whose backbone keeps MatGL's head.
    """

    __version__ = 1
    native = True
    #: No readout, descriptor branch or head of its own: those of the backbone (as HybridModel(readout="native") had).
    readout = descriptor_scaler = encoder = fusion = head = None

    def __init__(
        self,
        backbone: str = "megnet",
        element_types: Sequence[str] = DEFAULT_ELEMENTS,
        cutoff: float = 5.0,
        backbone_kwargs: dict[str, Any] | None = None,
        n_targets: int = 1,
        task_type: str = "regression",
        node_embeddings: dict[str, Any] | None = None,
        target_names: Sequence[str] = ("target",),
        target_units: str | None = None,
        target_mean: Sequence[float] | None = None,
        target_std: Sequence[float] | None = None,
        readout: str = "native",
        descriptor_set: str | None = None,
        trained_elements: Sequence[str] | None = None,
        **kwargs,
    ):
        """Build the model; see the class docstring. ``readout`` can only be ``"native"``; HybridModel's other
        arguments (``head_hidden``, …), which a configuration saved as ``HybridModel`` carries, are kept, unused."""
        if readout != "native":
            raise ValueError(f"a NativeModel has the backbone's own readout ('native'), not {readout!r}")
        if descriptor_set is not None:
            raise ValueError("readout 'native' is the backbone's own readout and head: it cannot fuse descriptors")
        own_kwargs = dict(backbone_kwargs or {})
        if n_targets != 1 and (backbone == "megnet" or own_kwargs.get("is_intensive") is False):
            raise ValueError(f"MatGL's {'MEGNet' if backbone == 'megnet' else 'extensive'} head predicts one target: "
                             "use another readout for several")  # fmt: skip
        if own_kwargs.get("is_classification") or own_kwargs.get("task_type", "regression") != "regression":
            raise ValueError("give task_type='classification' to the model, not to the backbone: MatGL's head would "
                             "apply a sigmoid before the model's own (probabilities stuck in (0.5, 0.73))")  # fmt: skip
        if backbone != "megnet":
            own_kwargs.setdefault("ntargets", n_targets)  # MatGL's head of M3GNet and TensorNet predicts them all
        super().__init__(
            backbone, element_types, cutoff, own_kwargs, n_targets, task_type, node_embeddings, target_names,
            target_units, target_mean, target_std, trained_elements=trained_elements,
        )  # fmt: skip
        self.save_args(locals(), kwargs)

    def forward(self, g: Any, state_attr: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        """Predict in target units: (B,) for one target, (B, T) for several (see :meth:`HybridModel.forward`)."""
        with swapped_attributes(g, node_type=self.node_input(g, state_attr)):
            out = self.output(self.backbone(g, state_attr=state_attr).reshape(num_graphs(g), -1))
        self.feature_dict = {"graph": self.graph_vector(g), "final": out}  # graph: None for an extensive head
        return per_target(out)

    def graph_vector(self, g: Any) -> torch.Tensor | None:
        """After a forward pass in eval mode: the backbone's own per-structure vector, what its head reads: (B, G);
        None in training (not computed) and for an extensive head (M3GNet or TensorNet with ``is_intensive=False``
        sum per-atom outputs: no such vector).

        MEGNet and intensive M3GNet keep it as ``feature_dict["readout"]``; TensorNet keeps its per-atom features
        there (N, F), pooled here by its own readout as its head does.
        """
        if self.training or not getattr(self.backbone, "is_intensive", True):  # read by embed and probe, in eval
            return None
        features = self.backbone.feature_dict["readout"]
        if isinstance(self.backbone, TensorNet):
            return self.backbone.readout(features, getattr(g, "batch", None))
        return features
