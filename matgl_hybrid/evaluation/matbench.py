"""Matbench v0.1 runner on the published folds, and leaderboard-ready submission folders.

The folds, the recording and the scoring are matbench's own (``MatbenchBenchmark``, ``task.record``,
``mb.as_dict``, written gzipped by :func:`write_results`); datasets load through matminer's ``load_dataset``
(``MATMINER_DATA``). Each finished fold is kept in ``<out>/folds/<task>/fold<k>.json`` so that a crash loses at
most the fold in progress.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
import os
import platform
import pprint
import re
import time
import warnings
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matminer.datasets.utils import _load_dataset_dict
from tqdm.auto import tqdm

from matgl_hybrid.checkpoint import sha256_file
from matgl_hybrid.data import StructureData, from_dataframe
from matgl_hybrid.descriptors import get_descriptor_set
from matgl_hybrid.evaluation.folds import FoldStore, summarize
from matgl_hybrid.evaluation.report import write_report
from matgl_hybrid.files import atomic_write_bytes, atomic_write_text
from matgl_hybrid.fingerprint import run_fingerprint
from matgl_hybrid.training import TrainSpec, device_name, fit
from matgl_hybrid.version import installed_version

if TYPE_CHECKING:
    from matbench.bench import MatbenchBenchmark

LEADERBOARD_FILE = Path(__file__).with_name("leaderboard.json")

#: Packages whose exact versions go into info.json's ``requirements``.
REQUIREMENTS = (
    "matgl-hybrid",
    "matgl",
    "torch",
    "torch-geometric",
    "lightning",
    "pymatgen",
    "matminer",
    "matbench",
    "scikit-learn",
    "numpy",
    "pandas",
)

CITATIONS = {
    "gong2023": (
        "@article{gong2023examining, title={Examining graph neural networks for crystal structures: limitations "
        "and opportunities for capturing periodicity}, author={Gong, Sheng and Yan, Keqiang and Xie, Tian and "
        "Shao-Horn, Yang and Gomez-Bombarelli, Rafael and Ji, Shuiwang and Grossman, Jeffrey C.}, "
        "journal={Science Advances}, volume={9}, number={45}, pages={eadi3245}, year={2023}, "
        "doi={10.1126/sciadv.adi3245}}"
    ),
    "matgl": (
        "@article{ko2025materials, title={Materials Graph Library (MatGL), an open-source graph deep learning "
        "library for materials science and chemistry}, author={Ko, Tsz Wai and Deng, Bowen and Nassar, Marcel and "
        "Barroso-Luque, Luis and Liu, Runze and Qi, Ji and Thakur, Atul C. and Mishra, Aditya Ranganath and Liu, "
        "Elliott and Ceder, Gerbrand and Miret, Santiago and Ong, Shyue Ping}, journal={npj Computational "
        "Materials}, volume={11}, pages={253}, year={2025}, doi={10.1038/s41524-025-01742-y}}"
    ),
    "megnet": (
        "@article{chen2019graph, title={Graph networks as a universal machine learning framework for molecules and "
        "crystals}, author={Chen, Chi and Ye, Weike and Zuo, Yunxing and Zheng, Chen and Ong, Shyue Ping}, "
        "journal={Chemistry of Materials}, volume={31}, number={9}, pages={3564--3572}, year={2019}, "
        "doi={10.1021/acs.chemmater.9b01294}}"
    ),
    "chgnet": (
        "@article{deng2023chgnet, title={CHGNet as a pretrained universal neural network potential for "
        "charge-informed atomistic modelling}, author={Deng, Bowen and Zhong, Peichen and Jun, KyuJung and Riebesell, "
        "Janosh and Han, Kevin and Bartel, Christopher J. and Ceder, Gerbrand}, journal={Nature Machine "
        "Intelligence}, volume={5}, pages={1031--1041}, year={2023}, doi={10.1038/s42256-023-00716-3}}"
    ),
    "matbench": (
        "@article{dunn2020benchmarking, title={Benchmarking materials property prediction methods: the Matbench "
        "test set and Automatminer reference algorithm}, author={Dunn, Alexander and Wang, Qi and Ganose, Alex and "
        "Dopp, Daniel and Jain, Anubhav}, journal={npj Computational Materials}, volume={6}, pages={138}, "
        "year={2020}, doi={10.1038/s41524-020-00406-3}}"
    ),
}


#: How info.json's long description names each descriptor set of a spec (a ``+``-joined set name).
SET_DESCRIPTIONS = {
    "gong28": "the 28 global structure descriptors of Gong et al. (2023)",
    "composition": "Magpie composition statistics (matminer's ElementProperty)",
    "chgnet": (
        "frozen CHGNet 0.3.0 features (crystal and mean atom features, energy per atom and mean |magmom|; the "
        "universal potential pretrained on MPtrj, the Materials Project relaxation trajectories, weights from the "
        "chgnet PyPI wheel)"
    ),
    "chgnet_noenergy": (
        "frozen CHGNet 0.3.0 features (crystal and mean atom features and mean |magmom|, without its energy; the "
        "universal potential pretrained on MPtrj, the Materials Project relaxation trajectories, weights from the "
        "chgnet PyPI wheel)"
    ),
    "sim:chgnet": (
        "quantities simulated with CHGNet 0.3.0 through matcalc (relaxed energy and volume change, EOS bulk modulus "
        "and its derivative, Γ-point phonon frequencies)"
    ),
    "sim:chgnet:full": (
        "quantities simulated with CHGNet 0.3.0 through matcalc (relaxed energy and volume change, EOS bulk modulus "
        "and its derivative, Γ-point phonon frequencies; elastic moduli and anisotropy; last phonon DOS peak, heat "
        "capacity and internal energy at 300 K)"
    ),
}


def describe_descriptor_set(name: str) -> str:
    """The descriptor set ``name`` in words, part by part (unknown parts by their name)."""
    return "; ".join(SET_DESCRIPTIONS.get(part, f"the '{part}' descriptors") for part in name.split("+"))


class DatasetFileError(FileNotFoundError):
    """A Matbench dataset file is missing or is not the official one."""


def dataset_file(task: str, data_dir: str | Path | None = None) -> Path:
    """Where matminer looks for ``task``'s file: ``data_dir``, else ``$MATMINER_DATA``, else matminer's folder."""
    from matminer.datasets.utils import _get_data_home

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
    return checked or verify_dataset_file(task.dataset_name, data_dir, download=False)  # the downloaded file


#: A candidate's name, which names its folder ``folds/<task>/<name>/``: no path separator, no leading dot.
CANDIDATE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")

#: The JSON values that each type annotation of a TrainSpec field accepts (a part not listed accepts any).
_JSON_KINDS: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (int, float),
    "str": (str,),
    "bool": (bool,),
    "None": (type(None),),
    "tuple[int, ...]": (list,),
    "list[str]": (list,),
    "dict[str, Any]": (dict,),
}


class _DuplicateKey(ValueError):
    """A key given twice in one JSON object."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json`` ``object_pairs_hook`` refusing a key given twice (``json`` would keep the last one silently)."""
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen.add(key)
    return dict(pairs)


