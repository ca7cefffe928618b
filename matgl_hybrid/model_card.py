"""Model cards: the held-out metrics of a trained model and the markdown card saved beside its weights."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from sklearn.metrics import log_loss, max_error, mean_absolute_error, mean_squared_error, r2_score, roc_auc_score

from matgl_hybrid import data
from matgl_hybrid.data import StructureData
from matgl_hybrid.figures import learning_curves, panels, parity


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """MAE, RMSE, R² and the largest absolute error of ``y_pred`` against ``y_true`` (both (n,), target units)."""
    y_true, y_pred = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    constant = np.ptp(y_true) == 0  # R² undefined: NaN (r2_score would return 1.0 or 0.0)
    return {
        "mae": float(mean_absolute_error(y_true, y_pred)),
        # sqrt of the MSE: root_mean_squared_error needs scikit-learn >= 1.4, the package allows 1.3
        "rmse": float(np.sqrt(mean_squared_error(y_true, y_pred))),
        "r2": float("nan") if constant else float(r2_score(y_true, y_pred)),
        "max_abs_error": float(max_error(y_true, y_pred)),
        "n": len(y_true),
    }


def classification_metrics(y_true: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """ROC-AUC (NaN when ``y_true`` holds one class), log loss (nats) and accuracy at 0.5 of ``probabilities`` (n,)
    of class 1 against 0/1 labels ``y_true`` (n,)."""
    y, p = np.asarray(y_true, dtype=float), np.asarray(probabilities, dtype=float)
    return {
        "rocauc": float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else float("nan"),
        "log_loss": float(log_loss(y, np.clip(p, 1e-7, 1 - 1e-7), labels=[0, 1])),
        "accuracy": float(np.mean((p >= 0.5) == (y == 1))),
    }


def holdout_metrics(model: torch.nn.Module, test: StructureData, cache_dir: str | Path | None = None) -> dict[str, Any]:
    """Predict ``test`` with ``model`` on the CPU (the model is moved there) and score it.

    ``cache_dir``: descriptor cache folder; None: no cache.

    CPU scores reproduce on any machine with the same torch build; the ids and predictions are returned too, so that
    a reproduction can be checked entry by entry.
    """
    predicted = model.cpu().predict(test.structures, cache_dir=cache_dir, ids=test.ids)
    classifier = getattr(model, "task_type", "regression") == "classification"
    return {
        "y_true": [float(y) for y in test.targets],  # what heldout_split checks a rebuilt split against
        **regression_metrics(test.targets, predicted),  # a classifier's: of its probabilities
        **(classification_metrics(test.targets, predicted) if classifier else {}),
        "scored_with": f"torch {torch.__version__}, cpu",
        "ids": list(test.ids),
        "predictions": [float(p) for p in predicted],
    }


def heldout_split(record: dict[str, Any], data_dir: str | Path | None = None) -> StructureData:
    """The held-out test split of a training record (``training.json``), rebuilt from its data file.

    Args:
        record: the record of ``matgl-hybrid train --test-fraction``.
        data_dir: folder holding the data file, directly or in a subfolder (default: the path in the record); the
            first file of that name whose held-out entries and targets are the record's.

    Raises:
        ValueError: no such file holds the record's held-out ids with the targets it scored.
    """
    return _rebuilt(record, data_dir, "test")


def training_split(record: dict[str, Any], data_dir: str | Path | None = None) -> StructureData:
    """The structures a training record's model trained on: its data file less the held-out, validation
    (``val_ids``) and skipped entries, found as :func:`heldout_split` finds the file (same arguments, same errors)."""
    return _rebuilt(record, data_dir, "train")


def _rebuilt(record: dict[str, Any], data_dir: str | Path | None, part: str) -> StructureData:
    """The record's ``part`` (``test`` or ``train``) of the first data file that holds its held-out entries."""
    source = Path(record["data"])
    if data_dir is None:
        return _split_of(source, record, part)
    candidates = list(dict.fromkeys([Path(data_dir) / source.name, *sorted(Path(data_dir).rglob(source.name))]))
    refusals = []
    for path in (c for c in candidates if c.exists()):  # the first whose held-out entries are the record's
        try:
            return _split_of(path, record, part)
        except (ValueError, OSError, KeyError) as exc:  # not the file (another version, unreadable): the next one
            refusals.append(f"{path}: {exc}" if str(path) not in str(exc) else str(exc))
    raise ValueError("; ".join(refusals) or f"no {source.name} in {data_dir}")


