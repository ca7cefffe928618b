"""Model selection: train each candidate on an inner split scheme, score it on data it did not train on, keep the best.

The one implementation of "choose on inner data, then predict", behind ``matgl-hybrid train`` (by default), ``cv``
and the Matbench protocol's inner ensembles::

    selection = select(data, default_candidates(TrainSpec()), scheme=ValidationSplit())
    selection.model      # the best graph network (an ensemble of K models under InnerKFold)
    selection.summary()  # "chose intensive: inner MAE 0.28 vs 0.33 extensive, 0.31 forest"

Two schemes: :class:`ValidationSplit` (one seeded split; one training per candidate) and :class:`InnerKFold` (each
candidate's score is its out-of-fold MAE over all the data; its K models form an ensemble whose spread is the
uncertainty). With a ``directory``, every (candidate, inner fold) is a fingerprinted record plus, for graph networks,
a Lightning checkpoint folder: a killed selection resumes where it stopped, and a changed candidate is refused with
the difference named.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matgl.ext.pymatgen import get_element_list
from tqdm.auto import tqdm

from matgl_hybrid.data import StructureData
from matgl_hybrid.data.splits import kfold_splits, split_indices
from matgl_hybrid.descriptors import featurize, get_descriptor_set
from matgl_hybrid.errors import NonFinitePredictions, UnknownNameError
from matgl_hybrid.fingerprint import run_fingerprint
from matgl_hybrid.models import HybridEnsemble, HybridModel
from matgl_hybrid.training.baselines import DescriptorForest
from matgl_hybrid.training.candidates import Candidate, check_candidate_name, describe_candidate
from matgl_hybrid.training.finetuning import pretrained_architecture, pretrained_name
from matgl_hybrid.training.fit import FitResult, device_name, fit, result_changing
from matgl_hybrid.training.fold_store import FoldStore
from matgl_hybrid.training.spec import TrainSpec


@dataclass(frozen=True)
class ValidationSplit:
    """One seeded validation split, ``split_indices(n, fraction, seed)`` with copies of a structure on one side: a
    candidate trains on the rest, stops early on the split and is scored there. One training per candidate."""

    fraction: float = 0.1
    seed: int = 0

    n_splits = 1  # how many (training, scoring) splits :meth:`splits` gives

    def splits(self, data: StructureData, classes: np.ndarray | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
        """``[(training indices, scoring indices)]`` over the structures of ``data``; stratified by ``classes``
        (a classification task's labels) when given."""
        return [split_indices(len(data), self.fraction, self.seed, data.structure_keys(), classes)]

    def to_dict(self) -> dict[str, Any]:
        """The scheme as records keep it."""
        return {"scheme": "validation_split", "fraction": self.fraction, "seed": self.seed}

    def describe(self) -> str:
        """The scheme in words, for reports."""
        return f"a {100 * self.fraction:g} % validation split (seed {self.seed})"


@dataclass(frozen=True)
class InnerKFold:
    """K seeded folds over the data: a candidate trains K times (early stopping on ``val_fraction`` of each inner
    training part) and is scored by its out-of-fold MAE over all the data; its K models form an ensemble."""

    k: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 2:
            raise ValueError(f"inner K-fold needs an integer k >= 2, got {self.k!r}")

    @property
    def n_splits(self) -> int:
        """How many (training, scoring) splits :meth:`splits` gives."""
        return self.k

    def splits(self, data: StructureData, classes: np.ndarray | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
        """``[(training indices, scoring indices)]`` of the K folds over the structures of ``data`` (copies of a
        structure in one fold); stratified by ``classes`` (a classification task's labels) when given."""
        if len(data) < self.k:
            raise ValueError(f"inner {self.k}-fold needs at least {self.k} structures, got {len(data)}")
        return kfold_splits(len(data), self.k, self.seed, data.structure_keys(), classes)

    def to_dict(self) -> dict[str, Any]:
        """The scheme as records keep it."""
        return {"scheme": "inner_kfold", "k": self.k, "seed": self.seed}

    def describe(self) -> str:
        """The scheme in words, for reports."""
        return f"inner {self.k}-fold cross-validation (seed {self.seed}), out-of-fold MAE over all the data"


Scheme = ValidationSplit | InnerKFold


@dataclass
class Selection:
    """What :func:`select` returns.

    Attributes:
        scheme: how candidates were scored.
        candidates: the candidates, by name, in the order given.
        folds: per candidate, one record per inner fold: ``mae``, ``seconds`` (s, the sessions a resumed fit ran
            in included), ``ids``, ``y_true``, ``y_pred`` (the scored structures) and, for graph networks,
            ``best_val_mae``, ``best_epoch``, ``epochs_run``, ``device`` (where it trained; records before
            2026-12-05 lack it).
        model_name: the graph-network candidate with the lowest inner score (:attr:`metric`): the one :attr:`model`
            is.
        model: that candidate's model (CPU; a :class:`HybridEnsemble` of its K models under :class:`InnerKFold`),
            None when no candidate is a graph network.
        fits: that candidate's :class:`FitResult` per inner fold.
    """

    scheme: Scheme
    candidates: dict[str, Candidate]
    folds: dict[str, list[dict[str, Any]]]
    model_name: str | None = None
    model: HybridModel | HybridEnsemble | None = None
    fits: list[FitResult] = field(default_factory=list)

    @property
    def metric(self) -> str:
        """What the candidates are scored by: ``"MAE"`` (target units), or ``"log loss"`` (binary cross-entropy of
        the predicted probabilities, a proper score: MAE would reward probabilities pushed to 0 or 1) when a
        candidate is a classifier."""
        return "log loss" if is_classifier(self.candidates.values()) else "MAE"

    @property
    def scores(self) -> dict[str, float]:
        """Each candidate's inner score (:attr:`metric`): over all its scored structures (out-of-fold under
        :class:`InnerKFold`)."""
        if self.metric == "MAE":
            return self.maes
        return {name: pooled_log_loss(records) for name, records in self.folds.items()}

    @property
    def maes(self) -> dict[str, float]:
        """Each candidate's inner MAE (target units; for a classifier, of its probabilities), pooled as
        :attr:`scores`."""
        return {name: pooled_mae(records) for name, records in self.folds.items()}

    @property
    def chosen(self) -> str:
        """The candidate with the lowest inner score (the first on a tie; a non-finite score never wins)."""
        return best_candidate(self.scores)

    @property
    def guard_won(self) -> bool:
        """Whether a descriptor-only candidate beat every graph network on inner data (the model is still a GNN)."""
        return self.model_name is not None and self.chosen != self.model_name

    def summary(self) -> str:
        """One line: the choice and every inner score, e.g. ``chose intensive: inner MAE 0.28 vs 0.33 extensive``."""
        scores = self.scores
        others = ", ".join(f"{scores[n]:.4g} {n}" for n in scores if n != self.chosen)
        line = f"chose {self.chosen}: inner {self.metric} {scores[self.chosen]:.4g}" + (
            f" vs {others}" if others else ""
        )
        if self.guard_won:
            line += (
                f". WARNING: the graph network kept, {self.model_name} ({scores[self.model_name]:.4g}), is worse on "
                f"inner data than {self.chosen}, a model on descriptors alone: prefer it, or more data or epochs"
            )
        return line

    def members(self) -> list[dict[str, Any]]:
        """Per inner fold, how the chosen candidate's model (the ensemble's member) compares with the fit that was
        scored: ``scored_best_val_mae`` / ``scored_best_epoch`` (the inner record) beside ``best_val_mae`` /
        ``best_epoch`` (the model kept) and ``same`` (both equal). A member trained again after its checkpoint was
        lost (a run resumed on another machine) can differ from the scored fit: training on a CPU is not bitwise
        reproducible across processes. Empty without a graph-network choice."""
        if self.model_name is None:
            return []
        members = []
        for record, result in zip(self.folds[self.model_name], self.fits, strict=True):
            scored = (record.get("best_val_mae"), record.get("best_epoch"))
            members.append({
                "scored_best_val_mae": scored[0],
                "scored_best_epoch": scored[1],
                "best_val_mae": result.best_val_mae,
                "best_epoch": result.best_epoch,
                "same": scored == (result.best_val_mae, result.best_epoch),
            })  # fmt: skip
        return members

    def devices(self) -> set[str]:
        """Where the inner fits trained, as their records say (those written before 2026-12-05 do not)."""
        return {r["device"] for records in self.folds.values() for r in records if "device" in r}

    def record(self) -> dict[str, Any]:
        """The selection as ``training.json`` and the model card keep it (JSON values)."""
        return {
            "scheme": self.scheme.to_dict(),
            "scheme_text": self.scheme.describe(),
            "candidates": {name: describe_candidate(c) for name, c in self.candidates.items()},
            "metric": self.metric,
            "inner_score": self.scores,
            "inner_mae": self.maes,
            "fold_mae": {name: [r["mae"] for r in records] for name, records in self.folds.items()},
            "seconds": {name: sum(r["seconds"] for r in records) for name, records in self.folds.items()},
            "chosen": self.chosen,
            "model": self.model_name,
            "members": self.members(),
            "summary": self.summary(),
        }


def pooled_mae(records: list[dict[str, Any]]) -> float:
    """The MAE over all scored structures of inner-fold records (NaN when any prediction is not finite)."""
    y = np.concatenate([r["y_true"] for r in records])
    p = np.concatenate([np.asarray(r["y_pred"], dtype=float) for r in records])
    return float(np.mean(np.abs(y - p))) if np.isfinite(p).all() else float("nan")


def pooled_log_loss(records: list[dict[str, Any]]) -> float:
    """The binary cross-entropy of 0/1 targets over all scored structures of inner-fold records, probabilities
    clipped to [1e-7, 1 − 1e-7] as in training (NaN when any prediction is not finite)."""
    y = np.concatenate([r["y_true"] for r in records])
    p = np.concatenate([np.asarray(r["y_pred"], dtype=float) for r in records])
    if not np.isfinite(p).all():
        return float("nan")
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def predictions_or_nan(model: Any, data: StructureData, cache_dir: str | Path | None) -> np.ndarray:
    """``model``'s predictions of ``data`` (n,); NaN for a model whose predictions are not finite (a diverged fit
    is scored NaN and named, rather than stopping a selection or a cross-validation at every rerun)."""
    try:
        return model.predict(data.structures, cache_dir=cache_dir, ids=data.ids)
    except NonFinitePredictions:
        return np.full(len(data), np.nan)


def check_has_network(candidates: Mapping[str, Candidate] | None, command: str) -> None:
    """Refuse, before any work, candidates none of which is a graph network (a forest alone chooses no model)."""
    if candidates and not any(isinstance(c, TrainSpec) for c in candidates.values()):
        raise ValueError(f"no candidate is a graph network: {command} needs at least one TrainSpec candidate")


def is_classifier(candidates: Iterable[Candidate]) -> bool:
    """Whether any graph-network candidate (a :class:`TrainSpec`) is a classifier."""
    return any(isinstance(c, TrainSpec) and c.task_type == "classification" for c in candidates)


def best_candidate(scores: Mapping[str, float | None]) -> str:
    """The name with the lowest score; the first on a tie; a missing or non-finite score ranks last."""
    return min(scores, key=lambda n: (scores[n] is None or not np.isfinite(scores[n]), scores[n] or 0.0))


def check_candidates_resolve(candidates: Mapping[str, Candidate]) -> None:
    """Refuse, naming it, a candidate whose descriptor set is unknown (or needs what is not installed), whose
    pretrained backbone cannot take its cutoff or sizes, or whose NEGNN encoder is not a saved model: else it
    would fail only when its turn came, after the candidates before it had trained.

    Raises:
        ValueError: ``candidate '<name>': <reason>`` (a KeyError too for an unknown name).
    """
    for name, candidate in candidates.items():
        try:
            if candidate.descriptor_set:
                get_descriptor_set(candidate.descriptor_set)
            if isinstance(candidate, TrainSpec) and pretrained_name(candidate) is not None:
                pretrained_architecture(candidate)
            encoder = getattr(candidate, "node_embeddings", None)
            if encoder and not (Path(encoder.rpartition(":")[0]) / "model.json").is_file():
                raise FileNotFoundError(f"node_embeddings {encoder!r}: no saved encoder (model.json) at that path")
        except UnknownNameError as exc:
            raise UnknownNameError(f"candidate {name!r}: {exc}") from None
        except (ValueError, OSError) as exc:
            raise ValueError(f"candidate {name!r}: {exc}") from None


def select(
    data: StructureData,
    candidates: Mapping[str, Candidate],
    scheme: Scheme | None = None,
    *,
    directory: str | Path | None = None,
    cache_dir: str | Path | None = None,
    target_units: str | None = None,
    progress: bool = True,
    on_scored: Callable[[str, int, dict[str, Any]], None] | None = None,
    **fit_options: Any,
) -> Selection:
    """Train every candidate on ``scheme``'s inner splits of ``data``, score each, keep the best graph network.

    Graph networks train with :func:`fit`; under :class:`ValidationSplit` the split is their early-stopping data
    too, under :class:`InnerKFold` they stop early on ``val_fraction`` of each inner training part and fold ``k``
    trains with seed ``spec.seed + k``. Their element list is that of the whole ``data`` (``element_types`` =
    "training"), so that every inner model reads every structure of it. A :class:`DescriptorForest` reads the
    descriptors of ``data``, computed once (through ``cache_dir``).

    Args:
        data: structures with targets.
        candidates: ``{name: TrainSpec | DescriptorForest}`` (see :mod:`~matgl_hybrid.training.candidates`).
        scheme: default ``ValidationSplit()``.
        directory: resumable records ``<directory>/<name>/fold<k>.json`` and Lightning checkpoints
            ``<directory>/<name>/fold<k>/``; a finished (candidate, fold) is reused only when it was produced from the
            same data, candidate, scheme and descriptor version (else ``FingerprintMismatch`` naming the difference).
            None: nothing is written, nothing resumes.
        cache_dir: descriptor cache folder, see :func:`fit`.
        target_units: units of the target, see :func:`fit`.
        progress: a bar over the (candidate, inner fold) units.
        on_scored: called as ``on_scored(name, fold, record)`` after each unit is scored or found finished.
        fit_options: ``trainer_kwargs``, ``callbacks``, ``logger`` of :func:`fit`.

    Raises:
        ValueError: no candidate, a name that is no simple folder name, data without targets or too small.
        FingerprintMismatch: a finished unit in ``directory`` of another run.
        TrainingInterrupted: SIGTERM or SIGINT stopped a training; with ``directory`` a rerun resumes.
    """
    scheme = scheme or ValidationSplit()
    if not candidates:
        raise ValueError("select needs at least one candidate")
    for name in candidates:
        check_candidate_name(name)
    check_candidates_resolve(candidates)  # all of them, before the first trains (minutes to hours each)
    if data.targets is None:
        raise ValueError("select needs targets: load the data with target=...")
    splits = scheme.splits(data, data.targets if is_classifier(candidates.values()) else None)
    candidates = _with_data_elements(candidates, data)
    trainer = result_changing(fit_options.get("trainer_kwargs"))
    stores = _checked_stores(data, candidates, scheme, directory, trainer)  # another run's records refused first
    folds: dict[str, list[dict[str, Any]]] = {name: [] for name in candidates}
    fits: dict[str, list[FitResult]] = {name: [] for name in candidates}
    frames: dict[str, Any] = {}  # descriptor frames of the forests, by descriptor set
    units = [(name, k) for name in candidates for k in range(len(splits))]
    bar = tqdm(units, desc="selection", unit="fit", disable=not progress)
    for name, k in bar:
        bar.set_postfix(candidate=name, fold=k)
        store, candidate = stores[name], candidates[name]
        if store is not None and store.has(k):
            record = store.load(k)
        else:
            train_idx, score_idx = splits[k]
            train, scored = data.subset(train_idx), data.subset(score_idx)
            start, earlier = time.perf_counter(), 0.0
            if isinstance(candidate, DescriptorForest):
                if candidate.descriptor_set not in frames:
                    frames[candidate.descriptor_set] = featurize(data.structures, candidate.descriptor_set,
                                                                 n_jobs=candidate.n_jobs, cache_dir=cache_dir,
                                                                 ids=data.ids, progress=progress)  # fmt: skip
                frame = frames[candidate.descriptor_set]
                predicted = candidate.fit_predict(frame.iloc[train_idx], train.targets, frame.iloc[score_idx])
                extra: dict[str, Any] = {}
            else:
                result = _fit_unit(train, scored, candidate, scheme, k, directory, name, cache_dir, target_units,
                                   fit_options)  # fmt: skip
                fits[name].append(result)
                predicted = predictions_or_nan(result.model, scored, cache_dir)  # a diverged one loses: ranked last
                extra = {"best_val_mae": result.best_val_mae, "best_epoch": result.best_epoch,
                         "epochs_run": result.epochs_run, "device": device_name(candidate.accelerator)}  # fmt: skip
                earlier = result.resumed_seconds  # the epochs run by the processes this fit resumed from
            predicted = np.asarray(predicted, dtype=float)
            finite = np.isfinite(predicted).all()
            record = {
                "mae": float(np.mean(np.abs(scored.targets - predicted))) if finite else float("nan"),
                "seconds": time.perf_counter() - start + earlier,
                "n_train": len(train),
                **extra,
                "ids": list(scored.ids),
                "y_true": scored.targets.tolist(),
                "y_pred": predicted.tolist(),
            }
            if store is not None:
                store.save(k, record)
        folds[name].append(record)
        if on_scored is not None:
            on_scored(name, k, record)
    selection = Selection(scheme, dict(candidates), folds)
    graphs = {name: s for name, s in selection.scores.items() if isinstance(candidates[name], TrainSpec)}
    if graphs:
        if not any(np.isfinite(score) for score in graphs.values()):
            failed = ", ".join(f"{name} {score}" for name, score in graphs.items())
            raise ValueError(f"every graph-network candidate failed on inner data (inner {selection.metric}: "
                             f"{failed}): its predictions are not finite; lower lr, or check the targets")  # fmt: skip
        selection.model_name = best_candidate(graphs)
        selection.fits = _restore_fits(data, selection.model_name, candidates, scheme, splits, fits, directory,
                                       cache_dir, target_units, fit_options)  # fmt: skip
        models = [r.model.cpu() for r in selection.fits]
        selection.model = models[0] if len(models) == 1 else HybridEnsemble.from_models(models)
    return selection


def check_records(
    data: StructureData, candidates: Mapping[str, Candidate], scheme: Scheme, directory: str | Path
) -> None:
    """Refuse the finished inner records in ``directory`` that :func:`select` with these arguments would not reuse.

    For a caller that reuses what a selection produced (e.g. a Matbench fold's record) without calling
    :func:`select` again: the inner records name the data, candidate, scheme and descriptor version they came
    from, so a revised descriptor set is caught there. Records not written yet are not checked.

    Raises:
        FingerprintMismatch: a finished record of another run, the difference named.
    """
    _checked_stores(data, _with_data_elements(candidates, data), scheme, directory)


def _with_data_elements(candidates: Mapping[str, Candidate], data: StructureData) -> dict[str, Candidate]:
    """The candidates, each training spec that asks for the training data's elements given those of all ``data``
    (so that every inner model reads every structure of it)."""
    elements = get_element_list(data.structures)
    return {
        name: dataclasses.replace(c, element_types=elements)
        if isinstance(c, TrainSpec) and c.element_types == "training"
        else c
        for name, c in candidates.items()
    }


def _checked_stores(
    data: StructureData,
    candidates: Mapping[str, Candidate],
    scheme: Scheme,
    directory: str | Path | None,
    trainer: Mapping[str, Any] | None = None,
) -> dict[str, FoldStore | None]:
    """One fingerprinted record store per candidate (None without ``directory``), every finished record checked;
    ``trainer``: the graph candidates' result-changing Trainer arguments (:func:`~.fit.result_changing`)."""
    stores = {
        name: FoldStore(Path(directory) / name, _fingerprint(data, c, scheme, trainer))
        if directory is not None
        else None
        for name, c in candidates.items()
    }
    for store in stores.values():
        for k in range(scheme.n_splits):
            if store is not None:
                store.has(k)
    return stores


def _fingerprint(
    data: StructureData, candidate: Candidate, scheme: Scheme, trainer: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """What determines a candidate's inner records: the data, the candidate, the scheme, the descriptor version and,
    for a graph network given any, the Trainer arguments that change its result."""
    descriptor_set = candidate.descriptor_set
    version = get_descriptor_set(descriptor_set).version if descriptor_set else None
    given = {"trainer": dict(trainer)} if trainer and isinstance(candidate, TrainSpec) else {}
    if is_classifier([candidate]):  # its splits are stratified by class (records of unstratified ones refused)
        given["splits"] = "stratified"
    return run_fingerprint([data], describe_candidate(candidate), version, scheme=scheme.to_dict(), **given)


def _fit_unit(
    train: StructureData,
    scored: StructureData,
    spec: TrainSpec,
    scheme: Scheme,
    k: int,
    directory: str | Path | None,
    name: str,
    cache_dir: str | Path | None,
    target_units: str | None,
    fit_options: dict[str, Any],
) -> FitResult:
    """Train one graph candidate on one inner fold (its Lightning checkpoints in ``<directory>/<name>/fold<k>``)."""
    checkpoint_dir = Path(directory) / name / f"fold{k}" if directory is not None else None
    if isinstance(scheme, ValidationSplit):  # the split is the early-stopping data
        return fit(train, spec=spec, val_data=scored, checkpoint_dir=checkpoint_dir, cache_dir=cache_dir,
                   target_units=target_units, **fit_options)  # fmt: skip
    member = dataclasses.replace(spec, seed=spec.seed + k) if k else spec
    return fit(train, spec=member, checkpoint_dir=checkpoint_dir, cache_dir=cache_dir, target_units=target_units,
               **fit_options)  # fmt: skip


def _restore_fits(
    data: StructureData,
    name: str,
    candidates: Mapping[str, Candidate],
    scheme: Scheme,
    splits: list[tuple[np.ndarray, np.ndarray]],
    fits: dict[str, list[FitResult]],
    directory: str | Path | None,
    cache_dir: str | Path | None,
    target_units: str | None,
    fit_options: dict[str, Any],
) -> list[FitResult]:
    """The chosen graph candidate's fits: those trained in this call, the others restored from their checkpoints
    (a finished run is restored, not trained again)."""
    if len(fits[name]) == len(splits):
        return fits[name]
    restored = []
    for k, (train_idx, score_idx) in enumerate(splits):
        restored.append(_fit_unit(data.subset(train_idx), data.subset(score_idx), candidates[name], scheme, k,
                                  directory, name, cache_dir, target_units, fit_options))  # fmt: skip
    return restored
