"""Simulation knowledge as descriptors (issue #21): what ``sim:chgnet`` costs, what it knows, what it adds.

Stages (each resumable through the descriptor cache; results accumulate in ``benchmarks/results/sim_descriptors.json``):

- ``cost``: ms/structure of the cheap tier (``sim:chgnet``) and of the full one (``sim:chgnet:full``, which
  includes the cheap groups) on a seeded sample of de Jong 2015, on 1 and 2 cores, cold and cached (the
  same runs as ``descriptor_speed.py``; the full tier cold only). Run it on an otherwise idle machine.
- ``datasets``: the cheap tier on every structure of de Jong 2015, Alexandria heat capacity, mp_binary and
  Matbench phonons (by default; ``--datasets matbench_jdft2d`` for the Matbench runs) through the default cache, in
  chunks (a stopped run resumes): the wall time of the structures computed cold (``n_computed``, summed over
  runs), then of the whole dataset from the cache; failures per group.
- ``full``: the full tier on a seeded sample of each dataset (``--n-full`` structures).
- Every run first imports the committed archives of ``benchmarks/results/sim_values/`` (values computed before,
  here or on another machine) into the default cache, and the datasets and full stages archive what they computed.
- ``simulators``: the cheap tier of ``sim:tensornet_matpes`` (MatGL's TensorNet-MatPES-PBE, shipped in the
  package) on a seeded sample (``--n-simulators``) of each dataset with a cheap-tier reference (EOS K against de Jong
  and mp_binary, the highest Γ frequency against Matbench phonons' last DOS peak), compared with ``sim:chgnet`` (from
  the datasets stage) on the same structures: which simulator is closer to DFT before any learning.
- ``report`` (always last): the simulated quantities against the DFT labels (before any learning: MAE and
  correlation), and the recipe with and without ``sim:chgnet`` against the random forest on the same inputs,
  read from the fold results of ``accuracy.py`` (models ``hybrid_megnet_sim``, ``descriptors_rf_sim``) and of
  ``matbench_study.py`` (``recipe_sim``, ``descriptors_rf_sim``). Writes ``sim_descriptors.{md,json,png}``.

    python benchmarks/sim_descriptors.py --stages cost,datasets,full     # then the fold runs, then:
    python benchmarks/sim_descriptors.py --stages simulators             # CHGNet vs TensorNet-MatPES
    python benchmarks/sim_descriptors.py                                  # report only
    python benchmarks/sim_descriptors.py --report-only                    # redraw from the committed json

Leakage: CHGNet 0.3.0 was trained on MPtrj energies, forces and stresses (Materials Project relaxations), never on
these labels; it has seen the structures of the MP-derived sets. TensorNet-MatPES was trained on MatPES (MD snapshots
started from Materials Project structures): the same caveat.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np
from matplotlib.axes import Axes
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
from scipy.stats import pearsonr, spearmanr
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import KFold, cross_val_predict
from tasks import SIM_ARCHIVES as ARCHIVES
from tasks import restore_sim_archives
from timing import featurize_runs, speed_runs

from matgl_hybrid.data import StructureData, load
from matgl_hybrid.descriptors import (
    DescriptorCache,
    archive_values,
    featurize,
    get_descriptor_set,
    structure_key,
)
from matgl_hybrid.descriptors.simulation import SETTINGS, THZ_TO_INVERSE_CM
from matgl_hybrid.figures import COLOURS, axis_label, panels, save
from matgl_hybrid.files import atomic_write_text
from matgl_hybrid.paths import descriptor_cache_dir
from matgl_hybrid.training import device_name

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SHARED = ROOT.parent / "shared" / "data"
OUT = RESULTS / "sim_descriptors.json"
CHEAP, FULL = "sim:chgnet", "sim:chgnet:full"
LINEAR_FOLDS = 5  # folds of the one-feature linear calibration of each simulated quantity
R_GAS = 8.314462618  # J/K/mol: the Dulong–Petit limit of the heat capacity is 3R per mole of atoms

#: dataset -> (file under ../shared/data, {label name: field in the file})
DATASETS = {
    "de_jong_2015": ("de_jong_2015_elasticity.json.gz", {"K_VRH": "K_VRH", "G_VRH": "G_VRH"}),
    "mp_binary": ("mp_binary_elasticity.json.gz", {"K_VRH": "bulk_modulus_vrh", "G_VRH": "shear_modulus_vrh"}),
    "alexandria_heat_capacity": ("alexandria_heat_capacity.json.gz", {"heat_capacity": "heat_capacity"}),
    "matbench_phonons": ("matbench/matbench_phonons.json.gz", {"last_phdos_peak": "last phdos peak"}),
    # no simulated counterpart of the exfoliation energy: computed for the Matbench runs (matbench_study.py)
    "matbench_jdft2d": ("matbench/matbench_jdft2d.json.gz", {"exfoliation_en": "exfoliation_en"}),
}

#: (dataset, label, simulated column, tier, how the column becomes the label's quantity, units, log scale)
COMPARISONS = [
    ("de_jong_2015", "K_VRH", "sim_chgnet_eos_bulk_modulus", "cheap", "EOS bulk modulus", "GPa", True),
    ("mp_binary", "K_VRH", "sim_chgnet_eos_bulk_modulus", "cheap", "EOS bulk modulus", "GPa", True),
    ("de_jong_2015", "K_VRH", "sim_chgnet_k_vrh", "full", "elastic-tensor K_VRH", "GPa", True),
    ("mp_binary", "K_VRH", "sim_chgnet_k_vrh", "full", "elastic-tensor K_VRH", "GPa", True),
    ("de_jong_2015", "G_VRH", "sim_chgnet_g_vrh", "full", "elastic-tensor G_VRH", "GPa", True),
    ("mp_binary", "G_VRH", "sim_chgnet_g_vrh", "full", "elastic-tensor G_VRH", "GPa", True),
    ("matbench_phonons", "last_phdos_peak", "sim_chgnet_gamma_max_frequency", "cheap", "highest Γ frequency",
     "cm⁻¹", False),
    ("matbench_phonons", "last_phdos_peak", "sim_chgnet_last_dos_peak", "full", "last DOS peak", "cm⁻¹", False),
    ("alexandria_heat_capacity", "heat_capacity", "sim_chgnet_heat_capacity_300K", "full", "phonon C_V(300 K)",
     "J/K/mol of cells", False),
]  # fmt: skip

#: The simulators compared before any learning (cheap tier of each); the first is the reference of the datasets stage.
SIMULATORS = {"sim:chgnet": "CHGNet 0.3.0", "sim:tensornet_matpes": "TensorNet-MatPES-PBE"}
#: (dataset, label, simulated quantity (column without its ``sim_<potential>_`` prefix), name, units, log scale)
SIMULATOR_COMPARISONS = [
    ("de_jong_2015", "K_VRH", "eos_bulk_modulus", "EOS bulk modulus", "GPa", True),
    ("mp_binary", "K_VRH", "eos_bulk_modulus", "EOS bulk modulus", "GPa", True),
    ("matbench_phonons", "last_phdos_peak", "gamma_max_frequency", "highest Γ frequency", "cm⁻¹", False),
]

#: The accuracy.py results the report reads: (task label, results file, task key)
HYBRID_ROWS = [
    ("heat capacity (J/K/mol of cells)", "alexandria_heat_capacity.json", "heat_capacity"),
    ("de Jong log10 K (log10 GPa)", "de_jong_2015_elasticity.json", "log10_K_VRH"),
    ("de Jong log10 G (log10 GPa)", "de_jong_2015_elasticity.json", "log10_G_VRH"),
    ("mp_binary log10 K (log10 GPa)", "mp_binary_elasticity.json", "log10_bulk_modulus"),
    ("mp_binary log10 G (log10 GPa)", "mp_binary_elasticity.json", "log10_shear_modulus"),
]
ACCURACY_MODELS = ("hybrid_megnet_chgnet_noenergy", "hybrid_megnet_sim", "descriptors_rf_chgnet_noenergy",
                   "descriptors_rf_sim")  # fmt: skip
MATBENCH_MODELS = ("recipe", "recipe_sim", "descriptors_rf_recipe", "descriptors_rf_sim")
MATBENCH_LONG_MODELS = ("recipe_long", "recipe_sim_long", None, None)  # the forests have no epochs


def load_dataset(name: str) -> StructureData:
    """Every valid structure of ``name``, its first label as the target (the others are read by :func:`labels`)."""
    file, fields = DATASETS[name]
    return load(SHARED / file, next(iter(fields.values())), skip_invalid=True)


def labels(name: str, data: StructureData) -> dict[str, np.ndarray]:
    """Each label of ``name`` for the entries of ``data`` (NaN where an entry lacks it)."""
    file, fields = DATASETS[name]
    out = {}
    for label, field in fields.items():
        other = load(SHARED / file, field, skip_invalid=True)
        by_id = dict(zip(other.ids, other.targets, strict=True))
        out[label] = np.array([by_id.get(i, np.nan) for i in data.ids], dtype=float)
    return out


def sample(data: StructureData, n: int, seed: int = 21) -> StructureData:
    """A seeded sample of ``n`` entries (all when there are fewer), in file order."""
    if n >= len(data):
        return data
    return data.subset(sorted(np.random.default_rng(seed).choice(len(data), n, replace=False).tolist()))


def update(key: str, value) -> dict:
    """Merge ``{key: value}`` into the results file (atomically) and return the whole record."""
    record = json.loads(OUT.read_text()) if OUT.exists() else {}
    record[key] = value
    atomic_write_text(OUT, json.dumps(record, indent=1) + "\n")
    return record


def stage_cost(n_cheap: int, n_full: int) -> None:
    """ms/structure of each tier on a seeded de Jong sample, 1 and 2 cores, cold and cached."""
    data = sample(load_dataset("de_jong_2015"), n_cheap)
    result = {"data": "de_jong_2015", "device": device_name()}
    seconds, _ = featurize_runs(data.structures, CHEAP, speed_runs("cheap tier", loads_model=True))
    result["cheap"] = {
        "n": len(data),
        "mean_sites": float(np.mean([len(s) for s in data.structures])),
        "ms_per_structure": {k: v / len(data) * 1000 for k, v in seconds.items()},
    }
    full = sample(data, n_full)
    runs = [("full tier (with the cheap one), 1 core, cold", 1, "one"), ("full tier, 2 cores, cold", 2, "two")]
    seconds, _ = featurize_runs(full.structures, FULL, runs)
    result["full"] = {
        "n": len(full),
        "mean_sites": float(np.mean([len(s) for s in full.structures])),
        "ms_per_structure": {k: v / len(full) * 1000 for k, v in seconds.items()},
    }
    update("cost", result)
    print(json.dumps(result, indent=1))


def archive(name: str, set_name: str, data: StructureData) -> None:
    """Write the cached ``set_name`` values of ``data`` to ``ARCHIVES/<name>.<set>.json.gz`` (``name``: the dataset,
    or a sample of it, e.g. ``de_jong_2015.sample150``)."""
    path = ARCHIVES / f"{name}.{set_name.replace(':', '_')}.json.gz"
    n = archive_values(data.structures, set_name, descriptor_cache_dir(), path)
    print(f"archived the {set_name} values of {n} structures in {path.relative_to(ROOT)}", flush=True)


def featurize_in_chunks(
    stage: str, name: str, set_name: str, data: StructureData, chunk: int, archive_name: str | None = None
) -> dict:
    """``set_name`` on ``data`` through the default cache, ``chunk`` structures at a time; after each chunk that
    computed anything, the record (``stage`` / ``name``) and the archive are updated, so a run stopped half-way
    loses at most one chunk, and its rerun adds the rest. The archive is ``archive_name`` (default ``name``).

    The record sums, over every run, the structures computed cold and their wall time (all cores), and counts
    the failures per group over the whole dataset.
    """
    record = json.loads(OUT.read_text()).get(stage, {}) if OUT.exists() else {}
    version = get_descriptor_set(set_name).version
    entry = record.get(name, {})
    if (entry.get("n"), entry.get("version")) != (len(data), version):  # another sample or definition: start over
        entry = {"n": len(data), "version": version, "n_computed": 0, "seconds": 0.0, "device": device_name()}
    entry["complete"] = False
    for first in range(0, len(data), chunk):
        part = data.subset(range(first, min(first + chunk, len(data))))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # failures are counted below
            start = time.perf_counter()
            frame = featurize(part.structures, set_name, -1, descriptor_cache_dir(), ids=part.ids, progress=False)
            seconds = time.perf_counter() - start
        if frame.attrs["n_computed"]:
            entry["n_computed"] += frame.attrs["n_computed"]
            entry["seconds"] += seconds
            entry["device"] = device_name()
            record[name] = entry
            update(stage, record)
            archive(archive_name or name, set_name, data)
        cold = f"{entry['n_computed']} computed cold in {entry['seconds']:.0f} s"
        print(f"{name} {set_name}: {min(first + chunk, len(data))}/{len(data)} ({cold})", flush=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        frame = featurize(data.structures, set_name, -1, descriptor_cache_dir(), ids=data.ids, progress=False)
        entry["cached_seconds"] = time.perf_counter() - start
    groups = get_descriptor_set(set_name).groups
    entry["failures"] = {g.name: sum(e["group"] == g.name for e in frame.attrs["errors"]) for g in groups}
    entry["complete"] = True
    record[name] = entry
    update(stage, record)
    archive(archive_name or name, set_name, data)  # also when everything came from a local cache (deterministic bytes)
    return entry


def stage_datasets(names: list[str]) -> None:
    """The cheap tier on every structure of each dataset: cold wall time (summed over runs) and cached."""
    for name in names:
        entry = featurize_in_chunks("datasets", name, CHEAP, load_dataset(name), chunk=100)
        print(f"{name}: {entry}", flush=True)


def stage_full(names: list[str], n: int) -> None:
    """The full tier on a seeded sample of each dataset."""
    for name in names:
        # chunks of at least the core count: every core busy, as in the cold timings
        chunk = max(4, os.cpu_count() or 1)
        entry = featurize_in_chunks("full_sample", name, FULL, sample(load_dataset(name), n), chunk=chunk)
        print(f"{name}: {entry}", flush=True)


def cached_values(data: StructureData, set_name: str) -> object:
    """The ``set_name`` values of ``data`` (a frame, one row per entry), read from the default cache.

    Raises:
        RuntimeError: a structure's values are not all cached (its stage has not run): nothing is computed here.
    """
    cache = DescriptorCache(descriptor_cache_dir())
    keys = [g.key for g in get_descriptor_set(set_name).groups]
    missing = sum(any(k not in cache.get(structure_key(s)) for k in keys) for s in data.structures)
    if missing:
        raise RuntimeError(f"{missing} structures lack cached {set_name} values; run their stage first")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return featurize(data.structures, set_name, 1, descriptor_cache_dir(), ids=data.ids, progress=False)


def label_quantity(frame, column: str, data: StructureData) -> np.ndarray:
    """The simulated ``column`` of ``frame`` in its label's units: Γ frequencies THz → cm⁻¹, heat capacity per mole
    of atoms → per mole of cells."""
    values = frame[column].to_numpy(dtype=float)
    if column.endswith("gamma_max_frequency"):
        return values * THZ_TO_INVERSE_CM
    if column.endswith("heat_capacity_300K"):
        return values * np.array([len(s) for s in data.structures])
    return values


def agreement(truth: np.ndarray, sim: np.ndarray, log: bool) -> dict:
    """How close ``sim`` is to ``truth`` (finite pairs only, at least two): MAE, median ratio, Pearson r, Spearman ρ,
    the MAE of the 5-fold linear calibration and the label's MAD (log10 of both for ``log``, positive pairs only)."""
    ok = np.isfinite(truth) & np.isfinite(sim)
    t, s = truth[ok], sim[ok]
    row = {"n": int(ok.sum()), "mae": float(np.mean(np.abs(s - t))), "median_ratio": float(np.median(s / t)),
           "pearson": float(pearsonr(s, t)[0]), "spearman": float(spearmanr(s, t)[0]),
           "truth": t.tolist(), "simulated": s.tolist()}  # fmt: skip
    positive = (t > 0) & (s > 0)
    if log and positive.sum() >= 2:
        row["n_log"] = int(positive.sum())
        row["mae_log10"] = float(np.mean(np.abs(np.log10(s[positive]) - np.log10(t[positive]))))
        row["pearson_log10"] = float(pearsonr(np.log10(s[positive]), np.log10(t[positive]))[0])
    x, y = (np.log10(s[positive]), np.log10(t[positive])) if log else (s, t)
    if len(y) >= 2 * LINEAR_FOLDS:  # the label's scale (log10 for the moduli)
        row["mad"] = float(np.mean(np.abs(y - y.mean())))
        row["linear_cv_mae"] = linear_cv_mae(x, y)
    return row


