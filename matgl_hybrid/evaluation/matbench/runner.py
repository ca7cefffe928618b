"""Matbench v0.1 on the published folds: train and record every (task, fold), resumably, into a submission folder.

The folds, the recording and the scoring are matbench's own (``MatbenchBenchmark``, ``task.record``); each finished
fold is kept in ``<out>/folds/<task>/fold<k>.json`` (per candidate ``<out>/folds/<task>/<name>/`` with an inner
validation split; with inner K-fold, the inner fits under ``<out>/folds/<task>/selection/fold<k>/``) so that a
crash loses at most the fit in progress.
"""

from __future__ import annotations

import difflib
import json
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from matgl_hybrid.data import StructureData, from_dataframe
from matgl_hybrid.descriptors import get_descriptor_set
from matgl_hybrid.evaluation.folds import other_versions
from matgl_hybrid.evaluation.matbench.candidates import check_recorded_candidates, choose
from matgl_hybrid.evaluation.matbench.datasets import DatasetFile, is_dataset, load_task
from matgl_hybrid.evaluation.matbench.report import write_matbench_report
from matgl_hybrid.evaluation.matbench.submission import (
    compute_note,
    describe_model,
    info_json,
    require_matbench,
    requirements,
    run_script,
    write_results,
)
from matgl_hybrid.files import atomic_write_text
from matgl_hybrid.fingerprint import run_fingerprint, without_runtime_fields
from matgl_hybrid.paths import descriptor_cache_dir
from matgl_hybrid.training import InnerKFold, TrainSpec, check_records, device_name, fit, select
from matgl_hybrid.training.candidates import candidate_specs
from matgl_hybrid.training.fold_store import FoldStore
from matgl_hybrid.training.selection import pooled_log_loss

if TYPE_CHECKING:
    from matbench.bench import MatbenchBenchmark
    from matbench.task import MatbenchTask