def _split_of(source: Path, record: dict[str, Any], part: str = "test") -> StructureData:
    """The record's held-out entries (``part="test"``) or training entries (``"train"``: the others less
    ``val_ids``) of the data at ``source``, checked against the targets the record scored."""
    # by id: entries the training left out (--skip-invalid) may not even load
    dataset = data.load(source, target=record["target"], skip_invalid=bool(record.get("skipped_entries")))
    if record.get("target_transform") == "log10":
        dataset = data.log10_targets(dataset)
    position = {entry_id: i for i, entry_id in enumerate(dataset.ids)}
    missing = [i for i in record["test"]["ids"] if i not in position]
    if missing:
        raise ValueError(f"{source} lacks {len(missing)} held-out ids of the record, e.g. {missing[:3]}")
    split = dataset.subset([position[i] for i in record["test"]["ids"]])
    scored = record["test"].get("y_true")  # records written before it was recorded cannot be checked
    if scored is not None and not np.allclose(split.targets, scored, rtol=1e-9, atol=0.0):
        raise ValueError(f"{source} holds other targets for the held-out ids than the record scored: another version "
                         "of the data")  # fmt: skip
    if part == "test":
        return split
    if "val_ids" not in record:
        raise ValueError(f"{source}: the record names no validation ids (val_ids): its training part is not known")
    skipped = [entry["id"] for entry in record.get("skipped_entries") or []]  # e.g. a graph without edges
    left_out = {*record["test"]["ids"], *record["val_ids"], *skipped}
    train = dataset.subset([i for i, entry_id in enumerate(dataset.ids) if entry_id not in left_out])
    if "n_structures" in record and len(train) + len(record["val_ids"]) != record["n_structures"]:
        raise ValueError(f"{source} holds {len(train) + len(record['val_ids'])} training and validation entries, the "
                         f"record {record['n_structures']}: another version of the data")  # fmt: skip
    return train


#: The leakage statement of models that use CHGNet descriptors (README, model cards).
LEAKAGE_CHGNET = (
    "- Leakage: the `chgnet` descriptors come from CHGNet 0.3.0, pretrained on MPtrj, the relaxation trajectories "
    "of nearly all Materials Project structures; it has seen the structures (not the labels) of MP-derived data, "
    "and its energy per atom is close to a formation-energy label (`chgnet_noenergy` leaves it out)."
)


#: The card's figure in a checkpoint folder (:func:`training_figure`).
CARD_FIGURE = "training.png"


def training_figure(record: dict[str, Any], test_targets: Sequence[float] | None = None) -> Figure:
    """The card's figure: MAE per epoch (training and validation of one model, validation of each ensemble member)
    and, with a scored held-out test split and its ``test_targets`` (n,), the test parity plot (target units). A
    classifier's: its log loss per epoch (what chose the kept epoch), without a parity plot of probabilities."""
    quantity, units = record.get("target_name") or "target", record.get("units")
    classifier = record.get("spec", {}).get("task_type") == "classification"
    metric, label_of = ("Total_Loss", "log loss") if classifier else ("MAE", "MAE")
    test = record.get("test") if test_targets is not None and not classifier else None
    fig, axes = panels(2 if test else 1, size=(4.8, 4.2))
    members, curves = record["members"], {}
    for k, member in enumerate(members):
        for split in ("train", "val") if len(members) == 1 else ("val",):
            rows = [r for r in member["history"] if f"{split}_{metric}" in r]
            label = {"train": "training", "val": "validation"}[split] if len(members) == 1 else f"member {k + 1}"
            curves[label] = ([r["epoch"] + 1 for r in rows], [r[f"{split}_{metric}"] for r in rows])
    title = f"{label_of} per epoch" + (" (validation)" if len(members) > 1 else "")
    if len(members) == 1 and members[0]["best_epoch"] >= 0:  # the epoch whose weights the model keeps
        axes[0].axvline(members[0]["best_epoch"] + 1, color="black", ls=":", lw=1.0, label="kept (best validation)")
    if classifier:
        learning_curves(axes[0], curves, quantity=f"log loss of {quantity}", title=title)
    else:
        learning_curves(axes[0], curves, quantity=f"MAE of {quantity}", units=units, title=title)
    if test:
        parity(axes[1], np.asarray(test_targets), np.asarray(test["predictions"]), quantity=quantity, units=units,
               title=f"held-out test split ({test['n']})")  # fmt: skip
    return fig


