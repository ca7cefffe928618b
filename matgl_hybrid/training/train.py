"""``train``: what ``matgl-hybrid train`` does (held-out test split, selection, ensembles) and saving the result;
the command chooses among ``default_candidates(spec)`` unless ``--no-select``, ``train`` among ``candidates`` when
given (none by default: the one spec)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matgl.ext.pymatgen import get_element_list

from matgl_hybrid.checkpoint import save_checkpoint
from matgl_hybrid.data import StructureData
from matgl_hybrid.data.splits import split_indices
from matgl_hybrid.descriptors import get_descriptor_set
from matgl_hybrid.errors import TrainingInterrupted
from matgl_hybrid.figures import png
from matgl_hybrid.model_card import CARD_FIGURE, holdout_metrics, render_card, training_figure
from matgl_hybrid.models import HybridEnsemble, HybridModel
from matgl_hybrid.models.backbones import get_backbone
from matgl_hybrid.training.candidates import Candidate
from matgl_hybrid.training.datamodule import model_elements
from matgl_hybrid.training.finetuning import pretrained_name, pretrained_reference, schedule_description
from matgl_hybrid.training.fit import FitResult, device_name, fit
from matgl_hybrid.training.selection import (
    InnerKFold,
    Scheme,
    ValidationSplit,
    check_has_network,
    is_classifier,
    select,
)
from matgl_hybrid.training.spec import TrainSpec


@dataclass
class TrainedModel:
    """What :func:`train` returns: the model, the fits of its members, the held-out test split and the record.

    Attributes:
        model: a :class:`HybridModel`, or a :class:`HybridEnsemble` of several members; on the CPU.
        results: one :class:`FitResult` per member.
        test: the held-out test split (never seen in training or early stopping), or None.
        record: the training record (``training.json``): ``target_name``, ``units``, ``n_structures`` (training
            and validation), ``spec``, ``device``, ``members`` (seed, best validation MAE and epoch, epochs run,
            seconds, history of each), ``val_ids``, and ``test`` (fraction, seed, metrics, ids and predictions)
            once the test split is scored (:meth:`score_test`, :meth:`save`).
        test_fraction, test_seed: how the test split was drawn.
        cache_dir: the descriptor cache the test split is scored through (None: no cache).
    """

    model: HybridModel | HybridEnsemble
    results: list[FitResult]
    test: StructureData | None
    record: dict[str, Any]
    test_fraction: float = 0.0
    test_seed: int = 0
    cache_dir: str | Path | None = None

    #: The files :meth:`save` writes beside the checkpoint's own: the record, the card and its figure.
    FILES = ("training.json", "model_card.md", CARD_FIGURE)
    #: The record's keys that precede ``command`` in ``training.json``.
    _HEAD = ("target_name", "units", "n_structures", "spec", "referenced_weights", "schedule", "device")

    @property
    def global_rank(self) -> int:
        """This process's rank under DDP (0 otherwise); only rank 0 writes."""
        return self.results[0].global_rank

    def score_test(self) -> dict[str, Any]:
        """Score the model on the held-out test split on the CPU, into ``record["test"]``, and return that."""
        if self.test is None:
            raise ValueError("no held-out test split: train with test_fraction > 0")
        metrics = holdout_metrics(self.model, self.test, self.cache_dir)
        self.record["test"] = {"fraction": self.test_fraction, "seed": self.test_seed, **metrics}
        return self.record["test"]

    def training_record(self, source: dict[str, Any] | None = None, command: str | None = None) -> dict[str, Any]:
        """The record as ``training.json`` holds it: ``source`` first, then ``record``, ``command`` after ``device``."""
        record = {**(source or {}), **{k: self.record[k] for k in self._HEAD}}
        if command is not None:
            record["command"] = command
        record.update({k: v for k, v in self.record.items() if k not in self._HEAD})
        return record

    def save(
        self,
        out: str | Path,
        *,
        source: dict[str, Any] | None = None,
        command: str | None = None,
        title: str | None = None,
        overwrite: bool = False,
        allow: Iterable[str | Path] = (),
    ) -> Path | None:
        """Save the model with ``training.json`` and ``model_card.md``; with a test split, score it and save again.

        The test split is scored after the model is safely saved (a structure the model cannot read loses nothing),
        then the checkpoint is saved again with the metrics in its record and card. Under DDP only the process of
        ``global_rank`` 0 writes; the others return None.

        Args:
            out: the checkpoint folder (see :func:`~matgl_hybrid.checkpoint.save_checkpoint`).
            source: where the data came from, recorded first (the CLI's ``data``, ``target``, ``target_transform``;
                with them the test split can be rebuilt by :func:`~matgl_hybrid.model_card.heldout_split`).
            command: the command line that trained the model, recorded and shown in the card.
            title: the card's title (default: ``matgl-hybrid checkpoint: <folder name>``).
            overwrite: see :func:`~matgl_hybrid.checkpoint.check_model_dir`.
            allow: see :func:`~matgl_hybrid.checkpoint.check_model_dir`.
        """
        if self.global_rank != 0:  # under DDP the other processes trained the same model: one writes it
            return None
        title = title or f"matgl-hybrid checkpoint: {Path(out).name}"
        allow = list(allow)

        def write() -> Path:
            record = self.training_record(source, command)
            texts = {"model_card.md": render_card(record, title, figure=CARD_FIGURE)}
            targets = self.test.targets if self.test is not None and "test" in record else None
            figures = {CARD_FIGURE: png(training_figure(record, targets))}
            return save_checkpoint(self.model, out, {"training": record}, texts=texts, figures=figures,
                                   overwrite=overwrite, allow=allow)  # fmt: skip

        path = write()
        if self.test is not None and "test" not in self.record:
            self.score_test()
            path = write()
        return path