def direct_accuracy(record: dict) -> list[dict]:
    """Each comparison of :data:`COMPARISONS` whose stage has run: MAE and correlation against the label.

    Linear metrics use every structure with both values finite; the log10 ones (moduli) those with both positive.
    """
    rows = []
    for name, label, column, tier, quantity, units, log in COMPARISONS:
        stage = record.get("datasets" if tier == "cheap" else "full_sample", {})
        if not stage.get(name, {}).get("complete"):  # its stage has not run to the end
            continue
        data = load_dataset(name) if tier == "cheap" else sample(load_dataset(name), stage[name]["n"])
        try:
            frame = cached_values(data, CHEAP if tier == "cheap" else FULL)
        except RuntimeError as error:  # a group's definition changed since: keep the row as measured then
            kept = [
                r for r in record.get("direct", []) if (r["dataset"], r["column"], r["tier"]) == (name, column, tier)
            ]
            print(f"{name} {column}: {error}; the committed row is kept", flush=True)
            rows += kept
            continue
        truth = labels(name, data)[label]
        sim = label_quantity(frame, column, data)
        ok = np.isfinite(truth) & np.isfinite(sim)
        row = {"dataset": name, "label": label, "column": column, "tier": tier, "quantity": quantity,
               "units": units, "n": int(ok.sum()), "n_total": len(truth)}  # fmt: skip
        if row["n"] < 2:
            rows.append(row)  # too few values to compare
            continue
        row.update(agreement(truth, sim, log))
        if label == "heat_capacity":  # the knowledge-free reference: 3R per atom (Dulong–Petit)
            n_atoms = np.array([len(x) for x in data.structures])[ok]
            row["dulong_petit_mae"] = float(np.mean(np.abs(3 * R_GAS * n_atoms - truth[ok])))
        rows.append(row)
    return rows