def render_card(record: dict[str, Any], title: str, figure: str | None = None) -> str:
    """The ``model_card.md`` of a checkpoint from its training record (``matgl-hybrid train``'s ``training.json``);
    ``figure``: the file name of its :func:`training_figure` beside it, shown after the metrics."""
    spec = record["spec"]
    descriptor_set = spec["descriptor_set"] if "descriptor_set" in spec else spec["descriptors"]  # 0.1 records
    member = record["members"][0]
    units = record.get("units") or "target units"
    lines = [
        f"# {title}",
        "",
        "## Model",
        f"- {spec['backbone']} backbone, `{spec['readout']}` readout, descriptors `{descriptor_set}` "
        f"({spec['fusion']} fusion), cutoff {spec['cutoff']} Å; {len(record['members'])} member(s).",
        f"- Predicts `{record['target_name']}` in {units}.",
    ]
    if pretrained := record.get("pretrained_backbone"):
        lines.append(
            f"- Backbone fine-tuned from MatGL's pretrained {pretrained['name']} (weights sha256 "
            f"`{pretrained['sha256']}`, {pretrained['licence']}), shipped in matgl-hybrid; this checkpoint holds the "
            f"fine-tuned weights. {pretrained['leakage']}"
        )
    for weights in record.get("referenced_weights", []):
        lines.append(
            f"- Needs {weights['model']}'s weights, referenced, not embedded: they ship in `{weights['package']}`, "
            f"sha256 `{weights['sha256']}`; other weights are refused at prediction (the model's descriptor version "
            "pins their digest)."
        )
    if selection := record.get("selection"):
        lines += ["", *selection_lines(selection, units)]
    lines += ["", "## Data and split"]
    if "chgnet" in str(descriptor_set):
        lines.append(LEAKAGE_CHGNET)
    if record.get("data"):  # trained from a data file (the command line)
        lines.append(
            f"- `{Path(record['data']).name}`, target `{record['target']}`"
            + (f" (modelled as {record['target_transform']})" if record.get("target_transform") else "")
            + f": {record['n_structures']} structures used for training and validation."
        )
        if skipped := record.get("skipped_entries"):
            lines.append(
                f"- Left out: {len(skipped)} {'entry' if len(skipped) == 1 else 'entries'} (invalid, no neighbour pair "
                "within the cutoff, or a target ≤ 0 under log10); ids and reasons in `training.json`."
            )
    else:  # trained from Python (matgl_hybrid.training.train)
        lines.append(
            f"- Target `{record['target_name']}`: {record['n_structures']} structures used for training and validation."
        )
    test = record.get("test")
    if test:
        lines.append(
            f"- Held-out test split: {test['n']} structures ({100 * test['fraction']:g} %, seeded with "
            f"{test['seed']}, `matgl_hybrid.data.splits.split_indices`), never seen in training or early stopping; "
            "their ids are in `training.json`."
        )
    scheme = (record.get("selection") or {}).get("scheme", {})
    rest = (f"each member's {scheme['k'] - 1}/{scheme['k']} of the rest (inner {scheme['k']}-fold)"
            if scheme.get("scheme") == "inner_kfold" else "the rest")  # fmt: skip
    classifier = spec.get("task_type") == "classification"  # kept by log loss; the MAE is of probabilities
    kept = "lowest validation log loss; validation MAE" if classifier else "best validation MAE"
    lines += [
        f"- Early stopping on {100 * spec['val_fraction']:g} % of {rest} ({kept} "
        f"{member['best_val_mae']:.4g} at epoch {member['best_epoch'] + 1} of {member['epochs_run']}"
        f"{', member 1' if len(record['members']) > 1 else ''}).",
        "",
    ]
    if test and "rocauc" in test:  # a classifier's probabilities: the MAE would reward pushing them to 0 or 1
        lines += [
            "## Metrics on the held-out test split",
            "",
            "| ROC-AUC | log loss (nats) | accuracy at 0.5 | n |",
            "|---:|---:|---:|---:|",
            f"| {test['rocauc']:.4f} | {test['log_loss']:.4g} | {test['accuracy']:.4f} | {test['n']} |",
            "",
            f"Predicted: probabilities of class 1. Scored with {test.get('scored_with', 'unknown')}.",
            "",
        ]
    elif test:
        lines += [
            "## Metrics on the held-out test split",
            "",
            "| MAE | RMSE | R² | max abs error | n |",
            "|---:|---:|---:|---:|---:|",
            f"| {test['mae']:.6g} | {test['rmse']:.6g} | {test['r2']:.4f} | {test['max_abs_error']:.4g} "
            f"| {test['n']} |",
            "",
            f"Units: {units}. Scored with {test.get('scored_with', 'unknown')}.",
            "",
        ]
    if figure:
        parity = test and spec.get("task_type") != "classification"  # a classifier's figure has no parity plot
        lines += [f"![training curves{' and test parity' if parity else ''}]({figure})", ""]
    members = record["members"]
    seeds = [m["seed"] for m in members if "seed" in m] if len(members) > 1 else []
    seeds_text = f"seeds {', '.join(map(str, seeds))}" if len(seeds) == len(members) > 1 else f"seed {spec['seed']}"
    seconds = sum(m["seconds"] for m in members)
    lines += [
        "## Training",
        f"- batch {spec['batch_size']}, {record.get('schedule') or 'lr {:g}'.format(spec['lr'])}, at most "
        f"{spec['max_epochs']} epochs, "
        f"patience {spec['patience']}, loss {spec['loss']}, {seeds_text}; {seconds:.0f} s on "
        f"{record.get('device', 'unknown device')}" + (f" ({len(members)} members together)." if len(members) > 1
                                                       else "."),
        "",
    ]
    if record.get("command"):
        lines += ["## Command", "", "```", record["command"], "```", ""]
    return "\n".join(lines)