def _json_kind_accepts(annotation: str, value: Any) -> bool:
    """Whether a JSON ``value`` fits a TrainSpec field annotated ``annotation`` (a bool is no number)."""
    parts = annotation.split(" | ")
    if isinstance(value, bool):
        return "bool" in parts
    return any(isinstance(value, _JSON_KINDS.get(part, object)) for part in parts)


def check_candidate_name(name: Any) -> None:
    """Raise ValueError unless ``name`` matches :data:`CANDIDATE_NAME` (it becomes a folder name)."""
    if not isinstance(name, str) or not CANDIDATE_NAME.fullmatch(name):
        raise ValueError(
            f"candidate name {name!r}: use letters, digits, '_', '-' and '.', not starting with '.' (it names a folder)"
        )


def read_candidates(path: str | Path) -> dict[str, dict[str, Any]]:
    """Candidates for :attr:`MatbenchRun.candidates` from a JSON file: ``{"name": {TrainSpec field: value}}``.

    Raises:
        ValueError: the file is not such an object: not JSON, a name given twice, a name that is no simple folder
            name, a candidate that is no object or sets an unknown field or a value of the wrong type (one line
            naming the file and the entry).
    """
    try:
        values = json.loads(Path(path).read_text(), object_pairs_hook=_unique_keys)
    except _DuplicateKey as exc:
        raise ValueError(f"{path}: {exc.args[0]!r} is given twice in one object (json would keep the last)") from None
    except ValueError as exc:
        raise ValueError(f"{path} is not valid JSON (empty, truncated or damaged?): {exc}") from None
    if not isinstance(values, dict) or not values:
        raise ValueError(f"{path}: expected a non-empty JSON object {{candidate name: {{TrainSpec field: value}}}}")
    annotations = {f.name: str(f.type) for f in dataclasses.fields(TrainSpec)}
    for name, changes in values.items():
        try:
            check_candidate_name(name)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
        if not isinstance(changes, dict):
            raise ValueError(f"{path}: candidate {name!r} is {type(changes).__name__}, not an object of spec fields")
        if unknown := sorted(set(changes) - set(annotations)):
            raise ValueError(f"{path}: candidate {name!r} has unknown TrainSpec fields {unknown}")
        wrong = [
            f"{k}={v!r} ({annotations[k]})" for k, v in changes.items() if not _json_kind_accepts(annotations[k], v)
        ]
        if wrong:
            raise ValueError(f"{path}: candidate {name!r} has values of the wrong type: {', '.join(wrong)}")
        try:
            TrainSpec(**changes)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{path}: candidate {name!r}: {exc}") from None
    return values


