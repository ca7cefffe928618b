"""HybridModel: a MatGL backbone, a readout, descriptor fusion and an MLP head, saved with MatGL's IOMixIn."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from matgl.config import DEFAULT_ELEMENTS
from matgl.layers import MLP
from matgl.models._core import MatGLModel

from matgl_hybrid import inference
from matgl_hybrid.checkpoint import VerifiedCheckpointMixIn
from matgl_hybrid.descriptors.sets import current_version
from matgl_hybrid.graphs import swapped_node_types
from matgl_hybrid.layers import DescriptorEncoder, DescriptorScaler, make_activation, make_fusion, make_readout
from matgl_hybrid.models.backbones import get_backbone
from matgl_hybrid.models.negnn import FrozenEncoder, NodeEmbeddingInput


class HybridModel(VerifiedCheckpointMixIn, MatGLModel):
    """GNN + human-designed descriptors (Gong et al. 2023) on a MatGL backbone.

    ``readout="native"`` is the backbone exactly as MatGL ships it (its own readout and head, e.g. MEGNet's
    Set2Set), with target standardization; it cannot fuse descriptors. Otherwise
    ``backbone`` (MEGNet, M3GNet or TensorNet, without MatGL's readout and output head, which it does not use)
    gives node features (N, F) [+ a state vector (B, Fs) for MEGNet]; ``readout`` (a PyG aggregation) pools them to
    (B, F'); when ``descriptor_set`` is given, the raw descriptors (B, D) are imputed and standardized by a
    :class:`DescriptorScaler` (the fitted transform, as buffers), encoded by a :class:`DescriptorEncoder` and fused
    with the graph vector (``concat``, ``gate`` or ``film``);
    an MLP head maps the result to ``n_targets`` values, de-standardized to the target's units (or, with
    ``task_type="classification"``, passed through a sigmoid: probabilities). Without
    descriptors it is the readout ablation of the plain backbone.

    With ``node_embeddings`` (an encoder spec from :func:`~matgl_hybrid.models.negnn.encoder_spec`) it is a NEGNN
    (Kong et al. 2022): MEGNet's node input becomes its element embedding ⊕ the frozen NE vectors of a pretrained
    encoder, which lives inside the model (its weights are saved with it).

    Everything needed to predict from a bare structure is a constructor argument, so ``save(dir)`` and
    :func:`~matgl_hybrid.checkpoint.load_checkpoint` (or, for folders you trust, ``matgl.load_model(dir)``, which
    imports the module ``model.json`` names before any check) round-trip it: element list, cutoff, descriptor set
    and version, the fitted :class:`DescriptorTransform` (as a dict) and the target mean and standard deviation.
    """

    __version__ = 2  # 2: MatGL's unused readout and head dropped from the backbone

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
        **kwargs,
    ):
        """Build the model; see the class docstring. ``descriptor_transform`` is required with ``descriptor_set``."""
        if descriptor_set is not None:
            descriptor_version = current_version(descriptor_set, descriptor_version)
        super().__init__()
        self.save_args(locals(), kwargs)
        self.element_types = tuple(element_types)
        self.cutoff = cutoff
        self.descriptor_set = descriptor_set
        self.descriptor_version = descriptor_version
        self.target_names = tuple(target_names)
        self.target_units = target_units
        if len(self.target_names) != n_targets:
            raise ValueError(f"{n_targets} targets but {len(self.target_names)} target names")

        self.backbone_name = backbone
        adapter = get_backbone(backbone)
        backbone_kwargs = dict(backbone_kwargs or {})
        if task_type not in ("regression", "classification"):
            raise ValueError(f"task_type must be 'regression' or 'classification', got {task_type!r}")
        self.task_type = task_type
        self.native = readout == "native"  # the backbone's own readout and head, as MatGL ships it
        if self.native and backbone == "megnet" and n_targets != 1:
            raise ValueError("MatGL's MEGNet head predicts one target: use another readout for several")
        if self.native and backbone != "megnet":
            backbone_kwargs.setdefault("ntargets", n_targets)
        self.backbone = adapter.cls(element_types=self.element_types, cutoff=cutoff, **backbone_kwargs)
        self.ne_encoder = None
        if node_embeddings is not None:  # NEGNN: element embedding ⊕ frozen pretrained NE vectors
            if backbone != "megnet":
                raise ValueError("node_embeddings (NEGNN) is implemented for the MEGNet backbone")
            self.ne_encoder = FrozenEncoder(node_embeddings, self.element_types, cutoff)
            embedding = self.backbone.embedding
            embedding.layer_node_embedding = NodeEmbeddingInput(
                len(self.element_types), embedding.dim_node_embedding, self.ne_encoder.width, embedding.activation
            )
        self.readout = self.descriptor_scaler = self.encoder = self.fusion = self.head = None
        if self.native:
            if descriptor_set is not None:
                raise ValueError("readout 'native' is the backbone's own readout and head: it cannot fuse descriptors")
        else:
            adapter.drop_head(self.backbone)
            self.readout = make_readout(readout, adapter.node_dim(self.backbone))
            head_in = self.readout.out_dim + adapter.state_dim(self.backbone)
            if descriptor_set is not None:
                if descriptor_transform is None:
                    raise ValueError("a model with descriptors needs the fitted descriptor_transform")
                self.descriptor_scaler = DescriptorScaler(descriptor_transform)
                self.encoder = DescriptorEncoder(self.descriptor_scaler.n_features, descriptor_dim, activation)
                self.fusion = make_fusion(fusion, head_in, descriptor_dim)
                head_in = self.fusion.out_dim
            self.head = MLP([head_in, *head_hidden, n_targets], activation=make_activation(activation))
        mean = torch.tensor(target_mean if target_mean is not None else [0.0] * n_targets, dtype=torch.float32)
        std = torch.tensor(target_std if target_std is not None else [1.0] * n_targets, dtype=torch.float32)
        self.register_buffer("target_mean", mean, persistent=False)
        self.register_buffer("target_std", std, persistent=False)

    def forward(self, g: Any, state_attr: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        """Predict in target units: (B,) for one target, (B, T) for several.

        Args:
            g: a PyG batch from :func:`matgl_hybrid.graphs.build_dataset` with ``pos`` and ``pbc_offshift`` set,
                and the raw ``descriptor`` (B, D) when the model uses descriptors.
            state_attr: (B, Ds) state attributes, as MatGL's collate gives them.
        """
        if self.ne_encoder is not None:
            node_input = torch.cat([g.node_type.unsqueeze(-1).float(), self.ne_encoder(g, state_attr)], dim=-1)
            with swapped_node_types(g, node_input):
                return self._forward(g, state_attr)
        return self._forward(g, state_attr)

    def _forward(self, g: Any, state_attr: torch.Tensor | None) -> torch.Tensor:
        num_graphs = int(getattr(g, "num_graphs", None) or 1)
        if self.native:
            out = self._to_target(self.backbone(g, state_attr=state_attr).reshape(num_graphs, -1))
            self.feature_dict = {"graph": self.backbone.feature_dict["readout"], "final": out}
            return out.squeeze(-1) if out.shape[-1] == 1 else out
        node_feat, state_feat = get_backbone(self.backbone_name).features(self.backbone, g, state_attr)
        batch = getattr(g, "batch", None)
        if batch is None:
            batch = torch.zeros(node_feat.shape[0], dtype=torch.long, device=node_feat.device)
        graph_vec = self.readout(node_feat, batch, dim_size=num_graphs)
        if state_feat is not None:
            graph_vec = torch.cat([graph_vec, state_feat.reshape(num_graphs, -1)], dim=-1)
        vec = graph_vec
        if self.encoder is not None:
            descriptors = getattr(g, "descriptor", None)
            if descriptors is None:
                raise ValueError("this model fuses descriptors: the graph batch has no 'descriptor' attribute")
            vec = self.fusion(graph_vec, self.encoder(self.descriptor_scaler(descriptors.reshape(num_graphs, -1))))
        out = self._to_target(self.head(vec))
        self.feature_dict = {"graph": graph_vec, "fused": vec, "final": out}
        return out.squeeze(-1) if out.shape[-1] == 1 else out

    def _to_target(self, raw: torch.Tensor) -> torch.Tensor:
        """Head output (B, T) -> target units, or probabilities (sigmoid) for classification."""
        if self.task_type == "classification":
            return torch.sigmoid(raw)
        return raw * self.target_std + self.target_mean

    @property
    def descriptor_names(self) -> tuple[str, ...]:
        """Names of the D descriptors the model takes, in order (empty without descriptors)."""
        return self.descriptor_scaler.feature_names if self.descriptor_scaler is not None else ()

    def predict(
        self, structures: Sequence, batch_size: int = 64, cache_dir=None, n_jobs: int = 1, ids: Sequence | None = None
    ) -> np.ndarray:
        """Predictions (n,) or (n, T) in the target's units, from pymatgen or ASE structures.

        Descriptors are computed on the fly (through the cache at ``cache_dir``, if given); see
        :func:`matgl_hybrid.inference.predict`, which raises ``InvalidStructureError`` naming an entry the model
        cannot predict.
        """
        return inference.predict(self, structures, ids, batch_size=batch_size, cache_dir=cache_dir, n_jobs=n_jobs)

    def predict_structure(self, structure, **kwargs) -> torch.Tensor:
        """Predict one structure: a tensor of shape () for one target, (T,) for several."""
        return torch.as_tensor(self.predict([structure], **kwargs)[0])
