"""GraphModel: what matgl-hybrid's single models share (a backbone, its node input, the target output, predict)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from matgl.models._core import MatGLModel

from matgl_hybrid import inference
from matgl_hybrid.checkpoint import VerifiedCheckpointMixIn
from matgl_hybrid.layers import make_output
from matgl_hybrid.models.backbones import get_backbone
from matgl_hybrid.models.negnn import node_input

if TYPE_CHECKING:
    from pathlib import Path

    from ase import Atoms
    from pymatgen.core import Structure


class Predicting:
    """``predict`` and ``predict_structure`` from bare structures, the same for a model and an ensemble (one
    prediction path: :func:`matgl_hybrid.inference.predict`)."""

    def predict(
        self,
        structures: Sequence,
        batch_size: int = 64,
        cache_dir: str | Path | None = None,
        n_jobs: int = 1,
        ids: Sequence | None = None,
        *,
        return_std: bool = False,
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Predictions (n,) or (n, T) in the target's units, from pymatgen or ASE structures; with ``return_std``
        also their standard deviation over an ensemble's members (zeros for one model), the same for every model.

        Descriptors are computed on the fly (through the cache at ``cache_dir``, if given); see
        :func:`matgl_hybrid.inference.predict`, which raises ``InvalidStructureError`` naming an entry the model
        cannot predict, and ``ValueError`` when this installation computes another version of the model's
        descriptor set.
        """
        return inference.predict(
            self, structures, ids, batch_size=batch_size, cache_dir=cache_dir, n_jobs=n_jobs, return_std=return_std
        )

    def predict_structure(self, structure: Structure | Atoms, **kwargs) -> torch.Tensor:
        """Predict one structure: a tensor of shape () for one target, (T,) for several (``predict``'s keyword
        arguments, but ``return_std``: call ``predict`` for the spread)."""
        if kwargs.get("return_std"):
            raise ValueError("predict_structure gives the prediction only: call predict([structure], return_std=True)")
        return torch.as_tensor(self.predict([structure], **kwargs)[0])


class GraphModel(Predicting, VerifiedCheckpointMixIn, MatGLModel):
    """A MatGL backbone with the node input chosen when the model is built (``ne_encoder``, see
    :func:`~matgl_hybrid.models.negnn.node_input`), the output of its task (``output``: de-standardization or a
    sigmoid), and what it takes to predict from a bare structure: element list, cutoff, descriptor set and version,
    target names and units.

    Subclasses (:class:`~matgl_hybrid.models.HybridModel`, :class:`~matgl_hybrid.models.NativeModel`) add what maps
    the backbone to the head's raw output and save their constructor arguments (``save_args``).

    The descriptor version is not checked here: a model can be built, saved and loaded whatever this installation
    computes; :func:`matgl_hybrid.inference.predict` refuses to feed it descriptors of another version.
    """

    #: Whether the backbone's own readout and head (as MatGL ships it) make the prediction.
    native = False

    def __init__(
        self,
        backbone: str,
        element_types: Sequence[str],
        cutoff: float,
        backbone_kwargs: dict[str, Any],
        n_targets: int,
        task_type: str,
        node_embeddings: dict[str, Any] | None,
        target_names: Sequence[str],
        target_units: str | None,
        target_mean: Sequence[float] | None,
        target_std: Sequence[float] | None,
        descriptor_set: str | None = None,
        descriptor_version: str | None = None,
        trained_elements: Sequence[str] | None = None,
    ):
        """Build the backbone (``get_backbone(backbone).cls`` with ``backbone_kwargs``) and its node input.

        ``trained_elements``: the elements of the structures the model trained on (None: not recorded, as in models
        saved before 0.2); an embedded element outside them never trained, and predictions for it are warned about.
        """
        super().__init__()
        self.element_types = tuple(element_types)
        self.trained_elements = None if trained_elements is None else tuple(trained_elements)
        self.cutoff = cutoff
        self.descriptor_set = descriptor_set
        self.descriptor_version = descriptor_version
        self.target_names = tuple(target_names)
        self.target_units = target_units
        if len(self.target_names) != n_targets:
            raise ValueError(f"{n_targets} targets but {len(self.target_names)} target names")
        self.task_type = task_type
        self.output = make_output(task_type, n_targets, target_mean, target_std)
        self.backbone_name = backbone
        try:
            self.backbone = get_backbone(backbone).cls(element_types=self.element_types, cutoff=cutoff,
                                                       **backbone_kwargs)  # fmt: skip
        except TypeError as exc:  # a keyword MatGL's class does not take, or a value of the wrong kind
            raise ValueError(f"backbone_kwargs {backbone_kwargs} do not build MatGL's {backbone}: {exc}") from None
        #: The node input (named ``ne_encoder``, its weights' name in checkpoints since NEGNN models had one).
        self.ne_encoder = node_input(node_embeddings, backbone, self.backbone, cutoff)

    @property
    def node_input(self) -> torch.nn.Module:
        """``g, state_attr -> node input (N, …)``: the atoms' types, or NEGNN's types ⊕ frozen NE vectors."""
        return self.ne_encoder

    @property
    def descriptor_names(self) -> tuple[str, ...]:
        """Names of the D descriptors the model takes, in order (empty without descriptors)."""
        return ()

    def record_trained_elements(self, elements: Sequence[str]) -> None:
        """Record the elements of the structures the model trained on, as the constructor does (saved with the
        model): for a model saved before they were recorded, from its training data."""
        self.trained_elements = tuple(elements)
        self._init_args["trained_elements"] = list(self.trained_elements)


def per_target(out: torch.Tensor) -> torch.Tensor:
    """Predictions (B, T) as a model returns them: (B,) for one target, (B, T) for several."""
    return out.squeeze(-1) if out.shape[-1] == 1 else out
