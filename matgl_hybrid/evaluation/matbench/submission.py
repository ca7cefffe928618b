"""The files of a submission folder besides the fold records: ``results.json.gz``, ``info.json`` (the model in
words, citations, requirements, where it ran) and ``run_matbench.py``."""

from __future__ import annotations

import gzip
import importlib.util
import json
import platform
import pprint
import zlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from matgl_hybrid.descriptors import get_descriptor_set
from matgl_hybrid.descriptors.sets import describe_descriptor_set
from matgl_hybrid.files import atomic_write_bytes
from matgl_hybrid.training import TrainSpec
from matgl_hybrid.training.finetuning import schedule_description
from matgl_hybrid.version import installed_version

if TYPE_CHECKING:
    from matbench.bench import MatbenchBenchmark

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
    "scipy",
    "chgnet",  # the CHGNet weights and features of chgnet* and sim:chgnet descriptors
    "matcalc",  # the simulations of sim: descriptors
    "phonopy",
    "ase",
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


def write_results(mb: MatbenchBenchmark, path: str | Path) -> None:
    """Write ``mb`` as the leaderboard's ``results.json.gz``: the JSON of ``mb.as_dict()``, gzip-compressed (as
    matbench's own ``to_file`` writes and its ``from_file`` reads a ``.gz`` name upstream; matbench 0.6's writes
    plain JSON whatever the name), atomically. A file that already records the same results is kept as it is:
    ``as_dict`` stamps the time of the call (and a hash over it), which would otherwise change a committed file on
    every rerun that only resumed finished folds."""
    values = mb.as_dict()
    path = Path(path)
    if path.is_file():
        try:
            if _unstamped(_results_json(path)) == _unstamped(json.loads(json.dumps(values))):
                return
        except ValueError:  # plain JSON, truncated or damaged: written anew
            pass
    atomic_write_bytes(path, gzip.compress(json.dumps(values).encode(), mtime=0))


def _unstamped(values: Any) -> Any:
    """A results dict without the datestamp and hash that ``MatbenchBenchmark.as_dict`` adds to every call."""
    if not isinstance(values, dict):
        return None
    return {k: v for k, v in values.items() if k not in ("datestamp", "hash")}


def _results_json(path: str | Path) -> Any:
    """The JSON of a ``results.json.gz``.

    Raises:
        ValueError: the file is not gzip-compressed (e.g. plain JSON, as earlier versions wrote it), or its
            content is not JSON.
    """
    raw = Path(path).read_bytes()
    if raw[:2] != b"\x1f\x8b":
        raise ValueError(f"{path} is not gzip-compressed (plain JSON?): the leaderboard reads it with gzip")
    try:
        return json.loads(gzip.decompress(raw))
    except (OSError, EOFError, zlib.error, ValueError) as exc:
        raise ValueError(f"{path} is not gzip-compressed JSON (truncated or damaged?): {exc}") from None


def require_matbench() -> None:
    """Raise, with how to install it, where the ``matbench`` package (not a dependency: its pins are older than this
    project's) is missing.

    Raises:
        ModuleNotFoundError: ``pip install --no-deps matbench==0.6``.
    """
    if importlib.util.find_spec("matbench") is None:
        raise ModuleNotFoundError(
            "Matbench runs and checks need the matbench package: pip install --no-deps matbench==0.6 (with its "
            "dependencies it would downgrade this project's)"
        )


def read_results(path: str | Path) -> MatbenchBenchmark:
    """A ``results.json.gz`` read as the leaderboard reads it (gzip-compressed JSON of a MatbenchBenchmark).

    Raises:
        ValueError: the file is not gzip-compressed (e.g. plain JSON, as earlier versions wrote it), or its
            content is not JSON.
    """
    require_matbench()
    from matbench.bench import MatbenchBenchmark  # 4-5 s to import: only when a results file is read

    return MatbenchBenchmark.from_dict(_results_json(path))


def requirements() -> dict[str, list[str]]:
    """Exact installed versions of the packages the run depends on, in the leaderboard's format."""
    versions = {name: installed_version(name) for name in REQUIREMENTS}
    return {"python": [f"{name}=={version}" for name, version in versions.items() if version is not None]}


def info_json(
    authors: str, algorithm: str, algorithm_long: str, specs: Iterable[TrainSpec], notes: Sequence[str]
) -> dict[str, Any]:
    """The leaderboard's ``info.json``: what the model is, what it cites (CHGNet when a descriptor set of
    ``specs`` uses its weights), and how and where it ran (``notes`` after the platform)."""
    citations = ["gong2023", "matgl", "megnet", "matbench"]
    weights = [
        w for spec in specs if spec.descriptor_set for w in get_descriptor_set(spec.descriptor_set).referenced_weights()
    ]
    if any(w["model"].startswith("CHGNet") for w in weights):  # the pretrained potential the descriptors use
        citations.insert(3, "chgnet")
    platform_note = f"Run on {platform.platform()}; python {platform.python_version()}."
    return {
        "authors": authors,
        "algorithm": algorithm,
        "algorithm_long": algorithm_long,
        "bibtex_refs": [CITATIONS[k] for k in citations],
        "notes": " ".join(note for note in (platform_note, *notes) if note),
        "requirements": requirements(),
    }


