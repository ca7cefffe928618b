"""The leaderboard's rules for a submission folder (``scripts/test_submission.py`` of the matbench repository).

A folder ``matbench_v0.1_<algorithm>`` holds ``info.json`` (``notes`` present; ``authors``, ``algorithm``,
``algorithm_long``, ``bibtex_refs``, ``requirements`` non-empty), ``results.json.gz`` (gzip-compressed JSON that
``MatbenchBenchmark`` reads and finds valid: every fold of every recorded task, the official test ids, the right
score keys), a ``.py`` or ``.ipynb`` at the top level, no ``.ipynb_checkpoints``, every other file at most 10 MB;
each algorithm name once. Also the documented recommendation this project follows: 5–15 characters of ``algorithm``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from matgl_hybrid.evaluation.matbench.submission import read_results

#: What a results value is, in a problem's words.
_KIND: dict[str, str] = {"data": "a prediction", "uncertainty": "an uncertainty"}


def check_submission_names(out: str | Path, algorithm: str, authors: str) -> None:
    """Refuse, before a run, names its submission folder could never be valid with: they would be found only by
    :func:`validate_submission` after every fold had trained, and a corrected ``algorithm`` names another folder.

    Raises:
        ValueError: the folder name, the algorithm (5 to 15 characters, no path separator) or empty authors.
    """
    problems = []
    if not Path(out).name.startswith("matbench_v0.1_"):
        problems.append(f"the folder name {Path(out).name!r} must start with 'matbench_v0.1_'")
    if not 5 <= len(algorithm) <= 15 or any(c in algorithm for c in "/\\"):
        problems.append(f"--algorithm {algorithm!r} must have 5 to 15 characters and no path separator")
    if not authors.strip():
        problems.append("--authors is empty")
    if problems:
        raise ValueError("the submission could never be valid: " + "; ".join(problems))


def validate_submission(folder: str | Path) -> list[str]:
    """Problems that would fail the leaderboard's submission test (empty list: valid)."""
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
    submission folder inside ``folder``: ``{folder name: [problem, …]}`` (an empty list: valid). A single folder is
    also checked against the submission folders beside it for the leaderboard's unique algorithm name (a fork's
    ``benchmarks/``)."""
    folder = Path(folder)
    if _is_submission(folder):
        problems = validate_submission(folder)
        algorithm = _algorithm(folder / "info.json")
        absolute = Path(os.path.abspath(folder))  # ".." normalised; a symlinked folder keeps its own neighbours
        siblings = [p for p in sorted(absolute.parent.iterdir()) if p.name != absolute.name]
        for other in siblings:
            if algorithm is not None and _is_submission(other) and _algorithm(other / "info.json") == algorithm:
                problems.append(f"algorithm {algorithm!r} is already used by {other.name}")
        return {str(folder): problems}
    return validate_submissions(folder)


def _is_submission(folder: Path) -> bool:
    """Whether ``folder`` is a submission folder: named ``matbench_v0.1_<algorithm>`` or holding an ``info.json``."""
    return folder.is_dir() and (folder.name.startswith("matbench_v0.1_") or (folder / "info.json").exists())


def validate_submissions(root: str | Path) -> dict[str, list[str]]:
    """:func:`validate_submission` for every folder of ``root``, plus the leaderboard's unique-algorithm check."""
    root = Path(root)
    if not root.is_dir():
        return {str(root): [f"{root} is not a directory"]}
    found = {p.name: validate_submission(p) for p in sorted(root.iterdir()) if p.is_dir()}
    names: dict[str, str] = {}
    for name in found:
        algorithm = _algorithm(root / name / "info.json")
        if algorithm in names:
            found[name].append(f"algorithm {algorithm!r} is already used by {names[algorithm]}")
        names.setdefault(algorithm, name)
    return found


def _algorithm(info: Path) -> str | None:
    """The ``algorithm`` of a folder's ``info.json``; None where it has none readable (its problems are the
    folder's own findings)."""
    try:
        algorithm = json.loads(info.read_text(encoding="utf-8")).get("algorithm") if info.is_file() else None
    except (ValueError, OSError, AttributeError):
        return None
    return algorithm if isinstance(algorithm, str) else None


def _file_problems(path: Path, check: Callable[[Path], list[str]], unreadable: str) -> list[str]:
    """``check(path)``, or a problem saying that the file is missing or cannot be read."""
    if not path.is_file():
        return [f"{path.name} is missing"]
    try:
        return check(path)
    except ModuleNotFoundError as exc:  # this installation lacks matbench: nothing is known of the file
        if "pip install" in str(exc):
            raise
        return [f"{path.name} {unreadable}: {exc}"]
    except Exception as exc:  # any failure to read is a problem to report, not to raise
        return [f"{path.name} {unreadable}: {exc}"]


def _results_problems(path: Path) -> list[str]:
    """Problems of a ``results.json.gz`` that MatbenchBenchmark reads: not valid, or a prediction or uncertainty
    that is not a finite number (matbench accepts NaN)."""
    mb = read_results(path)
    problems = [] if mb.is_valid else [f"{path.name} is not valid (MatbenchBenchmark.is_valid is False)"]
    for name, task in mb.tasks_map.items():
        for fold, result in (task.results or {}).items():
            ids = task.validation[fold].test  # not the stored keys: matbench's dicts add one on a missed lookup
            for key in ("data", "uncertainty"):
                if not (recorded := result.get(key)):  # no uncertainty recorded (no data: is_valid says so)
                    continue
                values = [_numbers(recorded.get(i)) for i in ids]
                if not all(np.isfinite(np.asarray(v, dtype=float)).all() for v in values):
                    problems.append(f"{path.name}: {name} {fold} has {_KIND[key]} that is not a finite number")
    return problems


def _numbers(value: Any) -> list[Any]:
    """The numbers of one recorded prediction or uncertainty: a value (None where the structure has none), or
    matbench's ``{"ci_lower", "ci_upper", "std"}`` of one structure (``std`` is None for an asymmetric interval)."""
    if isinstance(value, dict):
        numbers = [v for k, v in value.items() if k in ("ci_lower", "ci_upper") or (k == "std" and v is not None)]
        return numbers or [float("nan")]  # no interval at all: not a finite uncertainty
    return [value]


def _info_problems(info: dict[str, Any]) -> list[str]:
    """Problems of ``info.json``'s fields."""
    problems = [] if "notes" in info else ["info.json has no 'notes' (it may be empty, not absent)"]
    for key in ("authors", "algorithm", "algorithm_long", "bibtex_refs", "requirements"):
        if not info.get(key):
            problems.append(f"info.json {key!r} is missing or empty")
    algorithm = info.get("algorithm")
    if isinstance(algorithm, str) and not 5 <= len(algorithm) <= 15:
        problems.append(f"info.json 'algorithm' should have 5 to 15 characters, has {len(algorithm)}")
    return problems
