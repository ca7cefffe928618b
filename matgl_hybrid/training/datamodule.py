"""``HybridDataModule``: featurize, fit the descriptor transform on the training split only, graphs, loaders."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from matgl.config import DEFAULT_ELEMENTS
from matgl.ext.pymatgen import get_element_list
from torch.utils.data import DistributedSampler

from matgl_hybrid import potentials
from matgl_hybrid.data import StructureData
from matgl_hybrid.descriptors import DescriptorTransform, featurize, get_descriptor_set
from matgl_hybrid.descriptors.sets import DescriptorSet
from matgl_hybrid.graphs import build_dataset, make_loader
from matgl_hybrid.models.backbones import get_backbone
from matgl_hybrid.training.spec import TrainSpec


def batches_per_epoch(n_train: int, batch_size: int) -> int:
    """Training batches an epoch over ``n_train`` structures (of one process) runs: a last batch of one structure
    is dropped (BatchNorm cannot normalise it), a shorter one of several is kept."""
    return max(1, n_train // batch_size + (n_train % batch_size > 1))


def model_elements(spec: TrainSpec, structures: Sequence) -> tuple[str, ...]:
    """The elements a model of ``spec`` trained on ``structures`` embeds, in its embedding's order: a pretrained
    potential's own, MatGL's default ones (``"all"``), those of ``structures`` (``"training"``), or the spec's
    list (:func:`check_embedded` checks data against them)."""
    potential = get_backbone(spec.backbone).potential
    if potential is not None:  # the data's elements are checked against them (check_embedded names the entries)
        return tuple(potentials.element_types(potential))
    if spec.element_types == "all":
        return tuple(DEFAULT_ELEMENTS)
    if spec.element_types == "training":
        return tuple(get_element_list(structures))
    return tuple(spec.element_types)


def check_embedded(element_types: Sequence[str], data: StructureData, potential: str | None = None) -> None:
    """Raise ValueError naming the elements of ``data`` outside ``element_types`` (those of the pretrained
    ``potential``, if given) and the first entries with them."""
    known = set(element_types)
    if missing := sorted(set(get_element_list(data.structures)) - known):
        having = [i for i, s in zip(data.ids, data.structures, strict=True) if {e.symbol for e in s.elements} - known]
        shown = ", ".join(repr(i) for i in having[:3]) + (" …" if len(having) > 3 else "")
        where, remedy = (
            (f"the pretrained potential {potential} embeds", "or a backbone that learns its element embeddings")
            if potential else ("the model embeds", "or add them to element_types (--config)")
        )  # fmt: skip
        raise ValueError(
            f"{', '.join(missing)} (in {len(having)} entries: {shown}) are not among the {len(known)} elements "
            f"{where}: leave those entries out, {remedy}"
        )


class HybridDataModule(L.LightningDataModule):
    """The training and validation data of a run: descriptors, the fitted transform, graph datasets, loaders.

    :meth:`setup` featurizes both splits (when ``spec.descriptor_set`` is set), fits a :class:`DescriptorTransform` on
    the training split only (``transform_``, which the model takes as ``descriptor_transform``) and builds MatGL
    graph datasets (``train_set``, ``val_set``) carrying the *raw* descriptors (the model standardizes them
    itself). It does its work once: :func:`fit` calls it before building the model, and Lightning's own call in
    ``trainer.fit`` finds everything in place.

    Loaders: training batches are shuffled (seeded); under DDP a ``DistributedSampler`` shards them (and reshuffles
    with the seed plus the epoch). The single-process shuffle's generator state is saved in Lightning checkpoints
    (:meth:`state_dict`): a resumed run shuffles its next epochs as the uninterrupted run did. Validation is
    sharded without repeats (``UnrepeatedDistributedSampler``), so that the reduced metric is exact; the Trainer
    must not replace the samplers (``use_distributed_sampler=False``). A last training batch of a single structure
    is dropped (BatchNorm cannot normalise a batch of one).

    Args:
        train, val: the training and validation splits, with targets.
        spec: the run's settings; used: ``descriptor_set``, ``cutoff``, ``element_types``, ``batch_size``,
            ``seed``, ``n_jobs``, ``progress``.
        cache_dir: descriptor cache folder; None: no cache.
        element_types: the model's element list (default: a pretrained backbone's own; else ``spec.element_types``:
            MatGL's 89 for "all", the elements of ``train`` and ``val`` for "training", or the list given).
    """

    def __init__(
        self,
        train: StructureData,
        val: StructureData,
        spec: TrainSpec,
        *,
        cache_dir: str | Path | None = None,
        element_types: Sequence[str] | None = None,
    ):
        super().__init__()
        self.train, self.val, self.spec, self.cache_dir = train, val, spec, cache_dir
        if element_types is None:
            element_types = model_elements(spec, train.structures + val.structures)
        self.element_types: tuple[str, ...] = tuple(element_types)
        for part in (train, val):  # else MatGL's graph converter fails on the first one, a KeyError naming no entry
            check_embedded(self.element_types, part, get_backbone(spec.backbone).potential)
        self.descriptor_set: DescriptorSet | None = (
            get_descriptor_set(spec.descriptor_set) if spec.descriptor_set is not None else None
        )
        self.batch_size, self.seed = spec.batch_size, spec.seed
        self.transform_: DescriptorTransform | None = None
        self.train_set: Any = None
        self.val_set: Any = None
        self._shuffle: torch.Generator | None = None  # the last training loader's generator
        self._shuffle_state: torch.Tensor | None = None  # its state restored from a checkpoint

    @property
    def descriptor_version(self) -> str | None:
        """Version of the descriptor set (None without descriptors)."""
        return self.descriptor_set.version if self.descriptor_set is not None else None

    def setup(self, stage: str | None = None) -> None:
        """Featurize, fit the transform on the training split, build the graph datasets; only the first call works."""
        if self.train_set is not None:
            return
        spec = self.spec
        descriptors: list[np.ndarray | None] = [None, None]
        if self.descriptor_set is not None:
            frames = [
                featurize(
                    d.structures,
                    self.descriptor_set,
                    n_jobs=spec.n_jobs,
                    cache_dir=self.cache_dir,
                    ids=d.ids,
                    progress=spec.progress,
                )
                for d in (self.train, self.val)
            ]
            self.transform_ = DescriptorTransform(clip=spec.clip_descriptors).fit(frames[0])
            descriptors = [f.to_numpy(dtype=np.float64) for f in frames]  # raw: the model standardizes them
        self.train_set, self.val_set = (
            build_dataset(d.structures, self.element_types, spec.cutoff, d.ids, x, d.targets)
            for d, x in zip((self.train, self.val), descriptors, strict=True)
        )

    def _world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)

    def train_dataloader(self) -> Any:
        world, rank = self._world()
        if world > 1:
            sampler = DistributedSampler(self.train_set, num_replicas=world, rank=rank, shuffle=True, seed=self.seed)
            # BatchNorm cannot normalise a batch of one: drop a last training batch of a single structure.
            return make_loader(
                self.train_set, self.batch_size, sampler=sampler, drop_last=len(sampler) % self.batch_size == 1
            )
        if self._shuffle is None:  # one generator for the run: a loader rebuilt each epoch shuffles on
            self._shuffle = torch.Generator().manual_seed(self.seed)
        if self._shuffle_state is not None:  # restored from a checkpoint, once
            self._shuffle.set_state(self._shuffle_state)
            self._shuffle_state = None
        drop_last = len(self.train_set) % self.batch_size == 1
        return make_loader(self.train_set, self.batch_size, shuffle=True, generator=self._shuffle, drop_last=drop_last)

    def val_dataloader(self) -> Any:
        world, rank = self._world()
        sampler = None
        if world > 1:
            sampler = UnrepeatedDistributedSampler(self.val_set, num_replicas=world, rank=rank, shuffle=False)
        return make_loader(self.val_set, self.batch_size, sampler=sampler)

    def state_dict(self) -> dict[str, Any]:
        """What Lightning checkpoints keep of the data module: the training shuffle's generator state, if any."""
        return {} if self._shuffle is None else {"shuffle": self._shuffle.get_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the training shuffle from a checkpoint: the next training loader goes on from its state."""
        self._shuffle_state = state_dict.get("shuffle")