def write_results(mb: MatbenchBenchmark, path: str | Path) -> None:
    """Write ``mb`` as the leaderboard's ``results.json.gz``: the JSON of ``mb.as_dict()``, gzip-compressed (as
    matbench's own ``to_file`` writes and its ``from_file`` reads a ``.gz`` name upstream; matbench 0.6's writes
    plain JSON whatever the name), atomically."""
    atomic_write_bytes(path, gzip.compress(json.dumps(mb.as_dict()).encode(), mtime=0))


def read_results(path: str | Path) -> MatbenchBenchmark:
    """A ``results.json.gz`` read as the leaderboard reads it (gzip-compressed JSON of a MatbenchBenchmark).

    Raises:
        ValueError: the file is not gzip-compressed (e.g. plain JSON, as earlier versions wrote it), or its
            content is not JSON.
    """
    from matbench.bench import MatbenchBenchmark  # 4-5 s to import: only when a results file is read

    raw = Path(path).read_bytes()
    if raw[:2] != b"\x1f\x8b":
        raise ValueError(f"{path} is not gzip-compressed (plain JSON?): the leaderboard reads it with gzip")
    try:
        values = json.loads(gzip.decompress(raw))
    except (OSError, EOFError, zlib.error, ValueError) as exc:
        raise ValueError(f"{path} is not gzip-compressed JSON (truncated or damaged?): {exc}") from None
    return MatbenchBenchmark.from_dict(values)


def _structures(inputs) -> StructureData:
    frame = inputs.to_frame(name="structure")
    return from_dataframe(frame)