def describe_model(spec: TrainSpec, candidates: Mapping[str, Mapping[str, Any]], inner_folds: int | None = None) -> str:
    """The model in words (info.json's default ``algorithm_long``): the spec, and the candidates if any, chosen on
    the inner validation split or, with ``inner_folds``, by inner K-fold cross-validation."""
    fused = ""
    if spec.descriptor_set:
        fused = f", fused ({spec.fusion}) with {describe_descriptor_set(spec.descriptor_set)}"
    lead = "base settings, which each candidate below changes as listed: " if candidates else ""
    text = (
        f"matgl-hybrid: {lead}MatGL {spec.backbone} with the '{spec.readout}' readout{fused}; each model trained "
        f"with early stopping on {spec.val_fraction:.0%} of its training data (at most {spec.max_epochs} epochs, "
        f"batch {spec.batch_size}, {schedule_description(spec)}, {spec.loss}; binary cross-entropy for a "
        "classification task)."
    )
    if candidates:
        base = (spec.descriptor_set or "").split("+")
        described = []
        for name, changes in candidates.items():
            parts = []
            for key, value in changes.items():
                if key == "descriptor_set" and value and value.startswith(f"{spec.descriptor_set}+"):
                    added = "+".join(value.split("+")[len(base) :])  # only what the candidate adds
                    parts.append(f"adds {added}: {describe_descriptor_set(added)}")
                elif key == "descriptor_set" and value:
                    parts.append(f"descriptors {value}: {describe_descriptor_set(value)}")
                else:
                    parts.append(f"{key} {value}")
            described.append(f"{name} ({'; '.join(parts) or 'as above'})")
        if inner_folds:
            choice = (
                f" Per fold, {len(candidates)} candidates are scored by an inner {inner_folds}-fold cross-validation "
                "of the training fold (the test fold plays no part in the choice); the one with the lowest "
                f"out-of-fold MAE (log loss for a classifier) is chosen and its {inner_folds} inner models, averaged, "
                "predict the test fold "
                "(their standard deviation is the uncertainty of a regression task)"
            )
        else:
            choice = (
                f" Per fold, {len(candidates)} candidates are trained and the one with the lowest MAE (log loss for a "
                "classifier) on that inner validation split (carved from the training fold; the test fold plays no "
                "part in the choice) predicts the test fold"
            )
        text += f"{choice}: {', '.join(described)}. params of each record name the choice."
    elif inner_folds:
        text += (
            f" Per fold, {inner_folds} models are trained on an inner {inner_folds}-fold split of the training fold "
            f"(seeds {spec.seed}..{spec.seed + inner_folds - 1}; each stops early on {spec.val_fraction:.0%} of its "
            "inner training part, its held-out part only scored) and their average predicts the test fold (their "
            "standard deviation is the uncertainty of a regression task)."
        )
    return text + " Produced by run_matbench.py in this folder."


def compute_note(records: Iterable[Mapping[str, Any]]) -> str:
    """Devices and the wall time of training and prediction, summed over the fold ``records``."""
    records = list(records)
    if not records:
        return ""
    devices = sorted({str(r["params"].get("device", "not recorded")) for r in records})
    hours = sum(r["train_seconds"] for r in records) / 3600
    return f"Compute: {len(records)} folds, {hours:.2f} h of training and prediction on {', '.join(devices)}."


def run_script(
    tasks: Sequence[str],
    algorithm: str,
    authors: str,
    spec: TrainSpec,
    candidates: Mapping[str, Mapping[str, Any]],
    options: Mapping[str, Any],
) -> str:
    """``run_matbench.py``: the run's settings and one call of ``rerun_submission`` with them (matbench's checks
    want the recording code in the folder); ``options`` are the other ``MatbenchRun`` fields it passes."""

    def literal(value: Any) -> str:
        return pprint.pformat(value, sort_dicts=False, width=100)  # Python literals (None, False)

    return f'''"""Reproduce this Matbench submission: python run_matbench.py (rewrites this folder's results).

Dataset files are read from $MATMINER_DATA, else matminer's folder (a missing one is downloaded). Other options (a
data folder, no download, a descriptor cache) are MatbenchRun fields: pass them to rerun_submission as keywords, or
run `matgl-hybrid matbench --out <this folder>` with these settings.
"""

from pathlib import Path

from matgl_hybrid.evaluation.matbench import rerun_submission

TASKS = {list(tasks)!r}
ALGORITHM, AUTHORS = {algorithm!r}, {authors!r}
SPEC = {literal(spec.to_dict())}
#: Per fold, the candidate (changes to SPEC) with the lowest inner MAE, or log loss for a classifier (on the inner
#: validation split, or out of fold with OPTIONS' inner_folds) predicts the test fold.
CANDIDATES = {literal({k: dict(v) for k, v in candidates.items()})}
#: The run's other MatbenchRun settings: whether it accepts dataset files whose sha256 differs from matminer's
#: (and their provenance), the inner K-fold choice, where its protocol was registered.
OPTIONS = {literal(dict(options))}

if __name__ == "__main__":
    rerun_submission(Path(__file__).resolve().parent, SPEC, CANDIDATES, TASKS, ALGORITHM, AUTHORS, **OPTIONS)
'''