def selection_lines(selection: dict[str, Any], units: str) -> list[str]:
    """The card's "Model selection" section from a training record's ``selection``
    (:meth:`~matgl_hybrid.training.Selection.record`)."""
    by_log_loss = selection.get("metric", "MAE") != "MAE" and "inner_score" in selection  # a classifier's choice
    lines = [
        "## Model selection",
        "",
        f"Candidates scored on {selection['scheme_text']}, data each did not train on; the lowest inner "
        f"{selection.get('metric', 'MAE')} wins.",
        "",
        f"| candidate | model | inner MAE ({units}) |{' inner log loss |' if by_log_loss else ''} seconds |",
        f"|---|---|---:|{'---:|' if by_log_loss else ''}---:|",
    ]
    for name, candidate in selection["candidates"].items():
        what = (
            f"random forest on `{candidate['descriptor_set']}`"
            if candidate.get("model") == "random_forest"
            else f"{candidate['backbone']}, `{candidate['readout']}` readout, `{candidate['descriptor_set']}`"
        )
        mark = " (chosen)" if name == selection["chosen"] else ""
        score = f" {selection['inner_score'][name]:.4g} |" if by_log_loss else ""
        lines.append(
            f"| {name}{mark} | {what} | {selection['inner_mae'][name]:.4g} |{score} {selection['seconds'][name]:.0f} |"
        )
    lines.append("")
    if selection["chosen"] != selection["model"]:
        lines.append(
            f"**Warning:** this model is `{selection['model']}`, the best graph network, but `{selection['chosen']}` "
            "(descriptors alone) scored better on inner data: prefer it, or train with more data or epochs."
        )
    else:
        lines.append(f"This model is `{selection['chosen']}`.")
    return lines
