"""Candidates: models trained in every fold, the one with the lowest inner-validation score recorded (MAE; the
log loss of its probabilities for a classifier).

A candidate is ``{name: TrainSpec field changes}`` applied to a run's spec; its name names the folder
``folds/<task>/<name>/``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from matgl_hybrid.training.candidates import read_candidates
from matgl_hybrid.training.selection import best_candidate


def check_recorded_candidates(folder: Path, candidates: Mapping[str, Mapping[str, Any]]) -> None:
    """Refuse a run into ``folder`` with other candidates than it records (its ``candidates.json``; a folder with
    ``results.json.gz`` but no ``candidates.json`` records none): the run would choose again and rewrite the
    recorded results and candidates.

    Raises:
        ValueError: one line naming the folder and the candidates that differ.
    """
    recorded_file = folder / "candidates.json"
    if recorded_file.is_file():
        recorded = read_candidates(recorded_file)
    elif (folder / "results.json.gz").is_file():
        recorded = {}
    else:
        return
    current = json.loads(json.dumps({name: dict(changes) for name, changes in candidates.items()}))
    differ = sorted(n for n in recorded.keys() | current.keys() if recorded.get(n) != current.get(n))
    if differ:

        def described(found: Mapping[str, Any]) -> str:
            return f"candidates {', '.join(found)}" if found else "no candidates"

        raise ValueError(
            f"{folder} records {described(recorded)}, this run has {described(current)} (differing: "
            f"{', '.join(differ)}): it would choose again and rewrite the folder's results; give another --out"
        )


def choose(records: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """The fold record of the candidate with the lowest inner-validation score (the first on a tie): MAE, or for
    classifiers (records with ``val_log_loss``) the log loss of their probabilities. Its ``params`` name the choice
    and every candidate's inner-validation MAE (and log loss), its ``train_seconds`` are those of all; the record
    itself without candidates (``{"": record}``)."""
    if list(records) == [""]:
        return records[""]
    maes = {name: r["params"]["best_val_mae"] for name, r in records.items()}
    log_losses = {name: r["params"]["val_log_loss"] for name, r in records.items() if "val_log_loss" in r["params"]}
    classifiers = bool(log_losses)
    if classifiers and len(log_losses) != len(records):
        raise ValueError(f"candidates {sorted(set(records) - set(log_losses))} have no validation log loss (fold "
                         "records of regressors, or of classifiers written before it was recorded: rerun those "
                         "candidates' folds in another --out)")  # fmt: skip
    chosen = best_candidate(log_losses if classifiers else maes)
    record = records[chosen]
    scores = {"inner_val_mae": maes, **({"inner_val_log_loss": log_losses} if classifiers else {})}
    return {
        **record,
        "train_seconds": sum(r["train_seconds"] for r in records.values()),
        "params": {**record["params"], "candidate": chosen, **scores},
    }