@dataclass
class MatbenchRun:
    """A Matbench run: which tasks, which model, where the submission folder goes.

    Attributes:
        tasks: Matbench v0.1 task names (structure tasks; ``matbench_mp_is_metal`` records probabilities).
        spec: model and training settings (the ``matgl-hybrid train`` format).
        out: the submission folder, e.g. ``matbench_submissions/matbench_v0.1_MatGLHybrid``.
        algorithm: 5–15 characters, the leaderboard name.
        algorithm_long: info.json's description of the model; empty: :meth:`describe`'s.
        authors: info.json's authors.
        data_dir: folder of the dataset files (``MATMINER_DATA``); None: matminer's default.
        download: let matminer download missing files.
        allow_unofficial_data: accept dataset files whose sha256 differs from matminer's (files the user vouches
            for); info.json notes and the report then give each file's sha256 and call it reconstructed.
        data_provenance: where such files come from (recorded with them).
        folds: which folds to train (all five for a submission); the submission folder records every finished
            fold, so runs of one fold each (in parallel processes, say) add up to a whole submission.
        progress: progress bars over the folds and the inner fits.
        cache_dir: descriptor cache folder; None: no cache.
        candidates: model choice inside each fold: ``{name: TrainSpec field changes applied to spec}``. With
            any, every fold trains every candidate (each resumable in ``folds/<task>/<name>/``) and records the one
            with the lowest MAE (a classifier: log loss) on its inner validation split; the candidates share
            ``spec``'s ``seed`` and ``val_fraction``, hence the split, carved from the training fold, so the test
            fold plays no part in the choice. Empty: ``spec`` alone (``folds/<task>/``).
        inner_folds: choose per fold by inner K-fold cross-validation of the training fold (the selection engine);
            the chosen candidate's K inner models, averaged, predict the test fold. None: one inner validation split.
        protocol: where the candidates and the selection rule were registered before any test fold was scored
            (e.g. a protocol note and the commit that holds it); info.json and the report say so, the run script
            keeps it.
        train_fraction: train on a seeded part of each training fold (:meth:`.StructureData.seeded_part`, seeded
            by the fold): a learning curve's point on the official test folds, not a leaderboard submission
            (info.json and the report say so). 1: the whole training fold, as Matbench requires.

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
    inner_folds: int | None = None
    protocol: str = ""
    train_fraction: float = 1.0
    dataset_files_: dict[str, DatasetFile] = field(default_factory=dict, init=False, repr=False)
    fold_records_: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict, init=False, repr=False)

    choose = staticmethod(choose)

    def candidate_specs(self) -> dict[str, TrainSpec]:
        """Each candidate's spec (:func:`.candidate_specs`); ``{"": spec}`` without any."""
        return candidate_specs(self.spec, self.candidates)

    def check_recorded_candidates(self) -> None:
        """Refuse a run into :attr:`out` with other candidates than it records (see
        :func:`.candidates.check_recorded_candidates`)."""
        check_recorded_candidates(self.out, self.candidates)

    def run(self) -> MatbenchBenchmark:
        """Train and record every (task, fold); finished folds are reused. Writes the submission folder."""
        self.out = Path(self.out)
        specs = self.candidate_specs()
        if self.inner_folds is not None:  # 0 or 1 refused now, not taken for "no inner K-fold" or after loading
            InnerKFold(self.inner_folds, seed=self.spec.seed)
        if not 0 < self.train_fraction <= 1:
            raise ValueError(f"train_fraction must be in (0, 1], got {self.train_fraction}")
        if not self.tasks:  # an empty subset is every task to matbench
            raise ValueError("no Matbench task given")
        require_matbench()
        from matbench.bench import MatbenchBenchmark  # 4-5 s to import: only when a benchmark runs
        from matbench.metadata import mbv01_metadata

        if unknown := [t for t in self.tasks if t not in mbv01_metadata]:
            near = {t: difflib.get_close_matches(t, list(mbv01_metadata), n=1) for t in unknown}
            hints = ", ".join(f"{t!r}" + (f" (did you mean {m[0]}?)" if m else "") for t, m in near.items())
            raise ValueError(f"not Matbench v0.1 tasks: {hints}; the tasks are {', '.join(mbv01_metadata)}")
        mb = MatbenchBenchmark(autoload=False, subset=self.submission_tasks())
        for task in mb.tasks:
            if task.metadata.input_type != "structure":
                raise ValueError(f"{task.dataset_name} is a composition task: matgl-hybrid models need structures")
        self.check_recorded_candidates()
        self.check_recorded_scheme()
        if self.candidates:  # registered before any of them trains: a rerun with other candidates is refused
            self.write_candidates()
        stores: dict[str, dict[str, FoldStore]] = {}
        for task in mb.tasks:  # recording scores against the targets needs the data, resumed folds too
            if task.df is None:
                self.dataset_files_[task.dataset_name] = load_task(
                    task, self.data_dir, self.download, self.allow_unofficial_data, self.data_provenance
                )
            stores[task.dataset_name] = self._stores(task, specs)
            for store in stores[task.dataset_name].values():
                for fold in task.folds:  # a fold of another run is refused before any training
                    if store.has(fold) and self.inner_folds:
                        self._check_selection(task, fold, specs)
        names = list(next(iter(stores.values()))) if stores else []
        todo = [(t, f, name) for t in mb.tasks for f in self.folds for name in names]
        bar = tqdm(todo, desc="matbench", unit="fit", disable=not self.progress)
        for task, fold, name in bar:
            bar.set_postfix(task=task.dataset_name, fold=fold, **({"candidate": name} if name else {}))
            store = stores[task.dataset_name][name]
            if not store.has(fold):
                unit = self._select_and_predict if self.inner_folds else self._train_and_predict
                store.save(fold, unit(task, fold, specs) if self.inner_folds else unit(task, fold, specs[name]))
        for task in mb.tasks:  # every finished fold, not only this run's: a run of one fold keeps the others
            task_stores = stores[task.dataset_name]
            for fold in task.folds:
                if fold not in self.folds and not all(store.has(fold) for store in task_stores.values()):
                    continue
                record = self.choose({n: store.load(fold) for n, store in task_stores.items()})
                test_ids = list(task.get_test_data(fold, include_target=False).index)
                if record.get("ids") is not None and list(record["ids"]) != test_ids:
                    raise ValueError(f"{self.out / 'folds' / task.dataset_name}: fold {fold}'s record does not list "
                                     "the fold's test structures in their order: its predictions would be scored "
                                     "against other targets")  # fmt: skip
                self.fold_records_.setdefault(task.dataset_name, {})[fold] = record
                # the inner models' spread, where there is one, is the submission's uncertainty (regression only)
                spread = record.get("y_std") if task.metadata.task_type != "classification" else None
                task.record(fold, record["y_pred"], params=record["params"], std=spread)
        self.write_submission(mb)
        return mb

    def submission_tasks(self) -> list[str]:
        """The tasks the submission folder records: :attr:`tasks`, then those of earlier runs into :attr:`out`
        with every fold of :attr:`folds` finished, so that a run of one task never drops another from
        ``results.json.gz`` and ``run_matbench.py`` (their folds are resumed, and refused if another spec made
        them). An earlier task with unfinished folds is left out with a warning; its folds stay."""
        tasks = list(self.tasks)
        root = self.out / "folds"
        earlier = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        for task in earlier:
            if task in tasks or not is_dataset(task):
                continue
            folders = [self.candidate_folder(task, name) for name in self.candidate_specs()]
            stores = [FoldStore(folder) for folder in (folders if not self.inner_folds else [root / task])]
            if all(store.has(fold) for store in stores for fold in self.folds):
                tasks.append(task)
            else:
                warnings.warn(f"{root / task}: an earlier run's unfinished task, left out of the submission",
                              stacklevel=2)  # fmt: skip
        return tasks

    def check_recorded_scheme(self) -> None:
        """Refuse a run with candidates into a folder whose folds were chosen by the other scheme (an inner
        validation split keeps ``folds/<task>/<candidate>/``, inner K-fold ``folds/<task>/``): the run would
        choose again and rewrite the folder's results, with the same candidates.

        Raises:
            ValueError: one line naming the task folder and both schemes.
        """
        root = self.out / "folds"
        if not self.candidates or not root.is_dir():
            return
        for task_dir in sorted(p for p in root.iterdir() if p.is_dir()):
            split = any(any((task_dir / name).glob("fold*.json")) for name in self.candidates)
            kfold = any(task_dir.glob("fold*.json"))
            if split if self.inner_folds else kfold:
                recorded, this = ("an inner validation split", f"inner {self.inner_folds}-fold") if split else (
                    "inner K-fold", "an inner validation split")  # fmt: skip
                raise ValueError(f"{task_dir} holds folds chosen by {recorded}, this run chooses by {this}: it "
                                 "would choose again and rewrite the folder's results; give another --out")  # fmt: skip

    def write_candidates(self) -> None:
        """``candidates.json``, for ``matgl-hybrid matbench --candidates`` and :meth:`check_recorded_candidates`
        (``run_matbench.py`` holds them too)."""
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.out / "candidates.json", json.dumps(self.candidates, indent=2) + "\n")

    def candidate_folder(self, task: str, name: str) -> Path:
        """Where the fold records of candidate ``name`` on ``task`` are kept (without candidates: the task's)."""
        return self.out / "folds" / task / name if name else self.out / "folds" / task

    def write_submission(self, mb: MatbenchBenchmark) -> None:
        """``results.json.gz`` (:func:`.submission.write_results`), ``info.json``, the run script,
        ``candidates.json`` (with candidates), and a report."""
        self.out.mkdir(parents=True, exist_ok=True)
        write_results(mb, self.out / "results.json.gz")
        atomic_write_text(self.out / "info.json", json.dumps(self.info(), indent=2) + "\n")
        atomic_write_text(self.out / "run_matbench.py", self.script())
        if self.candidates:
            self.write_candidates()
        seconds = {t: {f: r["train_seconds"] for f, r in folds.items()} for t, folds in self.fold_records_.items()}
        write_matbench_report(mb, self.out / "report", notes=self._notes(), train_seconds=seconds, name=self.algorithm)

    def info(self) -> dict[str, Any]:
        """The leaderboard's ``info.json``: what the model is, what it cites, and how and where it ran."""
        records = [r for task in self.fold_records_.values() for r in task.values()]
        specs = self.candidate_specs().values()
        installed = requirements()["python"]
        every = {f"{t} fold {f}": r for t, folds in self.fold_records_.items() for f, r in folds.items()}
        older = sorted(other_versions(every, installed))
        versions = (f"Folds trained under other package versions than those listed: {', '.join(older)} (each "
                    "record's params.requirements)." if older else "")  # fmt: skip
        notes = [compute_note(records), versions, *self._notes()]
        return info_json(self.authors, self.algorithm, self.algorithm_long or self.describe(), specs, notes)

    def describe(self) -> str:
        """The model in words (info.json's default ``algorithm_long``), see :func:`.submission.describe_model`."""
        return describe_model(self.spec, self.candidates, self.inner_folds)

    def script(self) -> str:
        """``run_matbench.py`` reproducing this run (see :func:`.submission.run_script`); after :meth:`run`, its tasks
        are those the folder records; its options say which dataset files the run accepted."""
        accepted = {"allow_unofficial_data": True, "data_provenance": self.data_provenance}
        options = accepted if self.allow_unofficial_data else {}
        if self.inner_folds:
            options = {**options, "inner_folds": self.inner_folds}
        if self.protocol:
            options = {**options, "protocol": self.protocol}
        if self.train_fraction < 1:
            options = {**options, "train_fraction": self.train_fraction}
        tasks = list(self.fold_records_) or list(self.tasks)
        return run_script(tasks, self.algorithm, self.authors, self.spec, self.candidates, options)

    def _notes(self) -> list[str]:
        """What info.json and the report say of the run: where its protocol was registered (with
        :attr:`protocol`), then which dataset files it read."""
        registered = [f"Protocol registered before any test fold was scored: {self.protocol}."] if self.protocol else []
        part = [f"Trained on {self.train_fraction:.0%} of each training fold (a seeded part per fold): a learning "
                "curve's point, not a Matbench submission."] if self.train_fraction < 1 else []  # fmt: skip
        return [*registered, *part, *(checked.note() for checked in self.dataset_files_.values())]

    def _stores(self, task: MatbenchTask, specs: Mapping[str, TrainSpec]) -> dict[str, FoldStore]:
        """The fold records of a task: one store per candidate (``{"": …}`` without), or, with :attr:`inner_folds`,
        one store of the chosen ensembles' records (fingerprinted with every candidate and the scheme)."""
        if not self.inner_folds:
            return {name: FoldStore(self.candidate_folder(task.dataset_name, name), self._fingerprint(task, spec))
                    for name, spec in specs.items()}  # fmt: skip
        chosen_among = {
            "candidates": {n: without_runtime_fields(spec.to_dict()) for n, spec in specs.items()},
            "inner_folds": self.inner_folds,
        }
        return {"": FoldStore(self.out / "folds" / task.dataset_name, self._fingerprint(task, self.spec, chosen_among))}

    def _fingerprint(
        self, task: MatbenchTask, spec: TrainSpec, extra: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """What determines a task's fold results: the task, its data, the spec and the descriptor version."""
        df, target = task.df, task.metadata.target
        data = StructureData(list(df["structure"]), df[target].to_numpy(float), [str(i) for i in df.index], target)
        version = get_descriptor_set(spec.descriptor_set).version if spec.descriptor_set else None
        part = {"train_fraction": self.train_fraction} if self.train_fraction < 1 else {}  # whole folds: as before
        return run_fingerprint([data], spec.to_dict(), version, task=task.dataset_name, **part, **(extra or {}))

    def _fold_data(self, task: MatbenchTask, fold: int) -> tuple[StructureData, StructureData]:
        """:func:`fold_data`, the training data cut to :attr:`train_fraction` of it."""
        train, test = fold_data(task, fold)
        return train.seeded_part(self.train_fraction, seed=fold), test

    def _fold_spec(self, task: MatbenchTask, spec: TrainSpec) -> TrainSpec:
        """``spec`` for the task's type, embedding all of MatGL's elements (a test fold may hold others); a
        classifier trains on binary cross-entropy whatever the spec's regression ``loss``."""
        classifier = task.metadata.task_type == "classification"
        types = {"task_type": "classification", "loss": "l1_loss"} if classifier else {"task_type": "regression"}
        return TrainSpec(**{**spec.to_dict(), **types, "element_types": "all"})

    def _fold_candidates(self, task: MatbenchTask, specs: Mapping[str, TrainSpec]) -> dict[str, TrainSpec]:
        """The candidates as the selection engine trains them on a fold of ``task`` (:meth:`_fold_spec`)."""
        return {name or "spec": self._fold_spec(task, spec) for name, spec in specs.items()}

    def _selection_dir(self, task: MatbenchTask, fold: int) -> Path:
        """Where the inner fits of a fold are kept (records and checkpoints, one folder per candidate)."""
        return self.out / "folds" / task.dataset_name / "selection" / f"fold{fold}"

    def _check_selection(self, task: MatbenchTask, fold: int, specs: Mapping[str, TrainSpec]) -> None:
        """A finished fold is reused only if its inner records are those today's candidates would reuse (their
        fingerprints name each candidate's descriptor version, the fold record's only the base spec's): a revised
        descriptor set refuses the fold, naming the inner record, instead of mixing versions in one submission. Every
        inner record must be there: a folder copied without them could not be checked."""
        train, _ = self._fold_data(task, fold)
        scheme = InnerKFold(self.inner_folds, seed=self.spec.seed)
        candidates, directory = self._fold_candidates(task, specs), self._selection_dir(task, fold)
        missing = [f"{name}/fold{k}.json" for name in candidates for k in range(self.inner_folds)
                   if not (directory / name / f"fold{k}.json").is_file()]  # fmt: skip
        if missing:
            raise ValueError(f"{self.out / 'folds' / task.dataset_name}: fold {fold} is finished, but {directory} "
                             f"lacks {len(missing)} inner records ({', '.join(missing[:3])}): it cannot be checked "
                             "against today's candidates; restore them, or give another --out")  # fmt: skip
        check_records(train, candidates, scheme, directory)

    def _select_and_predict(self, task: MatbenchTask, fold: int, specs: Mapping[str, TrainSpec]) -> dict[str, Any]:
        """One fold with :attr:`inner_folds`: the engine chooses on the training fold, the chosen ensemble predicts
        the test fold; the fold record :class:`FoldStore` keeps."""
        train, test = self._fold_data(task, fold)
        candidates = self._fold_candidates(task, specs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            chosen = select(
                train,
                candidates,
                InnerKFold(self.inner_folds, seed=self.spec.seed),
                directory=self._selection_dir(task, fold),
                cache_dir=self.cache_dir,
                progress=self.progress,
            )
            # the K inner models: their mean predicts, their standard deviation is the uncertainty
            start = time.perf_counter()
            predicted, spread = chosen.model.predict(
                test.structures, ids=test.ids, cache_dir=self.cache_dir, return_std=True
            )
        params = {
            "candidate": chosen.model_name,
            "chosen": chosen.chosen,
            "inner_mae": chosen.maes,
            "best_val_mae": chosen.maes[chosen.model_name],  # an MAE, as without inner folds (the choice's score:
            **({"inner_log_loss": chosen.scores} if chosen.metric == "log loss" else {}),  # a classifier's)
            "scheme": chosen.scheme.to_dict(),
            "spec": candidates[chosen.model_name].to_dict(),
            # where the inner fits trained (as their records say) and where the ensemble predicted
            "device": "; ".join(sorted({device_name(self.spec.accelerator), *chosen.devices()})),
            # the ensemble's members beside the fits that were scored (a member retrained after a lost checkpoint
            # may differ: the record says so)
            "members": chosen.members(),
            "processes": max((f.processes for f in chosen.fits), default=1),  # DDP: the batch size is per process
            "requirements": requirements()["python"],  # a run resumed across sessions may span upgrades
        }
        # every inner fit once (however many sessions it took; a retrained member is not counted again) and the
        # test prediction
        seconds = sum(chosen.record()["seconds"].values()) + time.perf_counter() - start
        return {
            "mae": None,
            "train_seconds": seconds,
            "n_train": len(train),
            "n_test": len(test),
            "params": params,
            "ids": list(test.ids),
            "y_true": None,
            "y_pred": [float(p) for p in predicted],
            "y_std": [float(d) for d in spread],
        }

    def _train_and_predict(self, task: MatbenchTask, fold: int, spec: TrainSpec) -> dict[str, Any]:
        """One fold: train on its training data (the inner validation split carved from it), predict its test
        data; the fold record :class:`FoldStore` keeps."""
        spec = self._fold_spec(task, spec)
        train, test = self._fold_data(task, fold)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = fit(train, spec=spec, cache_dir=self.cache_dir)
            predicted = result.model.predict(test.structures, ids=test.ids, cache_dir=self.cache_dir)
            classifier_score = {}
            if spec.task_type == "classification":  # candidates compared by a proper score, not MAE of probabilities
                position = {i: k for k, i in enumerate(train.ids)}
                val = train.subset([position[i] for i in result.val_ids])
                probabilities = result.model.predict(val.structures, ids=val.ids, cache_dir=self.cache_dir)
                record = {"y_true": val.targets, "y_pred": probabilities}
                classifier_score = {"val_log_loss": pooled_log_loss([record])}
        return {
            "mae": None,
            "train_seconds": time.perf_counter() - start,
            "n_train": len(train),
            "n_test": len(test),
            "params": {
                "spec": spec.to_dict(),
                "best_val_mae": result.best_val_mae,
                **classifier_score,
                "best_epoch": result.best_epoch,
                "device": device_name(spec.accelerator),
                "processes": result.processes,  # DDP: the batch size is per process
                "requirements": requirements()["python"],
            },
            "ids": list(test.ids),
            "y_true": None,
            "y_pred": [float(p) for p in predicted],
        }


def rerun_submission(
    folder: Path,
    spec: Mapping[str, Any],
    candidates: Mapping[str, Mapping[str, Any]],
    tasks: Sequence[str],
    algorithm: str,
    authors: str,
    **options: Any,
) -> MatbenchBenchmark:
    """What a submission's ``run_matbench.py`` runs: :class:`MatbenchRun` with its settings into ``folder``;
    ``options`` are other :class:`MatbenchRun` fields (``data_dir``, ``allow_unofficial_data``, …); the descriptor
    cache is the default one (:func:`~matgl_hybrid.paths.descriptor_cache_dir`, as ``matgl-hybrid matbench`` uses)
    unless ``cache_dir`` is given (without a cache every fit of a ``sim:`` candidate simulated every structure
    again). A ``spec`` written before a field existed reads as that version trained (:meth:`TrainSpec.from_stored`)."""
    options.setdefault("cache_dir", descriptor_cache_dir())
    run = MatbenchRun(
        tasks=tasks,
        spec=TrainSpec.from_stored(spec, "run_matbench.py's SPEC"),
        candidates=candidates,
        out=folder,
        algorithm=algorithm,
        authors=authors,
        **options,
    )
    return run.run()


def fold_data(task: MatbenchTask, fold: int) -> tuple[StructureData, StructureData]:
    """A loaded task's official fold: its training data (with targets) and its test data (without: matbench keeps
    them for scoring)."""
    inputs, outputs = task.get_train_and_val_data(fold)
    train = from_dataframe(inputs.to_frame(name="structure"))
    train.targets = np.asarray(outputs, dtype=float)
    train.target_name = task.metadata.target
    test = from_dataframe(task.get_test_data(fold, include_target=False).to_frame(name="structure"))
    return train, test