def _check_test_elements(specs: Mapping[str, TrainSpec], train_part: StructureData, test: StructureData) -> None:
    """Before any training: the held-out structures' elements are among those each model of ``specs`` (by candidate
    name; ``""`` for the one spec) trained on ``train_part`` would embed: it could not score the test split once
    trained and saved.

    Raises:
        ValueError: naming the candidate, the elements and the first test entries that have them.
    """
    for name, spec in specs.items():
        known = set(model_elements(spec, train_part.structures))
        if missing := sorted(set(get_element_list(test.structures)) - known):
            having = [i for i, s in zip(test.ids, test.structures, strict=True)
                      if {e.symbol for e in s.elements} - known]  # fmt: skip
            shown = ", ".join(repr(i) for i in having[:3]) + (" …" if len(having) > 3 else "")
            another = "draw another test split (test_seed)"
            if get_backbone(spec.backbone).potential is not None:
                lacks = f"the pretrained {spec.backbone} was not trained on"
                remedy = "leave those entries out, or use a backbone that learns its element embeddings"
            elif spec.element_types == "training":
                lacks, remedy = "the training part lacks", f"element_types 'all' (--elements all), or {another}"
            else:
                lacks, remedy = "the model does not embed", f"add them to element_types, or {another}"
            model = f"candidate {name!r}: " if name else ""
            raise ValueError(
                f"{model}{len(having)} held-out test structures ({shown}) have elements {lacks} "
                f"({', '.join(missing)}): the model could not predict them; {remedy}"
            )


