"""Train the shipped pretrained checkpoints with the project's own ``matgl-hybrid train`` and register them.

Each model trains on all but a seeded, held-out 10 % test split of a dataset in ``../shared/data`` and is saved
to ``matgl_hybrid/pretrained_models/<name>/`` with its model card (held-out metrics, the exact command);
``matgl_hybrid/pretrained_models/registry.json`` then lists it as ``package:<name>``. The data stay in
``../shared``: only the weights and the records are committed.

    python benchmarks/train_pretrained.py                      # train (those not yet trained) and register all
    python benchmarks/train_pretrained.py --only hybrid-megnet-heat-capacity
    python benchmarks/train_pretrained.py --rescore            # after training elsewhere (e.g. a GPU machine)
    python benchmarks/train_pretrained.py --compare hybrid-megnet-heat-capacity,OTHER   # two models, one split

``--rescore`` scores the held-out split again on this machine and rewrites the records and cards: float32
predictions differ by ~1e-6 relative between torch versions, and the tests compare the card with the CI machine.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
from matgl.ext.pymatgen import get_element_list
from tasks import FINETUNE, PRETRAINED_READOUTS

from matgl_hybrid.checkpoint import load_checkpoint, save_checkpoint, sha256_file
from matgl_hybrid.figures import png
from matgl_hybrid.files import atomic_write_text
from matgl_hybrid.model_card import (
    CARD_FIGURE,
    heldout_split,
    holdout_metrics,
    render_card,
    training_figure,
    training_split,
)
from matgl_hybrid.pretrained import REGISTRY_FILE

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path("../shared/data")  # relative, as written in the model cards' commands

#: What every shipped model is: the recommended recipe (the defaults of ``matgl-hybrid train``), trained on all
#: but a seeded 10 % held-out split, with every element in its embedding so that it predicts any structure.
RECIPE = "Hybrid MEGNet, the recommended recipe (extensive readout + gong28+composition+chgnet_noenergy, concat)"
HELD_OUT = ["--test-fraction", "0.1", "--elements", "all"]
#: What the shipped models were, said to today's ``train`` (which chooses among candidates and clips descriptors by
#: default since 2026-12-04): one spec, unclipped. Records of the commands without them are the same models.
AS_SHIPPED = ["--no-select", "--no-clip-descriptors"]
#: The benchmarks' budget for the ≈ 4000-structure sets (benchmarks/accuracy.py BUDGETS); the defaults otherwise.
LARGE_SET_BUDGET = ["--batch-size", "128", "--max-epochs", "100", "--patience", "20"]
MATBENCH = SHARED / "matbench"
#: A hybrid on MatGL's pretrained TensorNet-MatPES-PBE, fine-tuned with the study's settings (tasks.FINETUNE, as
#: ``train``'s flags so that the card's command says them).
FINETUNE_ARGUMENTS = [f"--{key.replace('_', '-')}={value}" for key, value in FINETUNE.items()]


def _recipe(what: str, data: Path, target: str, units: str, *extra: str) -> tuple[str, list[str]]:
    """The description and ``matgl-hybrid train`` arguments (without --out) of a shipped recipe model."""
    arguments = ["--data", str(data), "--target", target, "--units", units, *HELD_OUT, *AS_SHIPPED, *extra]
    return f"{RECIPE} for {what}", arguments


def _finetuned(what: str, data: Path, target: str, units: str) -> tuple[str, list[str]]:
    """The description and ``matgl-hybrid train`` arguments (without --out) of a shipped model on the fine-tuned
    backbone, with the study's readout for the data set (tasks.PRETRAINED_READOUTS)."""
    readout = PRETRAINED_READOUTS[data.name.removesuffix(".json.gz")]
    description = (f"Hybrid on MatGL's TensorNet-MatPES-PBE, fine-tuned ({readout} readout + "
                   f"gong28+composition+chgnet_noenergy, concat) for {what}")  # fmt: skip
    arguments = ["--data", str(data), "--target", target, "--units", units, *HELD_OUT, *AS_SHIPPED,
                 "--backbone", "tensornet-matpes-pbe", "--readout", readout, *FINETUNE_ARGUMENTS]  # fmt: skip
    return description, arguments


