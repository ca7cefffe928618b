"""A dataset file's descriptors as a table (``id``, one column per descriptor, the target): ``featurize`` for files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from matgl_hybrid import data
from matgl_hybrid.data import input_paths
from matgl_hybrid.descriptors.bank import archive_values, featurize
from matgl_hybrid.descriptors.sets import DescriptorSpec, get_descriptor_set
from matgl_hybrid.descriptors.summary import describe_descriptors
from matgl_hybrid.files import atomic_write_text, check_paths_distinct


@dataclass
class DescriptorTable:
    """What :func:`featurize_file` computed.

    Attributes:
        frame: (n, 1 + k [+ 1]) ``id``, the k descriptors, and the target when one was asked for.
        summary: each descriptor's range and rank correlation with the target, when asked for.
        archived: structures whose cached values went to the archive, when one was asked for.
    """

    frame: pd.DataFrame
    summary: pd.DataFrame | None = None
    archived: int | None = None


def featurize_file(
    source: str | Path,
    descriptor_set: DescriptorSpec = "gong28",
    *,
    target: str | None = None,
    out: str | Path | None = None,
    archive: str | Path | None = None,
    summary: bool = False,
    cache_dir: str | Path | None = None,
    n_jobs: int = -1,
) -> DescriptorTable:
    """Compute the descriptors of the structures in ``source`` (anything :func:`matgl_hybrid.data.load` reads).

    Args:
        target: a target column to carry into the table (and to rank the descriptors by, with ``summary``).
        out: write the table there as CSV (atomically).
        archive: also write the cached values to this gzipped archive, for ``cache-import`` elsewhere.
        summary: rank each descriptor by its correlation with ``target``.

    Raises:
        ValueError: ``archive`` without a cache, ``summary`` without ``target``, or an output path that is
            ``source`` or the other output (before any work).
    """
    if archive is not None and cache_dir is None:
        raise ValueError("an archive holds the cached values: it cannot be written without a cache (--no-cache)")
    if summary and target is None:
        raise ValueError("the summary ranks descriptors by their correlation with the target: give a target")
    if isinstance(source, str | Path):  # writing an output over the input would destroy it
        check_paths_distinct({"out": out, "archive": archive}, input_paths("source", source, target))
    dataset = data.load(source, target=target)
    if dataset.target_name in get_descriptor_set(descriptor_set).columns:  # it would take the descriptor's place
        raise ValueError(f"target {dataset.target_name!r} has the name of a descriptor column of the table")
    values = featurize(dataset.structures, descriptor_set, n_jobs=n_jobs, cache_dir=cache_dir, ids=dataset.ids)
    frame = values.copy()
    frame.insert(0, "id", dataset.ids)
    if dataset.targets is not None:
        frame[dataset.target_name] = dataset.targets
    if out is not None:
        atomic_write_text(out, frame.to_csv(index=False))
    table = DescriptorTable(frame)
    if archive is not None:
        table.archived = archive_values(dataset.structures, descriptor_set, cache_dir, archive)
    if summary:
        table.summary = describe_descriptors(values, dataset.targets)
    return table