def stage_simulators(names: list[str], n: int) -> None:
    """The cheap tier of every simulator on a seeded sample of each dataset of :data:`SIMULATOR_COMPARISONS`, under
    the current definitions (archived as ``<dataset>.sample<n>.<set>.json.gz``)."""
    for name in names:
        data = sample(load_dataset(name), n)
        for set_name in SIMULATORS:
            stem = f"{name}.sample{len(data)}"
            entry = featurize_in_chunks(f"simulators/{set_name}", name, set_name, data, chunk=25, archive_name=stem)
            print(f"{name} {set_name}: {entry}", flush=True)


def simulator_accuracy(record: dict) -> list[dict]:
    """Each comparison of :data:`SIMULATOR_COMPARISONS` whose sample is complete for every simulator: each
    simulator's agreement with the label on the structures where every simulator gave a value (the same
    structures for all), its failures on the sample and its cold cost per structure (all cores; CHGNet's from the
    datasets stage, where all three of its groups ran cold on the whole dataset)."""
    rows = []
    for name, label, quantity, title, units, log in SIMULATOR_COMPARISONS:
        stages = [record.get(f"simulators/{s}", {}).get(name, {}) for s in SIMULATORS]
        if not all(e.get("complete") for e in stages) or not record.get("datasets", {}).get(name, {}).get("complete"):
            continue
        data = sample(load_dataset(name), stages[0]["n"])
        truth = labels(name, data)[label]
        values = {}
        for set_name in SIMULATORS:
            column = f"{set_name.replace(':', '_')}_{quantity}"
            values[set_name] = label_quantity(cached_values(data, set_name), column, data)
        common = np.isfinite(truth) & np.all([np.isfinite(v) for v in values.values()], axis=0)
        row = {"dataset": name, "label": label, "quantity": title, "units": units, "n_sample": len(data),
               "n_common": int(common.sum()), "simulators": {}}  # fmt: skip
        for set_name, sim in values.items():
            stage = record["datasets"][name] if set_name == CHEAP else record[f"simulators/{set_name}"][name]
            row["simulators"][set_name] = {
                "failed": int((~np.isfinite(sim)).sum()),
                "s_per_structure": stage["seconds"] / max(stage["n_computed"], 1),
                "device": stage["device"],
                **agreement(truth[common], sim[common], log),
            }
        rows.append(row)
    return rows


