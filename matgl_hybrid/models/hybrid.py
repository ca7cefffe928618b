"""HybridModel: a MatGL backbone, a readout, descriptor fusion and an MLP head, saved with MatGL's IOMixIn."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch
from matgl.config import DEFAULT_ELEMENTS
from matgl.layers import MLP
from torch import nn

from matgl_hybrid import potentials
from matgl_hybrid.graphs import swapped_attributes
from matgl_hybrid.layers import (
    DescriptorEncoder,
    DescriptorScaler,
    GraphOnly,
    make_activation,
    make_fusion,
    make_readout,
)
from matgl_hybrid.models.backbones import get_backbone, num_graphs
from matgl_hybrid.models.base import GraphModel, per_target
from matgl_hybrid.models.native import NativeModel


class HybridModel(GraphModel):
    """GNN + human-designed descriptors (Gong et al. 2023) on a MatGL backbone.

    Composed when it is built, it computes one formula::

        node_feat, state = backbone(g with node_input(g))      # (N, F), (B, Fs)
        graph = readout(node_feat) ⊕ state                      # (B, F' + Fs)
        fused = fusion(graph, encoder(descriptor_scaler(g.descriptor)))
        prediction = output(head(fused))                        # (B,) or (B, T)

    ``backbone`` (MEGNet, M3GNet or TensorNet, without MatGL's readout and output head, which it does not use)
    gives node features [+ a state vector for MEGNet]; ``readout`` (a PyG aggregation) pools them; with
    ``descriptor_set``, the raw descriptors are imputed and standardized by a :class:`DescriptorScaler` (the fitted
    transform, as buffers), encoded by a :class:`DescriptorEncoder` and fused with the graph vector (``concat``,
    ``gate`` or ``film``); without, the scaler and encoder are identities and the fusion is :class:`GraphOnly` (the
    readout ablation of the plain backbone). An MLP head maps the result to ``n_targets`` values, de-standardized to
    the target's units (or, with ``task_type="classification"``, passed through a sigmoid: probabilities).

    With ``node_embeddings`` (an encoder spec from :func:`~matgl_hybrid.models.negnn.encoder_spec`) it is a NEGNN
    (Kong et al. 2022): the node input is the atoms' types ⊕ the frozen NE vectors of a pretrained encoder, which
    lives inside the model (its weights are saved with it), and MEGNet's node embedding takes both.

    ``readout="native"`` builds a :class:`~matgl_hybrid.models.NativeModel` (the backbone as MatGL ships it), so
    that configurations and checkpoints saved as ``HybridModel`` with that readout keep loading.

    Everything needed to predict from a bare structure is a constructor argument, so ``save(dir)`` and
    :func:`~matgl_hybrid.checkpoint.load_checkpoint` (or, for folders you trust, ``matgl.load_model(dir)``, which
    imports the module ``model.json`` names before any check) round-trip it: element list, cutoff, descriptor set
    and version, the fitted :class:`DescriptorTransform` (as a dict) and the target mean and standard deviation.
    """

    __version__ = 2  # 2: MatGL's unused readout and head dropped from the backbone

    def __new__(cls, *args: Any, **kwargs: Any):
        """A :class:`NativeModel` for ``readout="native"`` (see the class docstring); else a HybridModel."""
        arguments = inspect.signature(cls.__init__).bind_partial(None, *args, **kwargs).arguments
        if cls is HybridModel and arguments.get("readout") == "native":  # by name: the two orders differ
            named = {k: v for k, v in arguments.items() if k not in ("self", "kwargs")}
            return NativeModel(**named, **arguments.get("kwargs", {}))
        return super().__new__(cls)

    def __init__(
        self,
        backbone: str = "megnet",
        element_types: Sequence[str] = DEFAULT_ELEMENTS,
        cutoff: float = 5.0,
        backbone_kwargs: dict[str, Any] | None = None,
        readout: str = "extensive",
        descriptor_set: str | None = None,
        descriptor_version: str | None = None,
        descriptor_transform: dict[str, Any] | None = None,
        descriptor_dim: int = 64,
        fusion: str = "concat",
        head_hidden: Sequence[int] = (64, 64),
        activation: str = "softplus2",
        n_targets: int = 1,
        task_type: str = "regression",
        node_embeddings: dict[str, Any] | None = None,
        target_names: Sequence[str] = ("target",),
        target_units: str | None = None,
        target_mean: Sequence[float] | None = None,
        target_std: Sequence[float] | None = None,
        pretrained_weights: dict[str, str] | None = None,
        trained_elements: Sequence[str] | None = None,
        **kwargs,
    ):
        """Build the model; see the class docstring. ``descriptor_transform`` is required with ``descriptor_set``.

        ``pretrained_weights``: ``{"name", "sha256"}`` of the shipped potential the backbone was fine-tuned from,
        kept in ``model.json`` (provenance: the model holds its fine-tuned weights and needs no other file); a
        reference the package does not ship with that sha256 is warned about.
        """
        if descriptor_set is not None and descriptor_transform is None:
            raise ValueError("a model with descriptors needs the fitted descriptor_transform")
        if backbone == "m3gnet" and (backbone_kwargs or {}).get("include_state"):
            raise ValueError(  # its last block's state update would never train (and DDP refuses unused weights)
                "the hybrid reads M3GNet's node features, not its state: include_state=True would leave the last "
                "block's state network untrained; leave it False, or use readout='native'"
            )
        if pretrained_weights is not None:
            if not (isinstance(pretrained_weights, dict)
                    and all(isinstance(pretrained_weights.get(k), str) for k in ("name", "sha256"))):  # fmt: skip
                raise ValueError(f"pretrained_weights must be a dict of str name and sha256: {pretrained_weights!r}")
            potentials.check_reference(pretrained_weights)
        super().__init__(
            backbone, element_types, cutoff, dict(backbone_kwargs or {}), n_targets, task_type, node_embeddings,
            target_names, target_units, target_mean, target_std, descriptor_set, descriptor_version, trained_elements,
        )  # fmt: skip
        self.save_args(locals(), kwargs)
        adapter = get_backbone(backbone)
        adapter.drop_head(self.backbone)
        self.readout = make_readout(readout, adapter.node_dim(self.backbone))
        graph_dim = self.readout.out_dim + adapter.state_dim(self.backbone)
        if descriptor_set is None:
            self.descriptor_scaler = self.encoder = nn.Identity()
            self.fusion = GraphOnly(graph_dim)
        else:
            self.descriptor_scaler = DescriptorScaler(descriptor_transform)
            self.encoder = DescriptorEncoder(self.descriptor_scaler.n_features, descriptor_dim, activation)
            self.fusion = make_fusion(fusion, graph_dim, descriptor_dim)
        self.head = MLP([self.fusion.out_dim, *head_hidden, n_targets], activation=make_activation(activation))

    def forward(self, g: Any, state_attr: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        """Predict in target units: (B,) for one target, (B, T) for several.

        Args:
            g: a PyG batch from :func:`matgl_hybrid.graphs.build_dataset` with ``pos`` and ``pbc_offshift`` set,
                and the raw ``descriptor`` (B, D) when the model uses descriptors.
            state_attr: (B, Ds) state attributes, as MatGL's collate gives them.
        """
        with swapped_attributes(g, node_type=self.node_input(g, state_attr)):
            node_feat, state = get_backbone(self.backbone_name).features(self.backbone, g, state_attr)
        graph = torch.cat([self.readout(node_feat, _batch_index(g, node_feat), dim_size=num_graphs(g)), state], dim=-1)
        return self.predict_from_graph(graph, getattr(g, "descriptor", None))

    def predict_from_graph(self, graph: torch.Tensor, descriptor: torch.Tensor | None) -> torch.Tensor:
        """The rest of :meth:`forward` after the readout: fusion with the raw descriptors and the head.

        Args:
            graph: (B, G) graph vectors, ``feature_dict["graph"]`` of a forward pass.
            descriptor: (B, D) raw descriptors (NaN allowed; imputed and standardized here), or None.

        Returns:
            Predictions in target units, shaped as :meth:`forward`'s. Descriptor importance uses it to permute
            descriptors without rerunning the graph network.
        """
        fused = self.fusion(graph, self.encoder(self.descriptor_scaler(descriptor)))
        out = self.output(self.head(fused))
        self.feature_dict = {"graph": graph, "fused": fused, "final": out}
        return per_target(out)

    @property
    def descriptor_names(self) -> tuple[str, ...]:
        """Names of the D descriptors the model takes, in order (empty without descriptors)."""
        return getattr(self.descriptor_scaler, "feature_names", ())


def _batch_index(g: Any, node_feat: torch.Tensor) -> torch.Tensor:
    """The graph of each node (N,): ``g.batch``, or all 0 for a single graph."""
    batch = getattr(g, "batch", None)
    return batch if batch is not None else torch.zeros(node_feat.shape[0], dtype=torch.long, device=node_feat.device)


HybridModel.register(NativeModel)  # what HybridModel(readout="native") builds: isinstance holds, load() accepts it
