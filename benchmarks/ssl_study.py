"""Self-supervised representations and NEGNN (Kong et al. 2022) on MatGL's MEGNet, Matbench protocol.

For each evaluated dataset D (de Jong 2015 log10 K and G, Alexandria heat capacity) a MEGNet encoder is pretrained
on the masked-atom task over the union of all ``../shared/data`` files **minus every structure of D** (by id and by
material: formula, size, space group), so no test fold, and no structure of D at all, is ever seen in pretraining.

Stages (each resumable; finished folds are kept):

    python benchmarks/ssl_study.py --stage pretrain   # matgl-hybrid pretrain … --exclude D, one encoder per D
    python benchmarks/ssl_study.py --stage krr        # (a) KRR on gong28 vs SSL material representations
    python benchmarks/accuracy.py --dataset D --models megnet_readout,hybrid_megnet,negnn_megnet [--train-fraction 0.25]
    python benchmarks/ssl_study.py --stage report     # ssl.{md,json,png}

(a) Kernel ridge regression (RBF; alpha and gamma grid-searched by 3-fold CV inside each training fold; median
imputation and standardization fitted on the training fold) on ``gong28`` and on the sums over atoms of NE0 … NE3
and of their concatenation. (b) NEGNN (the extensive-readout MEGNet whose node input is its element embedding
concatenated with the frozen NE0 … NE3 of the encoder) against the same MEGNet without them and against the
hybrid, on full training folds and on 25 % of each training fold, with the budget of ``accuracy.py``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.compose import TransformedTargetRegressor
from sklearn.impute import SimpleImputer
from sklearn.kernel_ridge import KernelRidge
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tasks import DATASETS, RESULTS, SHARED, encoder_dir, load_task, store

from matgl_hybrid.checkpoint import load_checkpoint
from matgl_hybrid.descriptors import featurize
from matgl_hybrid.evaluation import FoldStore, cross_validate, summarize
from matgl_hybrid.figures import Entry, bars, panels, save
from matgl_hybrid.files import atomic_write_text
from matgl_hybrid.inference import embedding_width
from matgl_hybrid.markdown import markdown_table
from matgl_hybrid.paths import descriptor_cache_dir
from matgl_hybrid.ssl import PRETEXT_VERSION, node_embeddings

EVALUATED = ["de_jong_2015_elasticity", "alexandria_heat_capacity"]
LAYERS = [0, 1, 2, 3]  # NE0 (element embedding) … NE3 (after MEGNet's third block)
REPRESENTATIONS = ["gong28", *(f"SSL NE{k} (sum)" for k in LAYERS), "SSL NE0-3 (sum)"]
PRETRAIN = {"max_epochs": 10, "batch_size": 64}
GNN_MODELS = {"megnet_readout": "MEGNet (extensive readout)", "hybrid_megnet": "hybrid", "negnn_megnet": "NEGNN"}
#: The masked task's labels, by pretext version (``matgl_hybrid.ssl.PRETEXT_VERSION``).
MASKED_TASK = {
    1: "their group and period, and 40 length bins of the bonds touching them",
    2: "their group and period; 40 length bins of the bonds of as many hidden atoms, out of the encoder's graph",
}
#: What each encoder was pretrained on (committed; the encoders themselves are not): dataset -> its
#: ``pretraining.json`` counts, so the report is redrawn from committed results in a clean clone.
ENCODERS = RESULTS / "ssl_encoders.json"


def pretrain_encoder(dataset: str) -> None:
    """Pretrain the encoder that never sees ``dataset`` (skipped when it exists; refused when the package's pretext
    task has changed since it was made, as must be the folds made with it)."""
    out = encoder_dir(dataset)
    committed = json.loads(ENCODERS.read_text()).get(dataset) if ENCODERS.exists() else None
    if (out / "model.json").exists() or committed is not None:  # a clean clone has the record, not the encoder
        record = json.loads((out / "pretraining.json").read_text()) if (out / "model.json").exists() else committed
        version = pretext_version(record)
        if version != PRETEXT_VERSION:
            raise SystemExit(
                f"{out} was pretrained with pretext version {version}, this package's is {PRETEXT_VERSION}: move it, "
                f"results/ssl_folds and results/folds/*/*/negnn_megnet* away to rerun the study with the new one"
            )
        if (out / "model.json").exists():
            return
    corpus = [str(SHARED / name) for name, _ in DATASETS.values()]
    command = [sys.executable, "-m", "matgl_hybrid.cli", "pretrain", "--data", *corpus, "--exclude"]
    command += [str(SHARED / DATASETS[dataset][0]), "--task", "masked", "--out", str(out)]
    command += ["--max-epochs", str(PRETRAIN["max_epochs"]), "--batch-size", str(PRETRAIN["batch_size"])]
    subprocess.run(command, check=True)


def representations(dataset: str, structures, ids) -> dict[str, np.ndarray]:
    """``gong28`` and the summed NE vectors (per layer and concatenated) of every structure: name -> (n, D)."""
    encoder = load_checkpoint(encoder_dir(dataset))
    per_atom = node_embeddings(encoder, structures, LAYERS)
    summed = np.stack([a.sum(axis=0) for a in per_atom])
    edges = np.cumsum([0, *(embedding_width(encoder, [k]) for k in LAYERS)])
    reps = {f"SSL NE{k} (sum)": summed[:, edges[i] : edges[i + 1]] for i, k in enumerate(LAYERS)}
    reps["SSL NE0-3 (sum)"] = summed
    gong28 = featurize(structures, "gong28", n_jobs=-1, cache_dir=descriptor_cache_dir(), ids=ids, progress=False)
    return {"gong28": gong28.to_numpy(dtype=float), **reps}


def krr() -> GridSearchCV:
    """RBF kernel ridge regression with its hyper-parameters chosen by 3-fold CV on the training data."""
    pipeline = make_pipeline(SimpleImputer(strategy="median"), StandardScaler(), KernelRidge(kernel="rbf"))
    model = TransformedTargetRegressor(regressor=pipeline, transformer=StandardScaler())
    grid = {
        "regressor__kernelridge__alpha": np.logspace(-3, 0, 4),
        "regressor__kernelridge__gamma": np.logspace(-4, -1, 4),
    }
    return GridSearchCV(model, grid, cv=3, scoring="neg_mean_absolute_error", n_jobs=-1)


def krr_store(dataset: str, task: str, rep: str) -> FoldStore:
    return FoldStore(RESULTS / "ssl_folds" / dataset / task / rep.replace(" ", "_").replace("(", "").replace(")", ""))


def run_krr(dataset: str) -> None:
    """(a) KRR on each representation, 5 Matbench folds, every target of ``dataset``."""
    for task in DATASETS[dataset][1]:
        data = load_task(dataset, task)
        reps = representations(dataset, data.structures, data.ids)
        position = {i: n for n, i in enumerate(data.ids)}
        for rep, x in reps.items():

            def train_and_predict(train, test, fold, x=x, position=position):
                rows = [position[i] for i in train.ids], [position[i] for i in test.ids]
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    search = krr().fit(x[rows[0]], train.targets)
                return search.predict(x[rows[1]]), {"best_params": search.best_params_, "width": x.shape[1]}

            records = cross_validate(data, train_and_predict, krr_store(dataset, task.name, rep), desc=rep)
            print(f"{dataset}/{task.name}/{rep}: MAE {summarize(records)['mae_mean']:.4g}", flush=True)


def report() -> dict[str, dict[str, dict]]:
    """ssl.{md,json,png} from the KRR folds and the GNN folds of accuracy.py; returns ``{"dataset/task": {row:
    summarize(...)}}``, the table written."""
    results: dict = {}
    for dataset in EVALUATED:
        for task in DATASETS[dataset][1]:
            rows = {}
            for rep in REPRESENTATIONS:
                records = krr_store(dataset, task.name, rep).records()
                if records:
                    rows[f"KRR {rep}"] = summarize(records)
            for fraction in ("", "@0.25"):
                for model, label in GNN_MODELS.items():
                    records = store(dataset, task.name, model + fraction).records()
                    if records:
                        rows[f"{label}{' (25 % training)' if fraction else ''}"] = summarize(records)
            results[f"{dataset}/{task.name}"] = rows
    atomic_write_text(RESULTS / "ssl.json", json.dumps(results, indent=1) + "\n")
    encoders = encoder_summaries()
    lines = [
        "# Self-supervised representations and NEGNN (Kong et al. 2022) on MEGNet",
        "",
        "Matbench protocol (5-fold KFold, seed 18012019). Encoders: MEGNet, masked-atom pretext task (15 % of atoms; "
        f"{MASKED_TASK[max(pretext_version(e) for e in encoders.values())]}), {PRETRAIN['max_epochs']} epochs, "
        f"batch {PRETRAIN['batch_size']}, "
        "on the union of all `../shared/data` files minus the evaluated dataset:",
        "",
        *[
            f"- for `{d}`: {e['n_structures']} structures; {e['n_excluded']} excluded (every structure of `{d}`, by id "
            "and by material: formula, number of sites, space group)"
            for d, e in encoders.items()
        ],
        "",
        *stale_pretext_note(encoders),
        "Command: `python benchmarks/ssl_study.py --stage all` (GNN rows: `python benchmarks/accuracy.py --dataset D "
        "--models megnet_readout,hybrid_megnet,negnn_megnet [--train-fraction 0.25]`). KRR: RBF, alpha and gamma by "
        "3-fold CV inside each training fold. MAE in the target's units, mean ± std over folds.",
        "",
    ]
    for key, rows in results.items():
        frame = pd.DataFrame(
            {
                "MAE": [f"{r['mae_mean']:.4g} ± {r['mae_std']:.2g}" for r in rows.values()],
                "folds": [r["folds_done"] for r in rows.values()],
            },
            index=pd.Index(list(rows), name="model"),
        )
        lines += [f"## {key}", "", markdown_table(frame)]
    lines += ["![ssl](ssl.png)", "", "## Targets (issue #7)", "", *target_checks(results), ""]
    atomic_write_text(RESULTS / "ssl.md", "\n".join(lines))
    plot(results, RESULTS / "ssl.png")
    print("\n".join(lines))
    return results


def pretext_version(record: dict) -> int:
    """The pretext version of a pretraining record (1 for records made before versions were recorded)."""
    return int(record.get("pretext_version", 1))


def encoder_summaries() -> dict[str, dict]:
    """``{dataset: {"n_structures", "n_excluded", "pretext_version"}}`` of each evaluated dataset's encoder: from its
    ``pretraining.json`` where the encoder is here (and then committed to :data:`ENCODERS`), else from :data:`ENCODERS`.
    """
    summaries = json.loads(ENCODERS.read_text()) if ENCODERS.exists() else {}
    for dataset in EVALUATED:
        path = encoder_dir(dataset) / "pretraining.json"
        if path.exists():
            record = json.loads(path.read_text())
            summaries[dataset] = {k: record[k] for k in ("n_structures", "n_excluded")}
            summaries[dataset]["pretext_version"] = pretext_version(record)
    missing = [d for d in EVALUATED if d not in summaries]
    if missing:
        raise FileNotFoundError(f"no pretraining record of the encoders for {missing}: run --stage pretrain first")
    atomic_write_text(ENCODERS, json.dumps(summaries, indent=1) + "\n")
    return summaries


def stale_pretext_note(encoders: dict[str, dict]) -> list[str]:
    """A paragraph when an encoder of these results was pretrained with an older pretext task than the package's."""
    old = sorted({pretext_version(e) for e in encoders.values()} - {PRETEXT_VERSION})
    if not old:
        return []
    return [
        f"These encoders were pretrained with pretext version {', '.join(map(str, old))}, before 2026-12-05: the "
        "encoder saw every bond whose length bin it was asked for, so the distance task taught it little beyond "
        f"copying its input. The package's pretext (version {PRETEXT_VERSION}) takes those bonds out of the graph "
        "the encoder sees; the KRR and NEGNN rows below are those of the old encoders until the study is rerun.",
        "",
    ]