def linear_cv_mae(x: np.ndarray, y: np.ndarray) -> float:
    """Test MAE of ``y ≈ a·x + b`` over :data:`LINEAR_FOLDS` folds (KFold, seed 18012019): the simulated quantity
    after the smallest possible learning, a calibration of its scale and offset."""
    folds = KFold(LINEAR_FOLDS, shuffle=True, random_state=18012019)
    predicted = cross_val_predict(LinearRegression(), x.reshape(-1, 1), y, cv=folds)
    return float(np.mean(np.abs(predicted - y)))


def hybrid_rows() -> list[dict]:
    """The recipe with and without ``sim:chgnet`` and the forests on the same inputs: mean test-fold MAE."""
    rows = []
    for task, file, key in HYBRID_ROWS:
        path = RESULTS / file
        models = json.loads(path.read_text()).get(key, {}) if path.exists() else {}
        rows.append({"task": task, **{m: _mean(models.get(m)) for m in ACCURACY_MODELS}})
    for name, title in (("phonons", "Matbench phonons (cm⁻¹)"), ("jdft2d", "Matbench jdft2d (meV/atom)")):
        path = RESULTS / f"matbench_matbench_{name}.json"
        models = json.loads(path.read_text()) if path.exists() else {}
        for task, names in ((f"{title}, official folds", MATBENCH_MODELS),
                            (f"{title}, 300 epochs, no early stopping", MATBENCH_LONG_MODELS)):  # fmt: skip
            means = {a: _mean(models.get(m)) if m else "—" for a, m in zip(ACCURACY_MODELS, names, strict=True)}
            rows.append({"task": task, **means})
    return rows