def train(
    data: StructureData,
    spec: TrainSpec | None = None,
    *,
    ensemble: int = 1,
    test_fraction: float = 0.0,
    test_seed: int = 0,
    checkpoint_dir: str | Path | None = None,
    on_member: Callable[[int, FitResult], None] | None = None,
    candidates: Mapping[str, Candidate] | None = None,
    scheme: Scheme | None = None,
    **fit_options: Any,
) -> TrainedModel:
    """Train a model as ``matgl-hybrid train`` does: an optional held-out test split, a selection among candidates
    (the command passes ``default_candidates(spec)`` unless ``--no-select``; here none unless given), one model or an
    ensemble.

    The held-out test split (``test_fraction`` of ``data``, seeded with ``test_seed``) is drawn first and never
    reaches training or early stopping. The members train on the same train/validation split of the rest
    (``spec.val_fraction``, seeded with ``spec.seed``) and differ in their initialisation: member ``k`` trains
    with seed ``spec.seed + k``. Save the result, with its model card and the test metrics, with
    :meth:`TrainedModel.save`.

    With ``candidates`` (e.g. :func:`~matgl_hybrid.training.candidates.default_candidates`), :func:`.select` first
    chooses among them on the rest of the data: under :class:`.ValidationSplit` (default: ``spec.val_fraction``,
    seeded with ``spec.seed``, the members' own split) the chosen graph network is member 0 and the others train
    with its spec; under :class:`.InnerKFold` its K inner models are the ensemble. The record's ``spec`` is the
    chosen one, and ``selection`` holds every candidate, the scheme and every inner score.

    Args:
        data: structures with targets.
        spec: model and training settings (default: ``TrainSpec()``).
        ensemble: number of members (K > 1: a :class:`HybridEnsemble`).
        test_fraction: fraction held out as a test split, in [0, 1) (0: none).
        test_seed: seed of the test split.
        checkpoint_dir: Lightning checkpoints of member ``k`` in ``<checkpoint_dir>/member_<k>`` (see :func:`fit`:
            a rerun resumes them), the selection's in ``<checkpoint_dir>/selection``.
        candidates: ``{name: TrainSpec | DescriptorForest}`` to choose among (None: ``spec`` alone).
        scheme: the selection's scheme (see above).
        on_member: called as ``on_member(k, result)`` after member ``k`` (from 0) is trained, in every process.
        fit_options: ``target_units``, ``cache_dir``, ``trainer_kwargs``, ``callbacks``, ``logger`` of :func:`fit`;
            the same ones serve every member.

    Raises:
        ValueError: settings or data that cannot train (checked before any work).
        TrainingInterrupted: SIGTERM or SIGINT stopped training (see :func:`fit`); it names the member, and with
            ``checkpoint_dir`` a rerun resumes it (the members before it are restored from their checkpoints).
    """
    spec = spec or TrainSpec()
    spec.validate()
    if not 0 <= test_fraction < 1:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    if isinstance(ensemble, bool) or not isinstance(ensemble, int) or ensemble < 1:
        raise ValueError(f"ensemble must be an integer >= 1, got {ensemble!r}")
    if data.targets is None:
        raise ValueError("train needs targets: load the data with target=...")
    check_has_network(candidates, "train")  # before hours of selection
    classifier = is_classifier([spec, *(candidates or {}).values()])
    test = None
    if test_fraction:
        # The held-out test split is drawn first and never reaches training or early stopping.
        classes = data.targets if classifier else None
        keep, held = split_indices(len(data), test_fraction, test_seed, data.structure_keys(), classes)
        data, test = data.subset(keep), data.subset(held)
        trained = {n: c for n, c in candidates.items() if isinstance(c, TrainSpec)} if candidates else {"": spec}
        _check_test_elements(trained, data, test)
    if unknown := sorted(set(fit_options) - {"target_units", "cache_dir", "trainer_kwargs", "callbacks", "logger"}):
        raise TypeError(f"train() got unexpected keyword arguments {unknown}")
    fit_options["callbacks"] = list(fit_options.get("callbacks", ()))  # the same ones for every member
    scheme = scheme or ValidationSplit(spec.val_fraction, spec.seed)
    if candidates and isinstance(scheme, InnerKFold) and ensemble > 1:
        raise ValueError(f"inner {scheme.k}-fold selection gives an ensemble of {scheme.k}: leave ensemble at 1")
    results: list[FitResult] = []
    selection = None
    if candidates:
        directory = Path(checkpoint_dir) / "selection" if checkpoint_dir is not None else None
        selection = select(data, candidates, scheme, directory=directory, progress=spec.progress, **fit_options)
        spec = candidates[selection.model_name]
        results = list(selection.fits)
        for k, result in enumerate(results):
            if on_member is not None:
                on_member(k, result)
    # Members share the train/validation split (split seed = spec.seed) and differ in initialisation.
    classes = data.targets if classifier else None
    split = (
        scheme.splits(data, classes)[0]
        if isinstance(scheme, ValidationSplit)
        else split_indices(len(data), spec.val_fraction, spec.seed, data.structure_keys(), classes)
    )
    train_split, val_split = data.subset(split[0]), data.subset(split[1])
    for k in range(len(results), max(ensemble, len(results))):
        member_spec = TrainSpec(**{**spec.to_dict(), "seed": spec.seed + k}) if k else spec
        try:
            result = fit(
                train_split,
                spec=member_spec,
                val_data=val_split,
                checkpoint_dir=Path(checkpoint_dir) / f"member_{k}" if checkpoint_dir is not None else None,
                **fit_options,
            )
        except TrainingInterrupted as exc:
            if ensemble == 1:
                raise
            raise TrainingInterrupted(f"ensemble member {k + 1} of {ensemble}: {exc}") from None
        if on_member is not None:
            on_member(k, result)
        results.append(result)
    model = results[0].model if len(results) == 1 else HybridEnsemble.from_models([r.model for r in results])
    model = model.cpu()  # saved and scored on the CPU: the held-out metrics reproduce on any machine
    accelerator = (fit_options.get("trainer_kwargs") or {}).get("accelerator", spec.accelerator)
    record = {
        "target_name": data.target_name,
        "units": fit_options.get("target_units"),
        "n_structures": len(data),
        "spec": spec.to_dict(),
        # Pretrained weights the descriptors are computed with: referenced by name and sha256, never embedded.
        "referenced_weights": get_descriptor_set(spec.descriptor_set).referenced_weights()
        if spec.descriptor_set
        else [],
        "device": device_name(accelerator),
        "schedule": schedule_description(spec),
        **({"pretrained_backbone": pretrained_reference(spec)} if pretrained_name(spec) else {}),
        "members": [
            {
                "seed": spec.seed + k,
                "best_val_mae": r.best_val_mae,
                "best_epoch": r.best_epoch,
                "epochs_run": r.epochs_run,
                "seconds": r.seconds,
                "history": r.history,
            }
            for k, r in enumerate(results)
        ],
        "val_ids": results[0].val_ids,
    }
    if selection is not None:
        record["selection"] = selection.record()
    return TrainedModel(model, results, test, record, test_fraction, test_seed, fit_options.get("cache_dir"))