#: name -> (description, ``matgl-hybrid train`` arguments without --out)
SHIPPED: dict[str, tuple[str, list[str]]] = {
    "hybrid-megnet-heat-capacity": _recipe(
        "the phonon heat capacity per cell at 300 K of binaries (Alexandria PBE)",
        SHARED / "alexandria_heat_capacity.json.gz", "heat_capacity", "J/K/mol of cells",
    ),
    "hybrid-megnet-log10-bulk-modulus": _recipe(
        "log10 of the VRH bulk modulus (GPa) of binaries (Materials Project PBE)",
        SHARED / "mp_binary_elasticity.json.gz", "bulk_modulus_vrh", "log10(GPa)", "--log10-target",
        *LARGE_SET_BUDGET,
    ),
    "hybrid-megnet-log10-shear-modulus": _recipe(
        "log10 of the VRH shear modulus (GPa) of binaries (Materials Project PBE)",
        SHARED / "mp_binary_elasticity.json.gz", "shear_modulus_vrh", "log10(GPa)", "--log10-target",
        *LARGE_SET_BUDGET,
    ),
    "hybrid-megnet-formation-energy": _recipe(
        "the formation energy per atom (FLLA 2015, Materials Project PBE)",
        SHARED / "flla_2015_formation_energy.json.gz", "formation_energy_per_atom", "eV/atom", *LARGE_SET_BUDGET,
        "--skip-invalid",  # 5 alkali-metal cells have no neighbour pair within the cutoff
    ),
    "hybrid-megnet-exfoliation-energy": _recipe(
        "the exfoliation energy of layered materials (Matbench jdft2d, JARVIS optB88vdW)",
        MATBENCH / "matbench_jdft2d.json.gz", "exfoliation_en", "meV/atom",
    ),
    "hybrid-megnet-last-phdos-peak": _recipe(
        "the frequency of the last phonon DOS peak (Matbench phonons, Materials Project DFPT)",
        MATBENCH / "matbench_phonons.json.gz", "last phdos peak", "cm⁻¹",
    ),
    # issue "Pretrained foundation backbones": the default selection keeps the fine-tuned backbone on 5 of 5
    # Matbench phonons folds (benchmarks/results/default_selection.md), so phonons also ships it.
    "hybrid-tensornet-matpes-last-phdos-peak": _finetuned(
        "the frequency of the last phonon DOS peak (Matbench phonons, Materials Project DFPT)",
        MATBENCH / "matbench_phonons.json.gz", "last phdos peak", "cm⁻¹",
    ),
    # ... and on 5 of 5 whole heat-capacity folds (accuracy.py's fine-tuned folds), so heat capacity ships it too.
    "hybrid-tensornet-matpes-heat-capacity": _finetuned(
        "the phonon heat capacity per cell at 300 K of binaries (Alexandria PBE)",
        SHARED / "alexandria_heat_capacity.json.gz", "heat_capacity", "J/K/mol of cells",
    ),
}  # fmt: skip


def checkpoint_dir(name: str) -> Path:
    return REGISTRY_FILE.parent / name


def train_arguments(name: str) -> list[str]:
    """``matgl-hybrid train``'s arguments for model ``name``, run from the repository root (the card's paths)."""
    return ["train", *SHIPPED[name][1], "--out", str(checkpoint_dir(name).relative_to(ROOT))]


def train(name: str) -> None:
    """Run the model's training command from the repository root (so that its data path is the card's), replacing
    the model shipped in its folder (``--overwrite``, recorded in the card's command)."""
    replacing = ["--overwrite"] if (checkpoint_dir(name) / "SHA256SUMS").is_file() else []
    subprocess.run([sys.executable, "-m", "matgl_hybrid.cli", *train_arguments(name), *replacing], cwd=ROOT, check=True)


def trained_record(name: str) -> dict:
    """The training record of checkpoint ``name``, refused unless it was trained with the command shipped here."""
    path = checkpoint_dir(name) / "training.json"
    if not path.is_file():
        raise SystemExit(f"{name} is not trained yet: python benchmarks/train_pretrained.py --only {name}")
    record = json.loads(path.read_text())
    expected = shlex.join(["matgl-hybrid", *train_arguments(name)])
    before = shlex.join(["matgl-hybrid", *(a for a in train_arguments(name) if a not in AS_SHIPPED)])  # 2026-12-01
    accepted = {command + overwrite for command in (expected, before) for overwrite in ("", " --overwrite")}
    if record.get("command") not in accepted:  # trained anew, or over the shipped one
        raise SystemExit(
            f"{name} was trained with `{record.get('command')}`, not with this script's `{expected}`: retrain it "
            f"(python benchmarks/train_pretrained.py --only {name})"
        )
    return record


def is_trained(name: str) -> bool:
    """Whether checkpoint ``name`` exists, trained with the command shipped here (so a rerun resumes the list)."""
    try:
        trained_record(name)
    except SystemExit:
        return False
    return True


def rescore(name: str) -> None:
    """Score the held-out split of checkpoint ``name`` on this machine; rewrite its record, card and manifest (and
    record the elements it trained on, if it was saved before models recorded them)."""
    path = checkpoint_dir(name)
    record = trained_record(name)
    model = load_checkpoint(path)
    if model.trained_elements is None:  # saved before models recorded them: the training part's, from the data
        model.record_trained_elements(get_element_list(training_split(record, ROOT / SHARED).structures))
    split = heldout_split(record, ROOT / SHARED)
    test = holdout_metrics(model, split)
    record["test"] = {"fraction": record["test"]["fraction"], "seed": record["test"]["seed"], **test}
    figures = {}  # a model saved with the card's figure keeps it (a save drops the files it does not write)
    if (path / CARD_FIGURE).is_file():
        figures[CARD_FIGURE] = png(training_figure(record, split.targets))
    card = render_card(record, f"matgl-hybrid checkpoint: {name}", figure=CARD_FIGURE if figures else None)
    save_checkpoint(model, path, {"training": record}, texts={"model_card.md": card}, figures=figures)