def target_checks(results: dict) -> list[str]:
    """NEGNN ≤ the plain backbone on every task, and ≥ 5 % better on the reduced training sets: met / MISSED."""
    lines = []
    for key, rows in results.items():
        for suffix, needed in (("", 0.0), (" (25 % training)", 0.05)):
            plain = rows.get(GNN_MODELS["megnet_readout"] + suffix)
            negnn = rows.get(GNN_MODELS["negnn_megnet"] + suffix)
            what = f"{key}{suffix}: NEGNN {'≤ plain' if not needed else '≥ 5 % better than plain'}"
            if not (plain and negnn and plain["folds_done"] == negnn["folds_done"] == 5):
                lines.append(f"- {what}: not finished yet")
                continue
            gain = 1 - negnn["mae_mean"] / plain["mae_mean"]
            wins = sum(n < p for n, p in zip(negnn["fold_mae"], plain["fold_mae"], strict=True))
            lines.append(
                f"- {what} ({negnn['mae_mean']:.4g} vs {plain['mae_mean']:.4g}, {100 * gain:+.1f} %; NEGNN lower on "
                f"{wins}/{len(negnn['fold_mae'])} folds): " + ("met" if gain >= needed else "**MISSED**")
            )
    return lines


def plot(results: dict, path: Path) -> None:
    """One panel per target: MAE (mean, fold dots) of every row; KRR rows grey."""
    units = {f"{d}/{task.name}": task.units for d, (_, tasks) in DATASETS.items() for task in tasks}
    fig, axes = panels(len(results), ncols=min(2, len(results)), size=(6.0, 4.0))
    for ax, (key, rows) in zip(axes, results.items(), strict=True):
        entries = [
            Entry(n, r["mae_mean"], r["fold_mae"], "baseline" if n.startswith("KRR") else "ours")
            for n, r in rows.items()
        ]
        bars(ax, entries, units=units[key], title=key)
    save(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", choices=["pretrain", "krr", "report", "all"], default="all")
    parser.add_argument("--datasets", default=",".join(EVALUATED))
    args = parser.parse_args()
    for dataset in args.datasets.split(","):
        if args.stage in ("pretrain", "all"):
            pretrain_encoder(dataset)
        if args.stage in ("krr", "all"):
            run_krr(dataset)
    if args.stage in ("report", "all"):
        report()


if __name__ == "__main__":
    main()