def _mean(result: dict | None) -> dict | None:
    """Mean ± std and fold count of a model's result (None when it has not run)."""
    if not result:
        return None
    done = [m for m in result["fold_mae"] if m is not None]
    return {"mean": result["mae_mean"], "std": result["mae_std"], "folds": len(done)}


def report(from_record: bool = False) -> None:
    """``sim_descriptors.{md,json,png}`` from what the stages have measured; ``from_record``: the direct comparisons
    as committed in ``sim_descriptors.json`` (no cache read: a clean clone redraws the report and its figure)."""
    record = json.loads(OUT.read_text()) if OUT.exists() else {}
    direct = record.get("direct", []) if from_record else direct_accuracy(record)
    versus = record.get("simulators", []) if from_record else simulator_accuracy(record)
    hybrid = hybrid_rows()
    record = update("direct", direct)
    record = update("simulators", versus)
    record = update("hybrid", hybrid)
    lines = [
        "# Simulation knowledge as descriptors: `sim:chgnet` (issue #21)",
        "",
        "CHGNet 0.3.0 (weights from the chgnet wheel) through matcalc: relaxation, EOS, Γ phonons (cheap tier); "
        "elastic tensor, phonon DOS and thermal properties (full tier). Settings: "
        f"`{json.dumps(SETTINGS)}`. Command: `python benchmarks/sim_descriptors.py` (see its docstring for the "
        "stages).",
        "",
        "Leakage: CHGNet was trained on MPtrj energies, forces and stresses of Materials Project relaxations, "
        "never on these labels; it has seen the structures of the MP-derived sets (mp_binary, de Jong, phonons).",
        "",
        *_cost_lines(record),
        "## What the potential knows before any learning",
        "",
        "Simulated quantity against the DFT label, every structure with both values (full tier: a seeded sample). "
        "*Linear fit*: the test MAE, over 5 folds, of the label fitted as a·(simulated) + b (log10 of both for the "
        "moduli) — the knowledge in one number after the least learning possible; MAD: the label's mean absolute "
        "deviation on the same scale (the MAE of predicting the mean). Median ratio below 1: the potential is softer "
        "than DFT (the known systematic softening of universal potentials); for the EOS modulus partly also the "
        "measure: its cell shape relaxes at each volume, a Reuss-like modulus at most K_VRH (equal for cubic "
        "crystals). The highest Γ frequency has no LO–TO splitting.",
        "",
        "| dataset | label | simulated | tier | n | MAE | median ratio sim/DFT | MAE log10 | linear fit (5-fold) "
        "| MAD | Pearson r | Spearman ρ |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in direct:
        if "mae" not in r:
            lines.append(f"| {r['dataset']} | {r['label']} ({r['units']}) | {r['quantity']} | {r['tier']} | "
                         f"{r['n']}/{r['n_total']} | too few values | | | | | | |")  # fmt: skip
            continue
        log_mae = f"{r['mae_log10']:.3f} (n {r['n_log']})" if "mae_log10" in r else ""
        linear = f"{r['linear_cv_mae']:.3g} | {r['mad']:.3g}" if "linear_cv_mae" in r else " | "
        lines.append(
            f"| {r['dataset']} | {r['label']} ({r['units']}) | {r['quantity']} | {r['tier']} | {r['n']}/{r['n_total']}"
            f" | {r['mae']:.3g} | {r['median_ratio']:.2f} | {log_mae} | {linear} | {r['pearson']:.3f}"
            f" | {r['spearman']:.3f} |"
        )
        if "dulong_petit_mae" in r:
            dulong_petit = f"{r['dulong_petit_mae']:.3g}"
            lines.append(f"| | | Dulong–Petit 3R per atom (no simulation) | | | {dulong_petit} | | | | | | |")
    lines += _simulator_lines(versus)
    lines += [
        "",
        "## The recipe with and without `sim:chgnet`",
        "",
        "Mean test-fold MAE (5 folds; KFold seed 18012019 or the official Matbench folds); every choice made on "
        "training folds only. RF: the random forest given the same inputs.",
        "",
        "| task | recipe | recipe + sim:chgnet | RF (recipe's inputs) | RF + sim:chgnet |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in hybrid:
        cells = [_cell(r[m]) for m in ACCURACY_MODELS]
        lines.append(f"| {r['task']} | " + " | ".join(cells) + " |")
    compared = [r for r in direct if "mae" in r]
    if _plot(compared, versus, record.get("cost")):
        lines += ["", "![simulated vs DFT](sim_descriptors.png)"]
    atomic_write_text(RESULTS / "sim_descriptors.md", "\n".join([*lines, ""]))


def _simulator_lines(rows: list[dict]) -> list[str]:
    """The section comparing the simulators (empty before the simulators stage has run)."""
    if not rows:
        return []
    names = " and ".join(f"`{s}` ({title})" for s, title in SIMULATORS.items())
    lines = ["", "## Which simulator is closer to DFT: CHGNet or TensorNet-MatPES", "",
             f"The cheap tier of {names}, same settings, on a seeded sample of each dataset; every metric on the "
             "structures where both gave a value (*n*). Command: `python benchmarks/sim_descriptors.py --stages "
             "simulators`. Both computed under the current group definitions (the whole-dataset EOS rows above "
             "predate the EOS group's revision 1, NaN for vacuum-dominated cells). Cost: cold, per structure, all "
             "cores, from the stage runs (CHGNet's over the whole dataset, all three groups).", "",
             "| dataset | label vs simulated | simulator | n | failed / sample | MAE | MAE log10 | median ratio | "
             "linear fit (5-fold) | Pearson r | s / structure |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    verdicts = []
    for r in rows:
        for set_name, m in r["simulators"].items():
            log_mae = f"{m['mae_log10']:.3f}" if "mae_log10" in m else ""
            linear = f"{m['linear_cv_mae']:.3g}" if "linear_cv_mae" in m else ""
            lines.append(
                f"| {r['dataset']} | {r['label']} vs {r['quantity']} ({r['units']}) | `{set_name}` | {r['n_common']}"
                f" | {m['failed']}/{r['n_sample']} | {m['mae']:.3g} | {log_mae} | {m['median_ratio']:.2f} | {linear}"
                f" | {m['pearson']:.3f} | {m['s_per_structure']:.2f} |"
            )
        score = {s: m.get("mae_log10", m["mae"]) for s, m in r["simulators"].items()}
        best = min(score, key=score.get)
        verdicts.append(f"{r['dataset']} {r['label']}: `{best}` ({' vs '.join(f'{v:.3g}' for v in score.values())})")
    lines += ["", "Closer (lower MAE, log10 for the moduli): " + "; ".join(verdicts) + "."]
    return lines


def _cost_lines(record: dict) -> list[str]:
    lines = ["## Cost", ""]
    cost = record.get("cost")
    if cost:
        lines += [f"Seeded sample of {cost['data']}, {cost['device']}.", "", "| run | structures (mean sites) | ms / "
                  "structure |", "|---|---:|---:|"]  # fmt: skip
        for tier in ("cheap", "full"):
            t = cost[tier]
            for run, ms in t["ms_per_structure"].items():
                lines.append(f"| {run} | {t['n']} ({t['mean_sites']:.1f}) | {ms:.0f} |" if ms >= 10 else
                             f"| {run} | {t['n']} ({t['mean_sites']:.1f}) | {ms:.2g} |")  # fmt: skip
        lines.append("")
    datasets = record.get("datasets", {})
    if datasets:
        lines += ["Whole datasets, cheap tier, all cores, through the cache:", "",
                  "| dataset | structures | computed | wall time of those | cached (2nd run) | failures per group |",
                  "|---|---:|---:|---:|---:|---|"]  # fmt: skip
        for name, d in datasets.items():
            fails = ", ".join(f"{g}: {n}" for g, n in d.get("failures", {}).items()) or "— (incomplete)"
            cached = f"{d['cached_seconds']:.1f} s" if d.get("complete") else "—"
            lines.append(f"| {name} | {d['n']} | {d['n_computed']} | {d['seconds']:.0f} s | {cached} | {fails} |")
        lines.append("")
    full = record.get("full_sample", {})
    if full:
        lines += ["Full tier on seeded samples (all cores):", "",
                  "| dataset | structures | computed | wall time of those | failures per group |",
                  "|---|---:|---:|---:|---|"]  # fmt: skip
        for name, d in full.items():
            fails = ", ".join(f"{g}: {n}" for g, n in d.get("failures", {}).items()) or "— (incomplete)"
            lines.append(f"| {name} | {d['n']} | {d['n_computed']} | {d['seconds']:.0f} s | {fails} |")
        lines.append("")
    return lines


def _cell(value: dict | str | None) -> str:
    if isinstance(value, str):  # not applicable
        return value
    if value is None:
        return "not run"
    suffix = "" if value["folds"] == 5 else f" ({value['folds']}/5 folds)"
    return f"{value['mean']:.4g} ± {value['std']:.2g}{suffix}"


def _plot(direct: list[dict], versus: list[dict], cost: dict | None) -> bool:
    """Scatter panels of the comparisons (one per simulator comparison, both simulators in it) and the cost bars into
    ``sim_descriptors.png``; False when nothing to plot."""
    count = len(direct) + len(versus) + (1 if cost else 0)
    if not count:
        return False
    fig, axes = panels(count, ncols=min(count, 3), size=(4.4, 4.0))
    for ax, r in zip(axes, direct, strict=False):
        t, s = np.asarray(r["truth"]), np.asarray(r["simulated"])
        ax.scatter(t, s, s=6, alpha=0.5, color=COLOURS["ours"], edgecolors="none")
        low, high = min(t.min(), s.min()), max(t.max(), s.max())
        ax.plot([low, high], [low, high], "k--", lw=0.8)
        if "mae_log10" in r:
            _log_parity_axes(ax, np.r_[t, s])
        ax.set_xlabel(axis_label(f"DFT {r['label']}", r["units"]))
        ax.set_ylabel(axis_label(f"CHGNet {r['quantity']}", r["units"]))
        ax.set_title(f"{r['dataset']} ({r['tier']}): r = {r['pearson']:.2f}, n = {r['n']}", fontsize=9)
    for ax, r in zip(axes[len(direct) :], versus, strict=False):
        colours = (COLOURS["reference"][0], COLOURS["ours"])  # CHGNet, TensorNet-MatPES
        log = False
        for (set_name, m), colour in zip(r["simulators"].items(), colours, strict=True):
            error = f"MAE log10 {m['mae_log10']:.3f}" if "mae_log10" in m else f"MAE {m['mae']:.3g}"
            ax.scatter(m["truth"], m["simulated"], s=8, alpha=0.6, color=colour, edgecolors="none",
                       label=f"{SIMULATORS[set_name]}: {error}")  # fmt: skip
            log = log or "mae_log10" in m
        every = np.concatenate([np.r_[m["truth"], m["simulated"]] for m in r["simulators"].values()])
        ax.plot([every.min(), every.max()], [every.min(), every.max()], "k--", lw=0.8)
        if log:
            _log_parity_axes(ax, every)
        ax.legend(fontsize=7, loc="upper left", markerscale=2)
        ax.set_xlabel(axis_label(f"DFT {r['label']}", r["units"]))
        ax.set_ylabel(axis_label(f"simulated {r['quantity']}", r["units"]))
        ax.set_title(f"{r['dataset']}: which simulator, n = {r['n_common']}", fontsize=9)
    if cost:
        ax = axes[len(direct) + len(versus)]
        runs = {**cost["cheap"]["ms_per_structure"], **cost["full"]["ms_per_structure"]}
        drawn = ax.barh(list(runs), list(runs.values()), color=COLOURS["ours"])
        ax.bar_label(drawn, labels=[f" {v:,.0f}" if v >= 10 else f" {v:.2g}" for v in runs.values()], fontsize=7)
        ax.set_xscale("log")
        ax.set_xlim(right=max(runs.values()) * 8)  # room for the values
        ax.set_xlabel(axis_label("time per structure (log scale)", "ms"))
        ax.invert_yaxis()
        ax.tick_params(axis="y", labelsize=8)
        ax.set_title("cost per structure", fontsize=9)
    save(fig, RESULTS / "sim_descriptors.png")
    return True


def _log_parity_axes(ax: Axes, values: np.ndarray) -> None:
    """Log axes on a parity panel, the same range on both (that of the positive ``values``: others are not drawn on
    log axes); numbers at 1, 2 and 5 × 10ⁿ when the values span less
    than two decades (decades alone would leave one label, e.g. "10²"), at the decades otherwise (minor labels
    2×10¹ 3×10¹ … would run into each other)."""
    ax.set_xscale("log")
    ax.set_yscale("log")
    positive = values[np.isfinite(values) & (values > 0)]
    if not positive.size:
        return
    low, high = float(positive.min()), float(positive.max())
    pad = (high / low) ** 0.04
    ax.set_xlim(low / pad, high * pad)
    ax.set_ylim(low / pad, high * pad)
    few = np.log10(high / low) < 2
    for axis in (ax.xaxis, ax.yaxis):
        if few:
            axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axis.set_minor_formatter(NullFormatter())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--stages", default="", help="comma-separated: cost, datasets, full, simulators (default: report only)"
    )
    parser.add_argument("--n-simulators", type=int, default=150, help="sample of each dataset (simulators stage)")
    compared = ",".join(dict.fromkeys(c[0] for c in COMPARISONS))  # the datasets with a label to compare
    parser.add_argument("--datasets", default=compared, help=f"for the datasets and full stages (default {compared})")
    parser.add_argument("--n-cost", type=int, default=24, help="structures timed for the cheap tier")
    parser.add_argument("--n-cost-full", type=int, default=3, help="structures timed for the full tier")
    parser.add_argument("--n-full", type=int, default=24, help="full-tier sample of each dataset (full stage)")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="redraw the report from the committed "
        "sim_descriptors.json (simulated-vs-DFT rows as measured then; nothing read from the cache)",
    )
    args = parser.parse_args()
    names = args.datasets.split(",")
    stages = [s for s in args.stages.split(",") if s]
    unknown = set(stages) - {"cost", "datasets", "full", "simulators"} | set(names) - set(DATASETS)
    if unknown:
        parser.error(f"unknown stages or datasets: {sorted(unknown)}")
    if args.report_only:
        if stages:
            parser.error("--report-only runs no stage")
        report(from_record=True)
        return
    restore_sim_archives(archives=ARCHIVES)
    if "cost" in stages:
        stage_cost(args.n_cost, args.n_cost_full)
    if "datasets" in stages:
        stage_datasets(names)
    if "full" in stages:
        stage_full(names, args.n_full)
    if "simulators" in stages:
        stage_simulators([n for n in dict.fromkeys(c[0] for c in SIMULATOR_COMPARISONS) if n in names],
                         args.n_simulators)  # fmt: skip
    report()


if __name__ == "__main__":
    main()