def register(names: list[str]) -> None:
    """Write the registry entries of ``names`` from their checkpoints' training records."""
    registry = json.loads(REGISTRY_FILE.read_text()) if REGISTRY_FILE.exists() else {"models": {}}
    for name in names:
        path = checkpoint_dir(name)
        record = trained_record(name)
        test = record["test"]
        registry["models"][name] = {
            "description": SHIPPED[name][0],
            "source": f"package:{name}",
            "target": record["target_name"],
            "units": record["units"],
            "data": Path(record["data"]).name,
            "metrics": {k: test[k] for k in ("mae", "rmse", "r2", "n")},
            "size_bytes": sum(p.stat().st_size for p in path.iterdir()),
            "manifest_sha256": sha256_file(path / "SHA256SUMS"),
        }
        print(f"{name}: held-out MAE {test['mae']:.4g} {record['units']} (n = {test['n']})")
    registry["models"] = dict(sorted(registry["models"].items()))
    atomic_write_text(REGISTRY_FILE, json.dumps(registry, indent=1) + "\n")


def compare(first: str, second: str) -> list[str]:
    """Two shipped models of one target on their common held-out split: MAE, median and RMSE of the absolute errors,
    on how many structures each is the closer, and the structure of ``second``'s largest error (and both without it)."""
    records = [trained_record(name)["test"] for name in (first, second)]
    if records[0]["ids"] != records[1]["ids"]:
        raise SystemExit(f"{first} and {second} were not scored on the same held-out structures")
    truth = np.asarray(records[0]["y_true"])
    errors = [np.abs(np.asarray(r["predictions"]) - truth) for r in records]
    worst = int(np.argmax(errors[1]))
    rest = np.arange(len(truth)) != worst
    lines = [f"held-out split: {len(truth)} structures; {first} | {second}"]
    for label, keep in (("all", slice(None)), (f"without {records[0]['ids'][worst]}", rest)):
        stats = [(e[keep].mean(), np.median(e[keep]), np.sqrt((e[keep] ** 2).mean())) for e in errors]
        lines.append(f"{label}: MAE {stats[0][0]:.4g} | {stats[1][0]:.4g}; median {stats[0][1]:.4g} | "
                     f"{stats[1][1]:.4g}; RMSE {stats[0][2]:.4g} | {stats[1][2]:.4g}")  # fmt: skip
    predicted = [r["predictions"][worst] for r in records]
    structure = heldout_split(trained_record(first), ROOT / SHARED).structures[worst]
    lines.append(f"{second} closer on {int((errors[1] < errors[0]).sum())} of {len(truth)}; its largest error: "
                 f"{records[0]['ids'][worst]} ({structure.composition.reduced_formula}, {len(structure)} sites), true "
                 f"{truth[worst]:.4g}, predicted {predicted[1]:.4g} ({first}: {predicted[0]:.4g})")  # fmt: skip
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(SHIPPED), help="comma-separated names")
    parser.add_argument("--rescore", action="store_true", help="only rescore on this machine and register")
    parser.add_argument("--retrain", action="store_true", help="train again models already trained with their command")
    parser.add_argument("--compare", metavar="A,B", help="only compare two trained models on their held-out split")
    args = parser.parse_args()
    if args.compare:
        pair = [name.strip() for name in args.compare.split(",")]
        if len(pair) != 2 or not set(pair) <= set(SHIPPED):
            parser.error(f"--compare takes two of {sorted(SHIPPED)}, comma-separated; got {args.compare!r}")
        print("\n".join(compare(*pair)))
        return
    names = args.only.split(",")
    unknown = sorted(set(names) - set(SHIPPED))
    if unknown:
        parser.error(f"unknown models {unknown}; known: {sorted(SHIPPED)}")
    failed = []
    for name in names:
        if args.rescore:
            rescore(name)
        elif args.retrain or not is_trained(name):
            try:
                train(name)
            except subprocess.CalledProcessError as exc:  # the others still train, and those trained register
                print(f"{name}: training failed (exit status {exc.returncode}); its output is above", file=sys.stderr)
                failed.append(name)
        else:
            print(f"{name}: trained with its command already (--retrain to train it again)")
    register([name for name in names if name not in failed])
    if failed:
        raise SystemExit(f"not trained: {', '.join(failed)}")


if __name__ == "__main__":
    main()
