"""Data: loading and validation of crystal structures and their regression targets, and data splits.

One concept per module (imports run one way: validation ← structure_data ← loading, targets):

- :mod:`~matgl_hybrid.data.validation`: ``InvalidStructureError``, ``SkippedEntry``, ``validate_structure``,
  ``validate_target``, ``as_structure``;
- :mod:`~matgl_hybrid.data.structure_data`: ``StructureData``, the validated dataset every loader returns;
- :mod:`~matgl_hybrid.data.loading`: ``load`` and the loaders it dispatches to (``load_records``, ``load_folder``,
  ``from_dataframe``, ``from_structures``), ``read_csv``, ``load_demo``;
- :mod:`~matgl_hybrid.data.targets`: target transforms (``log10_targets``) and known units (``target_units``);
- :mod:`~matgl_hybrid.data.identity`: ``structure_key``, the exact key of a structure (the descriptor cache's,
  and copies within a dataset); ``material_key``, one material across databases (de-duplication);
- :mod:`~matgl_hybrid.data.splits`: ``split_indices``, ``kfold_splits``, ``MATBENCH_SEED``.

Every name is re-exported here, so ``from matgl_hybrid.data import load`` and ``data.load(...)`` work as before.
"""

from matgl_hybrid.data.identity import material_key, structure_key
from matgl_hybrid.data.loading import (
    StrPath,
    from_dataframe,
    from_structures,
    input_paths,
    load,
    load_demo,
    load_folder,
    load_records,
    read_csv,
)
from matgl_hybrid.data.splits import MATBENCH_SEED, kfold_splits, split_indices
from matgl_hybrid.data.structure_data import StructureData
from matgl_hybrid.data.targets import log10_targets, target_units
from matgl_hybrid.data.validation import (
    InvalidStructureError,
    SkippedEntry,
    as_structure,
    validate_structure,
    validate_target,
)

__all__ = [
    "MATBENCH_SEED",
    "InvalidStructureError",
    "SkippedEntry",
    "StrPath",
    "StructureData",
    "as_structure",
    "from_dataframe",
    "from_structures",
    "input_paths",
    "kfold_splits",
    "load",
    "load_demo",
    "load_folder",
    "load_records",
    "log10_targets",
    "material_key",
    "read_csv",
    "split_indices",
    "structure_key",
    "target_units",
    "validate_structure",
    "validate_target",
]
