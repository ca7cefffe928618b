"""Matbench dataset files: where matminer keeps them, their sha256 checked against matminer's metadata, loading."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from matminer.datasets.utils import _get_data_home, _load_dataset_dict

from matgl_hybrid.checkpoint import sha256_file


class DatasetFileError(FileNotFoundError):
    """A Matbench dataset file is missing or is not the official one."""


def is_dataset(name: str) -> bool:
    """Whether matminer knows a dataset called ``name`` (e.g. a folder name that may be a task's)."""
    return name in _load_dataset_dict()


def dataset_file(task: str, data_dir: str | Path | None = None) -> Path:
    """Where matminer looks for ``task``'s file: ``data_dir``, else ``$MATMINER_DATA``, else matminer's folder."""
    meta = _load_dataset_dict()[task]
    return Path(_get_data_home(str(data_dir) if data_dir else None)) / f"{task}.{meta['file_type']}"


@dataclass(frozen=True)
class DatasetFile:
    """A Matbench dataset file as checked before use.

    Attributes:
        task: the dataset name, e.g. ``matbench_jdft2d``.
        path: where it was read.
        sha256: its checksum.
        official: whether it matches matminer's metadata.
        provenance: where an unofficial file comes from, as the user vouching for it said.
    """

    task: str
    path: Path
    sha256: str
    official: bool
    provenance: str = ""

    def note(self) -> str:
        """One sentence for info.json notes and reports; an unofficial file is called "reconstructed"."""
        if self.official:
            return f"{self.task}: the official dataset file (sha256 {self.sha256})."
        official = _load_dataset_dict()[self.task]["hash"]
        return (
            f"{self.task}: a reconstructed dataset file, not the official one: {self.path.name} has sha256 "
            f"{self.sha256} (matminer's official file: {official}); provenance: {self.provenance or 'not given'}. "
            "Run with the official folds (matbench_v0.1_validation.json) on the same rows."
        )


def verify_dataset_file(
    task: str,
    data_dir: str | Path | None = None,
    download: bool = True,
    allow_unofficial: bool = False,
    provenance: str = "",
) -> DatasetFile | None:
    """Check ``task``'s file against matminer's sha256 before use.

    ``allow_unofficial``: accept a file whose sha256 differs (one the user vouches for, e.g. a reconstruction;
    ``provenance`` says where it comes from); the returned record then says it is not official.

    Returns the checked file, or None when it is absent and ``download`` lets matminer fetch it.

    Raises:
        DatasetFileError: absent with ``download=False`` (names the file, where to put it and its URL), or
            present with the wrong sha256 and ``allow_unofficial`` off.
    """
    meta = _load_dataset_dict()[task]
    path = dataset_file(task, data_dir)
    if not path.exists():
        if download:
            return None
        raise DatasetFileError(
            f"{task}: {path} not found and downloading is off. Download {meta['url']} "
            f"(sha256 {meta['hash']}) and put it at {path}, or pass --data-dir DIR holding {path.name}"
        )
    actual = sha256_file(path)
    if actual != meta["hash"] and not allow_unofficial:
        raise DatasetFileError(
            f"{task}: {path} has sha256 {actual}, but matminer's metadata says {meta['hash']}: the file is corrupt, "
            f"truncated or not the official dataset; delete it and download {meta['url']} again (or, for a file you "
            "vouch for, pass --allow-unofficial-data: the run then records its sha256 and calls it reconstructed)"
        )
    return DatasetFile(task, path, actual, actual == meta["hash"], provenance if actual != meta["hash"] else "")


def load_task(
    task,
    data_dir: str | Path | None = None,
    download: bool = True,
    allow_unofficial: bool = False,
    provenance: str = "",
) -> DatasetFile:
    """Load a ``MatbenchTask``'s data through matminer (``MATMINER_DATA`` = ``data_dir``), verified first (see
    :func:`verify_dataset_file`); returns the file that was read."""
    checked = verify_dataset_file(task.dataset_name, data_dir, download, allow_unofficial, provenance)
    if data_dir is not None:
        os.environ["MATMINER_DATA"] = str(Path(data_dir).resolve())
    try:
        task.load()
    except OSError as exc:  # no network, refused download, …
        meta = _load_dataset_dict()[task.dataset_name]
        raise DatasetFileError(
            f"{task.dataset_name}: could not download {meta['url']} ({exc}). Without internet, download it "
            f"elsewhere and put it at {dataset_file(task.dataset_name, data_dir)} (or pass --data-dir)"
        ) from exc
    # matbench names rows by position (mb-jdft2d-001, …): a file of another length has other ids than its folds
    expected, rows = task.metadata.n_samples, len(task.df)
    if rows != expected or not set(task.validation.fold_0.test).issubset(task.df.index):
        raise DatasetFileError(
            f"{dataset_file(task.dataset_name, data_dir)} has {rows} rows, Matbench's {task.dataset_name} "
            f"{expected}: its rows are not those of the official folds"
        )
    return checked or verify_dataset_file(task.dataset_name, data_dir, download=False)  # the downloaded file