@dataclass
class MatbenchRun:
    """A Matbench run: which tasks, which model, where the submission folder goes.

    Attributes:
        tasks: Matbench v0.1 task names (structure tasks; ``matbench_mp_is_metal`` records probabilities).
        spec: model and training settings (the ``matgl-hybrid train`` format).
        out: the submission folder, e.g. ``matbench_submissions/matbench_v0.1_MatGLHybrid``.
        algorithm: 5–15 characters, the leaderboard name.
        data_dir: folder of the dataset files (``MATMINER_DATA``); None: matminer's default.
        download: let matminer download missing files.
        allow_unofficial_data: accept dataset files whose sha256 differs from matminer's (files the user vouches
            for); info.json notes and the report then give each file's sha256 and call it reconstructed.
        data_provenance: where such files come from (recorded with them).
        folds: which folds to run (all five for a submission).
        cache_dir: descriptor cache folder; None: no cache.
        candidates: model choice inside each fold: ``{name: TrainSpec field changes applied to spec}``. With
            any, every fold trains every candidate (each resumable in ``folds/<task>/<name>/``) and records the one
            with the lowest MAE on its inner validation split; the candidates share ``spec``'s ``seed`` and
            ``val_fraction``, hence the split, carved from the training fold, so the test fold plays no part in
            the choice. Empty: ``spec`` alone (``folds/<task>/``).

    Learned state: ``dataset_files_`` (the files read, by task) and ``fold_records_`` (the recorded fold per task
    and fold; with candidates, the chosen one's, its ``train_seconds`` summed over all candidates).
    """

    tasks: Sequence[str]
    spec: TrainSpec = field(default_factory=TrainSpec)
    out: Path = Path("matbench_submissions/matbench_v0.1_MatGLHybrid")
    algorithm: str = "MatGLHybrid"
    algorithm_long: str = ""
    authors: str = "matgl-hybrid developers"
    data_dir: Path | None = None
    download: bool = True
    folds: Sequence[int] = (0, 1, 2, 3, 4)
    progress: bool = True
    cache_dir: Path | None = None
    allow_unofficial_data: bool = False
    data_provenance: str = ""
    candidates: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    dataset_files_: dict[str, DatasetFile] = field(default_factory=dict, init=False, repr=False)
    fold_records_: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict, init=False, repr=False)

    def candidate_specs(self) -> dict[str, TrainSpec]:
        """Each candidate's spec (``spec`` changed by its :attr:`candidates` entry); ``{"": spec}`` without any.

        Raises:
            ValueError: a candidate whose name is no simple folder name (:data:`CANDIDATE_NAME`), that is no
                mapping, changes an unknown field, gives a value TrainSpec refuses, or changes the seed or the
                validation fraction (the choice must compare the candidates on one inner split; ``TrainSpec``
                always has one).
        """
        if not self.candidates:
            return {"": self.spec}
        known = {f.name for f in dataclasses.fields(TrainSpec)}
        specs = {}
        for name, changes in self.candidates.items():
            check_candidate_name(name)
            if not isinstance(changes, Mapping):
                raise ValueError(f"candidate {name!r} is {type(changes).__name__}, not a mapping of TrainSpec fields")
            unknown = sorted(set(changes) - known)
            if unknown:
                raise ValueError(f"candidate {name!r}: unknown TrainSpec fields {unknown}")
            shared = sorted({"seed", "val_fraction"} & {k for k, v in changes.items() if v != getattr(self.spec, k)})
            if shared:
                raise ValueError(f"candidate {name!r} changes {shared}: candidates must share one inner split")
            try:
                specs[name] = dataclasses.replace(self.spec, **changes)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"candidate {name!r}: {exc}") from None
        return specs

    def check_recorded_candidates(self) -> None:
        """Refuse a run into :attr:`out` with other candidates than the folder records (its ``candidates.json``; a
        folder with ``results.json.gz`` but no ``candidates.json`` records none): the run would choose again and
        rewrite the recorded results and candidates.

        Raises:
            ValueError: one line naming the folder and the candidates that differ.
        """
        recorded_file = self.out / "candidates.json"
        if recorded_file.is_file():
            recorded = read_candidates(recorded_file)
        elif (self.out / "results.json.gz").is_file():
            recorded = {}
        else:
            return
        current = json.loads(json.dumps({name: dict(changes) for name, changes in self.candidates.items()}))
        differ = sorted(n for n in recorded.keys() | current.keys() if recorded.get(n) != current.get(n))
        if differ:

            def described(candidates: Mapping[str, Any]) -> str:
                return f"candidates {', '.join(candidates)}" if candidates else "no candidates"

            raise ValueError(
                f"{self.out} records {described(recorded)}, this run has {described(current)} (differing: "
                f"{', '.join(differ)}): it would choose again and rewrite the folder's results; give another --out"
            )

    def run(self) -> MatbenchBenchmark:
        """Train and record every (task, fold); finished folds are reused. Writes the submission folder."""
        self.out = Path(self.out)
        specs = self.candidate_specs()
        from matbench.bench import MatbenchBenchmark  # 4-5 s to import: only when a benchmark runs

        mb = MatbenchBenchmark(autoload=False, subset=self.submission_tasks())
        for task in mb.tasks:
            if task.metadata.input_type != "structure":
                raise ValueError(f"{task.dataset_name} is a composition task: matgl-hybrid models need structures")
        self.check_recorded_candidates()
        stores: dict[str, dict[str, FoldStore]] = {}
        for task in mb.tasks:  # recording scores against the targets needs the data, resumed folds too
            if task.df is None:
                self.dataset_files_[task.dataset_name] = load_task(
                    task, self.data_dir, self.download, self.allow_unofficial_data, self.data_provenance
                )
            stores[task.dataset_name] = {
                name: FoldStore(self.candidate_folder(task.dataset_name, name), self._fingerprint(task, spec))
                for name, spec in specs.items()
            }
            for store in stores[task.dataset_name].values():
                for fold in self.folds:  # a fold of another run is refused before any training
                    store.has(fold)
        todo = [(t, f, name) for t in mb.tasks for f in self.folds for name in specs]
        bar = tqdm(todo, desc="matbench", unit="fit", disable=not self.progress)
        for task, fold, name in bar:
            bar.set_postfix(task=task.dataset_name, fold=fold, **({"candidate": name} if name else {}))
            store = stores[task.dataset_name][name]
            if not store.has(fold):
                store.save(fold, self._train_and_predict(task, fold, specs[name]))
            if name != list(specs)[-1]:
                continue
            record = self.choose({n: s.load(fold) for n, s in stores[task.dataset_name].items()})
            self.fold_records_.setdefault(task.dataset_name, {})[fold] = record
            task.record(fold, record["y_pred"], params=record["params"])
        self.write_submission(mb)
        return mb

    def submission_tasks(self) -> list[str]:
        """The tasks the submission folder records: :attr:`tasks`, then those of earlier runs into :attr:`out`
        with every fold finished, so that a run of one task never drops another from ``results.json.gz`` and
        ``run_matbench.py`` (their folds are resumed, and refused if another spec made them). An earlier task with
        unfinished folds is left out with a warning; its folds stay."""
        tasks = list(self.tasks)
        root = self.out / "folds"
        earlier = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        for task in earlier:
            if task in tasks or task not in _load_dataset_dict():
                continue
            stores = [FoldStore(self.candidate_folder(task, name)) for name in self.candidate_specs()]
            if all(store.has(fold) for store in stores for fold in self.folds):
                tasks.append(task)
            else:
                warnings.warn(f"{root / task}: an earlier run's unfinished task, left out of the submission",
                              stacklevel=2)  # fmt: skip
        return tasks

    def candidate_folder(self, task: str, name: str) -> Path:
        """Where the fold records of candidate ``name`` on ``task`` are kept (without candidates: the task's)."""
        return self.out / "folds" / task / name if name else self.out / "folds" / task

    @staticmethod
    def choose(records: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
        """The record of the candidate with the lowest inner-validation MAE (the first on a tie), its ``params``
        naming the choice and every candidate's inner-validation MAE, its ``train_seconds`` those of all."""
        if list(records) == [""]:
            return records[""]
        maes = {name: r["params"]["best_val_mae"] for name, r in records.items()}
        chosen = min(maes, key=lambda name: (maes[name] is None or not np.isfinite(maes[name]), maes[name] or 0.0))
        record = records[chosen]
        return {
            **record,
            "train_seconds": sum(r["train_seconds"] for r in records.values()),
            "params": {**record["params"], "candidate": chosen, "inner_val_mae": maes},
        }

    def _fingerprint(self, task, spec: TrainSpec) -> dict[str, Any]:
        """What determines a task's fold results: the task, its data, the spec and the descriptor version."""
        df = task.df
        target = task.metadata.target
        data = StructureData(
            list(df["structure"]), df[target].to_numpy(dtype=float), [str(i) for i in df.index], target
        )
        version = get_descriptor_set(spec.descriptor_set).version if spec.descriptor_set else None
        return run_fingerprint([data], spec.to_dict(), version, task=task.dataset_name)

    def _train_and_predict(self, task, fold: int, spec: TrainSpec) -> dict[str, Any]:
        classification = task.metadata.task_type == "classification"
        # Test folds may hold elements the training folds lack: embed all of MatGL's default elements.
        task_type = "classification" if classification else "regression"
        spec = TrainSpec(**{**spec.to_dict(), "task_type": task_type, "element_types": "all"})
        inputs, outputs = task.get_train_and_val_data(fold)
        train = _structures(inputs)
        train.targets = np.asarray(outputs, dtype=float)
        train.target_name = task.metadata.target
        test_inputs = task.get_test_data(fold, include_target=False)
        test = _structures(test_inputs)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = fit(train, spec=spec, cache_dir=self.cache_dir)
            predicted = result.model.predict(test.structures, ids=test.ids, cache_dir=self.cache_dir)
        return {
            "mae": None,
            "train_seconds": time.perf_counter() - start,
            "n_train": len(train),
            "n_test": len(test),
            "params": {
                "spec": spec.to_dict(),
                "best_val_mae": result.best_val_mae,
                "best_epoch": result.best_epoch,
                "device": device_name(spec.accelerator),
            },
            "ids": list(test.ids),
            "y_true": None,
            "y_pred": [float(p) for p in predicted],
        }

    def write_submission(self, mb: MatbenchBenchmark) -> None:
        """``results.json.gz`` (:func:`write_results`), ``info.json``, the run script, ``candidates.json`` (with
        candidates), and a report."""
        self.out.mkdir(parents=True, exist_ok=True)
        write_results(mb, self.out / "results.json.gz")
        atomic_write_text(self.out / "info.json", json.dumps(self.info(), indent=2) + "\n")
        atomic_write_text(self.out / "run_matbench.py", self.script())
        if self.candidates:  # for `matgl-hybrid matbench --candidates` (the script holds them too)
            atomic_write_text(self.out / "candidates.json", json.dumps(self.candidates, indent=2) + "\n")
        seconds = {t: {f: r["train_seconds"] for f, r in folds.items()} for t, folds in self.fold_records_.items()}
        write_matbench_report(mb, self.out / "report", notes=self.dataset_notes(), train_seconds=seconds)

    def dataset_notes(self) -> list[str]:
        """One sentence per dataset file read (official or reconstructed, with its sha256)."""
        return [checked.note() for checked in self.dataset_files_.values()]

    def info(self) -> dict[str, Any]:
        """The leaderboard's ``info.json``: what the model is, what it cites, and how and where it ran."""
        citations = ["gong2023", "matgl", "megnet", "matbench"]
        weights = [
            w
            for spec in self.candidate_specs().values()
            if spec.descriptor_set
            for w in get_descriptor_set(spec.descriptor_set).referenced_weights()
        ]
        if any(w["model"].startswith("CHGNet") for w in weights):  # the pretrained potential the descriptors use
            citations.insert(3, "chgnet")
        return {
            "authors": self.authors,
            "algorithm": self.algorithm,
            "algorithm_long": self.algorithm_long or self.describe(),
            "bibtex_refs": [CITATIONS[k] for k in citations],
            "notes": " ".join(
                note
                for note in (
                    f"Run on {platform.platform()}; python {platform.python_version()}.",
                    self.compute_note(),
                    *self.dataset_notes(),
                )
                if note
            ),
            "requirements": requirements(),
        }

    def describe(self) -> str:
        """The model in words (info.json's default ``algorithm_long``): the spec, and the candidates if any."""
        spec = self.spec
        fused = ""
        if spec.descriptor_set:
            fused = f", fused ({spec.fusion}) with {describe_descriptor_set(spec.descriptor_set)}"
        text = (
            f"matgl-hybrid: MatGL {spec.backbone} with the '{spec.readout}' readout{fused}; trained per fold with "
            f"early stopping on {spec.val_fraction:.0%} of the training data (at most {spec.max_epochs} epochs, "
            f"batch {spec.batch_size}, lr {spec.lr:g} with cosine decay, {spec.loss})."
        )
        if self.candidates:
            described = []
            for name, changes in self.candidates.items():
                parts = []
                for key, value in changes.items():
                    base = (spec.descriptor_set or "").split("+")
                    if key == "descriptor_set" and value and value.startswith(f"{spec.descriptor_set}+"):
                        added = "+".join(value.split("+")[len(base) :])  # only what the candidate adds
                        parts.append(f"adds {added}: {describe_descriptor_set(added)}")
                    elif key == "descriptor_set" and value:
                        parts.append(f"descriptors {value}: {describe_descriptor_set(value)}")
                    else:
                        parts.append(f"{key} {value}")
                described.append(f"{name} ({'; '.join(parts) or 'as above'})")
            text += (
                f" Per fold, {len(self.candidates)} candidates are trained and the one with the lowest MAE on that "
                f"inner validation split (carved from the training fold; the test fold plays no part in the "
                f"choice) predicts the test fold: {', '.join(described)}. params of each record name the choice."
            )
        return text + " Produced by run_matbench.py in this folder."

    def compute_note(self) -> str:
        """Devices and the wall time of training and prediction, summed over the recorded folds."""
        records = [r for task in self.fold_records_.values() for r in task.values()]
        if not records:
            return ""
        devices = sorted({str(r["params"].get("device", "not recorded")) for r in records})
        hours = sum(r["train_seconds"] for r in records) / 3600
        return f"Compute: {len(records)} folds, {hours:.2f} h of training and prediction on {', '.join(devices)}."

    def script(self) -> str:
        """A runnable script reproducing this run (matbench's checks want the recording code in the folder); after
        :meth:`run`, its tasks are those the folder records."""
        spec = pprint.pformat(self.spec.to_dict(), sort_dicts=False, width=100)  # Python literals (None, False)
        candidates = pprint.pformat({k: dict(v) for k, v in self.candidates.items()}, sort_dicts=False, width=100)
        return f'''"""Reproduce this Matbench submission: python run_matbench.py [--data-dir DIR] (see --help)."""

from pathlib import Path

from matgl_hybrid.evaluation.matbench import rerun_submission

TASKS = {list(self.fold_records_) or list(self.tasks)!r}
ALGORITHM, AUTHORS = {self.algorithm!r}, {self.authors!r}
SPEC = {spec}
#: Per fold, the candidate (changes to SPEC) with the lowest inner-validation MAE predicts the test fold.
CANDIDATES = {candidates}

if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    rerun_submission(here, SPEC, CANDIDATES, TASKS, ALGORITHM, AUTHORS)  # writes results.json.gz (gzip), info.json
'''


def rerun_submission(
    folder: Path,
    spec: Mapping[str, Any],
    candidates: Mapping[str, Mapping[str, Any]],
    tasks: Sequence[str],
    algorithm: str,
    authors: str,
    argv: Sequence[str] | None = None,
) -> MatbenchBenchmark:
    """What a submission's ``run_matbench.py`` runs: its options (``--data-dir``, ``--allow-unofficial-data``,
    ``--data-provenance``) parsed from ``argv``, then the run of :class:`MatbenchRun` into ``folder``."""
    parser = argparse.ArgumentParser(description=f"Reproduce the Matbench submission in {folder}.")
    parser.add_argument("--data-dir", type=Path, default=None, help="folder of the matminer dataset files")
    parser.add_argument(
        "--allow-unofficial-data", action="store_true", help="accept dataset files you vouch for (recorded as such)"
    )
    parser.add_argument("--data-provenance", default="", help="where such files come from")
    args = parser.parse_args(argv)
    run = MatbenchRun(
        tasks=tasks,
        spec=TrainSpec(**spec),
        candidates=candidates,
        out=folder,
        algorithm=algorithm,
        authors=authors,
        data_dir=args.data_dir,
        allow_unofficial_data=args.allow_unofficial_data,
        data_provenance=args.data_provenance,
    )
    return run.run()


def requirements() -> dict[str, list[str]]:
    """Exact installed versions of the packages the run depends on, in the leaderboard's format."""
    versions = {name: installed_version(name) for name in REQUIREMENTS}
    return {"python": [f"{name}=={version}" for name, version in versions.items() if version is not None]}


def load_leaderboard() -> dict[str, list[dict[str, Any]]]:
    """Stored leaderboard figures per task: ``{task: [{"algorithm", "mae_mean", "mae_std", "source"}, …]}``."""
    return json.loads(LEADERBOARD_FILE.read_text())["tasks"]


def write_matbench_report(
    mb: MatbenchBenchmark,
    stem: Path,
    notes: Sequence[str] = (),
    train_seconds: Mapping[str, Mapping[int, float]] | None = None,
) -> None:
    """Per-fold scores, mean ± std and the stored leaderboard entries side by side (markdown + PNG); ``notes``
    (e.g. which dataset files were read) go under the title; ``train_seconds`` (task -> fold -> s, training and
    prediction) gives the time column (NaN where a fold's time is not known)."""
    leaderboard = load_leaderboard()
    tables, units, reference = {}, {}, {}
    for task in mb.tasks:
        metric = "rocauc" if task.metadata.task_type == "classification" else "mae"
        folds = {
            f: {
                metric: float(task.results[task.folds_map[f]]["scores"][metric]),
                "train_seconds": (train_seconds or {}).get(task.dataset_name, {}).get(f, float("nan")),
            }
            for f in task.folds
            if task.is_recorded[f]
        }
        if not folds:
            continue
        summary = summarize(folds, metric)
        tables[task.dataset_name] = {
            "matgl-hybrid": {
                "fold_mae": summary[f"fold_{metric}"],
                "mae_mean": summary[f"{metric}_mean"],
                "mae_std": summary[f"{metric}_std"],
                "train_seconds": summary["train_seconds"],
                "folds_done": summary["folds_done"],
                "mad": task.metadata.get("mad"),
            }
        }
        units[task.dataset_name] = f"{metric.upper()}, {task.metadata.get('unit') or ''}"
        reference[task.dataset_name] = leaderboard.get(task.dataset_name, [])
    if tables:
        write_report(stem, "Matbench v0.1 run", tables, units, reference=reference, notes=list(notes))


def validate_submission(folder: str | Path) -> list[str]:
    """Problems that would fail the leaderboard's submission test (empty list: valid).

    Re-implements ``scripts/test_submission.py`` of the matbench repository: ``info.json`` and
    ``results.json.gz`` present; ``notes`` present and ``authors``, ``algorithm``, ``algorithm_long``,
    ``bibtex_refs``, ``requirements`` non-empty; results readable as matbench's ``from_file`` reads a ``.gz`` name
    (gzip-compressed JSON, :func:`read_results`) and valid
    (``mb.is_valid``: every fold of every recorded task, the official test ids, the right score keys); a ``.py`` or
    ``.ipynb`` at the top level; no ``.ipynb_checkpoints``; every other file at most 10 MB. Also checks the
    documented recommendations this project follows: a ``matbench_v0.1_`` folder name and 5–15 characters of
    ``algorithm``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return [f"{folder} is not a directory"]
    problems = []
    if not folder.name.startswith("matbench_v0.1_"):
        problems.append(f"folder name {folder.name!r} must start with 'matbench_v0.1_'")
    problems += _file_problems(folder / "results.json.gz", _results_problems, "cannot be read by MatbenchBenchmark")
    problems += _file_problems(folder / "info.json", lambda p: _info_problems(json.loads(p.read_text())), "is not JSON")
    if not [p for p in folder.glob("*") if p.suffix in (".py", ".ipynb")]:
        problems.append("no .py or .ipynb with the code that recorded the results")
    if (folder / ".ipynb_checkpoints").exists():
        problems.append(".ipynb_checkpoints must not be submitted")
    for path in folder.rglob("*"):
        if path.is_file() and path.name != "results.json.gz" and path.stat().st_size > 10e6:
            problems.append(f"{path.relative_to(folder)} is larger than 10 MB")
    return problems


def validate_folder(folder: str | Path) -> dict[str, list[str]]:
    """Problems of a submission folder (``matbench_v0.1_<algorithm>`` or one with ``info.json``), or of every
    submission folder inside ``folder``: ``{folder name: [problem, …]}`` (an empty list: valid)."""
    folder = Path(folder)
    if folder.name.startswith("matbench_v0.1_") or (folder / "info.json").exists():
        return {str(folder): validate_submission(folder)}
    return validate_submissions(folder)


def validate_submissions(root: str | Path) -> dict[str, list[str]]:
    """:func:`validate_submission` for every folder of ``root``, plus the leaderboard's unique-algorithm check."""
    root = Path(root)
    found = {p.name: validate_submission(p) for p in sorted(root.iterdir()) if p.is_dir()}
    names: dict[str, str] = {}
    for name in found:
        info = root / name / "info.json"
        algorithm = json.loads(info.read_text()).get("algorithm") if info.is_file() else None
        if algorithm in names:
            found[name].append(f"algorithm {algorithm!r} is already used by {names[algorithm]}")
        names.setdefault(algorithm, name)
    return found


def _file_problems(path: Path, check: Callable[[Path], list[str]], unreadable: str) -> list[str]:
    """``check(path)``, or a problem saying that the file is missing or cannot be read."""
    if not path.is_file():
        return [f"{path.name} is missing"]
    try:
        return check(path)
    except Exception as exc:  # any failure to read is a problem to report, not to raise
        return [f"{path.name} {unreadable}: {exc}"]


def _results_problems(path: Path) -> list[str]:
    """Problems of a ``results.json.gz`` that MatbenchBenchmark reads."""
    valid = read_results(path).is_valid
    return [] if valid else [f"{path.name} is not valid (MatbenchBenchmark.is_valid is False)"]


def _info_problems(info: dict[str, Any]) -> list[str]:
    problems = [] if "notes" in info else ["info.json has no 'notes' (it may be empty, not absent)"]
    for key in ("authors", "algorithm", "algorithm_long", "bibtex_refs", "requirements"):
        if not info.get(key):
            problems.append(f"info.json {key!r} is missing or empty")
    algorithm = info.get("algorithm")
    if isinstance(algorithm, str) and not 5 <= len(algorithm) <= 15:
        problems.append(f"info.json 'algorithm' should have 5 to 15 characters, has {len(algorithm)}")
    return problems
