"""The benchmarks' shared tables: datasets and their targets, GNN budgets, the models of ``accuracy.py`` (and of the
studies that reuse its folds: ``select_recipe.py``, ``ssl_study.py``), their display names, and where data and
results live. A table, not a script: benchmark scripts import it, never each other.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from matgl_hybrid.data import StructureData, load_records, log10_targets
from matgl_hybrid.descriptors import DescriptorCache, featurize, import_archive
from matgl_hybrid.evaluation import FoldStore
from matgl_hybrid.graphs import drop_unconnected
from matgl_hybrid.paths import descriptor_cache_dir
from matgl_hybrid.potentials import architecture_args, potential_config
from matgl_hybrid.training import TrainSpec, fit
from matgl_hybrid.training.baselines import descriptor_forest, descriptor_mlp

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
#: Whether Matbench v2 is the submission (its folder in matbench_submissions/, v1's archived under
#: matbench_runs/submission/): set when all ten of v2's folds are finished, in the commit that moves both folders
#: (``git mv``), so that every record stays where the report reads it (it refuses to drop a fold it reported).
V2_PROMOTED = True
#: v1's Matbench submission folder (its candidates' fold records, its report), wherever the promotion left it.
V1_SUBMISSION = (
    RESULTS / "matbench_runs" / "submission" if V2_PROMOTED else ROOT / "matbench_submissions"
) / "matbench_v0.1_MatGLHybrid"
SHARED = ROOT.parent / "shared" / "data"
#: The two Matbench tasks with structures here: reconstructed files in ``../shared/data/matbench`` (see its README).
MATBENCH_DATA = SHARED / "matbench"
MATBENCH_TASKS = ("matbench_jdft2d", "matbench_phonons")
MATBENCH_UNITS = {"matbench_jdft2d": "meV/atom", "matbench_phonons": "cm⁻¹"}
MATBENCH_PROVENANCE = (
    "reconstructed from a public CSV export of the Matbench data (GitHub dhw059/LLM-predictor, "
    "data/allmatbench_*/matbench_*.csv), official row order, oxidation states removed; checked against the "
    "official fold ids and an independent copy (see ../shared/data/matbench/README.md of matgl-hybrid)"
)


@dataclass(frozen=True)
class Task:
    """One target of a dataset: the record field, whether it is modelled as log10, and its units."""

    name: str
    field: str
    log10: bool
    units: str


DATASETS: dict[str, tuple[str, list[Task]]] = {
    "alexandria_heat_capacity": (
        "alexandria_heat_capacity.json.gz",
        [Task("heat_capacity", "heat_capacity", False, "J/K/mol of cells")],
    ),
    "mp_binary_elasticity": (
        "mp_binary_elasticity.json.gz",
        [
            Task("log10_bulk_modulus", "bulk_modulus_vrh", True, "log10 GPa"),
            Task("log10_shear_modulus", "shear_modulus_vrh", True, "log10 GPa"),
        ],
    ),
    "de_jong_2015_elasticity": (
        "de_jong_2015_elasticity.json.gz",
        [Task("log10_K_VRH", "K_VRH", True, "log10 GPa"), Task("log10_G_VRH", "G_VRH", True, "log10 GPa")],
    ),
    "flla_2015_formation_energy": (
        "flla_2015_formation_energy.json.gz",
        [Task("formation_energy_per_atom", "formation_energy_per_atom", False, "eV/atom")],
    ),
}

DESCRIPTORS_ONLY = "gong28+composition"
RECIPE_DESCRIPTORS = f"{DESCRIPTORS_ONLY}+chgnet_noenergy"  # the recommended recipe's set (TrainSpec's default)
CUTOFF = 5.0  # Å, MEGNet's graph cutoff here
NE_LAYERS = "0,1,2,3"  # NEGNN input: NE0 … NE3 of the pretrained MEGNet encoder, concatenated

#: GNN training budget per dataset: small sets train on 2 CPU cores, the ≈ 4000-structure sets on one GPU.
SMALL_BUDGET = {"batch_size": 32, "max_epochs": 120, "patience": 25}
LARGE_BUDGET = {"batch_size": 128, "max_epochs": 100, "patience": 20}
BUDGETS = {
    "alexandria_heat_capacity": SMALL_BUDGET,
    "de_jong_2015_elasticity": SMALL_BUDGET,
    "mp_binary_elasticity": LARGE_BUDGET,
    "flla_2015_formation_energy": LARGE_BUDGET,
}


#: Simulated values computed before, committed (``featurize --archive`` format): runs import them instead of
#: simulating again (``matgl-hybrid cache-import benchmarks/results/sim_values/*.json.gz``).
SIM_ARCHIVES = RESULTS / "sim_values"


def restore_sim_archives(pattern: str = "*", archives: Path = SIM_ARCHIVES, cache_dir: Path | None = None) -> None:
    """Import the archives ``<pattern>.json.gz`` of ``archives`` into ``cache_dir`` (default: the default cache);
    values cached there are kept."""
    cache = DescriptorCache(cache_dir or descriptor_cache_dir())
    for path in sorted(Path(archives).glob(f"{pattern}.json.gz")):
        print(f"restored {import_archive(cache, path)} structures' values from {path.name}", flush=True)


def units_of(key: str) -> str:
    """The units of ``<dataset>/<task>`` (``matbench/<task>`` for the Matbench tasks)."""
    dataset, task = key.split("/")
    if dataset == "matbench":
        return MATBENCH_UNITS[task]
    return next(t.units for t in DATASETS[dataset][1] if t.name == task)


def gnn_spec(
    dataset: str,
    readout: str,
    descriptors: str | None,
    fusion: str = "concat",
    backbone: str = "megnet",
    **overrides,
) -> TrainSpec:
    """The GNN training budget of this benchmark for ``dataset`` (see ``BUDGETS``); MatGL's default model size."""
    return TrainSpec(
        backbone=backbone,
        readout=readout,
        descriptor_set=descriptors,
        fusion=fusion,
        element_types="all",  # a test fold may hold elements its training folds lack
        progress=False,
        # a model's own settings (e.g. FINETUNE) win; descriptors unclipped, as every study here was registered
        # before TrainSpec.clip_descriptors (``recipe_clipped`` measures the clipping)
        **{"lr": 2e-3, "clip_descriptors": False, **BUDGETS[dataset], **overrides},
    )


def load_task(dataset: str, task: Task, data_dir: Path = SHARED) -> StructureData:
    """The dataset's records with a finite (and, for log10 targets, positive) target, in file order."""
    data = load_records(data_dir / DATASETS[dataset][0], task.field, skip_invalid=True)
    if task.log10:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # moduli ≤ 0 are dropped, as Matbench does
            data = log10_targets(data)
    data.target_name = task.name
    # A graph network cannot read a structure with no neighbour pair within its cutoff (a few alkali-metal cells
    # of flla_2015): they are dropped for every model, so that all models see the same folds.
    return drop_unconnected(data, CUTOFF)


def training_part(train: StructureData, fraction: float, fold: int) -> StructureData:
    """A seeded part (``fraction``) of outer fold ``fold``'s training data, in file order: the learning curves' and
    the small-data selection's training sets (the same rows for every model)."""
    return train.seeded_part(fraction, seed=fold)


def _descriptor_model(make: Callable[[], object], descriptors: str = DESCRIPTORS_ONLY) -> Callable:
    """A descriptor-only model (a :mod:`matgl_hybrid.training.baselines` pipeline) on standardized targets."""

    def run(train: StructureData, test: StructureData, cache: Path, **_) -> tuple[np.ndarray, dict]:
        """The test predictions and no extra record (a forest or MLP here has no validation split)."""
        frames = [
            featurize(d.structures, descriptors, n_jobs=-1, cache_dir=cache, ids=d.ids, progress=False)
            for d in (train, test)
        ]
        mean, std = train.targets.mean(), train.targets.std() or 1.0  # as DescriptorForest (constant targets)
        model = make().fit(frames[0], (train.targets - mean) / std)
        return model.predict(frames[1]) * std + mean, {}

    run.descriptor_set = descriptors
    return run


def encoder_dir(dataset: str) -> Path:
    """The SSL encoder pretrained without ``dataset`` (``benchmarks/ssl_study.py`` makes it)."""
    return RESULTS / "ssl_work" / f"encoder_without_{dataset}"


#: The descriptor-only baselines of these benchmarks: 300 trees (500 in ``matbench_study.py``), the MLP's defaults.
_forest = partial(descriptor_forest, seed=0, n_estimators=300, n_jobs=-1)
_mlp = partial(descriptor_mlp, seed=0)


def _gnn_model(
    readout: str | None,
    descriptors: str | None,
    fusion: str = "concat",
    ne_layers: str | None = None,
    backbone: str = "megnet",
    **changes,
) -> Callable:
    """A GNN of these benchmarks; ``readout`` None: the dataset's in :data:`PRETRAINED_READOUTS`; ``changes``: other
    TrainSpec fields (over the dataset's budget)."""

    def spec_for(dataset: str, fold: int, **overrides) -> TrainSpec:
        if ne_layers:  # NEGNN: frozen NE vectors of an encoder that never saw this dataset
            overrides = {**overrides, "node_embeddings": f"{encoder_dir(dataset)}:{ne_layers}"}
        chosen = readout or PRETRAINED_READOUTS[dataset]
        overrides = {**changes, **overrides}
        return gnn_spec(dataset, chosen, descriptors, fusion, backbone, seed=fold, n_jobs=-1, **overrides)

    def run(
        train: StructureData, test: StructureData, cache: Path, fold: int, dataset: str, **overrides
    ) -> tuple[np.ndarray, dict]:
        """The test predictions and the fit's inner validation (its split of the training part only)."""
        result = fit(train, spec=spec_for(dataset, fold, **overrides), cache_dir=cache)
        validation = {"best_val_mae": result.best_val_mae, "best_epoch": result.best_epoch,
                      "epochs_run": result.epochs_run, "n_val": len(result.val_ids)}  # fmt: skip
        return result.model.predict(test.structures, cache_dir=cache, ids=test.ids), {"validation": validation}

    run.descriptor_set = descriptors
    run.spec_for = spec_for
    return run


#: Issue "Pretrained foundation backbones", written down before any of its folds ran: the fine-tuning settings
#: (JMP-like: AdamW, layer-wise rates, warm-up + cosine per step, clipping, EMA), the same for the pretrained
#: TensorNet-MatPES backbone and for the same architecture from random initialisation, and one readout per dataset
#: from its property kind (per-cell: extensive; the maximum of Matbench phonons: max; the rest: Set2Set).
FINETUNE = {"lr": 1e-3, "layer_decay": 0.8, "weight_decay": 0.01, "warmup_epochs": 5, "gradient_clip": 1.0,
            "ema_decay": 0.999, "batch_size": 16, "max_epochs": 100, "patience": 30}  # fmt: skip
PRETRAINED_READOUTS = {
    "alexandria_heat_capacity": "extensive",
    "mp_binary_elasticity": "set2set",
    "de_jong_2015_elasticity": "set2set",
    "flla_2015_formation_energy": "set2set",
    "matbench_jdft2d": "set2set",
    "matbench_phonons": "max",
}
#: TensorNet-MatPES-PBE's architecture (units 128, 2 blocks, …), for the same network from random initialisation.
MATPES_ARCHITECTURE = {
    k: v
    for k, v in architecture_args(potential_config("TensorNet-MatPES-PBE-v2025.1-PES")).items()
    if k not in ("element_types", "cutoff", "dtype")
}

MODELS: dict[str, Callable] = {
    "megnet": _gnn_model("native", None),
    "megnet_readout": _gnn_model("extensive", None),
    "descriptors_rf": _descriptor_model(_forest),
    "descriptors_mlp": _descriptor_model(_mlp),
    # Universal-potential knowledge (issue #18): the same models given CHGNet 0.3.0's descriptors as well;
    # the _noenergy variants leave out CHGNet's energy per atom (close to a formation-energy label).
    "descriptors_rf_chgnet": _descriptor_model(_forest, f"{DESCRIPTORS_ONLY}+chgnet"),
    "descriptors_mlp_chgnet": _descriptor_model(_mlp, f"{DESCRIPTORS_ONLY}+chgnet"),
    "descriptors_rf_chgnet_noenergy": _descriptor_model(_forest, RECIPE_DESCRIPTORS),
    "descriptors_mlp_chgnet_noenergy": _descriptor_model(_mlp, RECIPE_DESCRIPTORS),
    "hybrid_megnet": _gnn_model("extensive", "gong28", "concat"),
    "hybrid_megnet_gate": _gnn_model("extensive", "gong28", "gate"),
    # The hybrid given what the descriptor-only models see, then CHGNet's descriptors too (issue #18).
    "hybrid_megnet_composition": _gnn_model("extensive", DESCRIPTORS_ONLY, "concat"),
    "hybrid_megnet_chgnet": _gnn_model("extensive", f"{DESCRIPTORS_ONLY}+chgnet", "concat"),
    "hybrid_megnet_chgnet_noenergy": _gnn_model("extensive", RECIPE_DESCRIPTORS, "concat"),
    # The recipe as the package trains it since TrainSpec.clip_descriptors (descriptors clipped to the training range).
    "recipe_clipped": _gnn_model("extensive", RECIPE_DESCRIPTORS, "concat", clip_descriptors=True),
    # The same with a learning rate that decays (TrainSpec.lr_schedule, added 2026-12-05: MatGL's schedule, which
    # every model here trains with, stays within a few percent of lr); units/lr_schedule.txt, registered before
    # any fold of it ran.
    "recipe_cosine": _gnn_model("extensive", RECIPE_DESCRIPTORS, "concat", clip_descriptors=True, lr_schedule="cosine"),
    # Simulation knowledge (issue #21): the recipe and the same descriptor-only models with ``sim:chgnet`` added.
    "descriptors_rf_sim": _descriptor_model(_forest, f"{RECIPE_DESCRIPTORS}+sim:chgnet"),
    "descriptors_mlp_sim": _descriptor_model(_mlp, f"{RECIPE_DESCRIPTORS}+sim:chgnet"),
    "hybrid_megnet_sim": _gnn_model("extensive", f"{RECIPE_DESCRIPTORS}+sim:chgnet", "concat"),
    "hybrid_megnet_film": _gnn_model("extensive", "gong28", "film"),
    "negnn_megnet": _gnn_model("extensive", None, ne_layers=NE_LAYERS),
    "tensornet": _gnn_model("native", None, backbone="tensornet"),
    "tensornet_readout": _gnn_model("extensive", None, backbone="tensornet"),
    "hybrid_tensornet": _gnn_model("extensive", "gong28", "concat", backbone="tensornet"),
    # Pretrained foundation backbones: fine-tuned TensorNet-MatPES vs the same network from scratch, same budget,
    # both with the recipe's descriptors; and a forest on its frozen features.
    "finetuned_tensornet_matpes": _gnn_model(None, RECIPE_DESCRIPTORS, backbone="tensornet-matpes-pbe", **FINETUNE),
    "scratch_tensornet_matpes": _gnn_model(
        None, RECIPE_DESCRIPTORS, backbone="tensornet", backbone_kwargs=MATPES_ARCHITECTURE, **FINETUNE
    ),
    "descriptors_rf_tensornet_matpes": _descriptor_model(_forest, "tensornet_matpes"),
    # The same two networks with descriptors clipped to their training range (added after the 25 % heat-capacity
    # folds 2 and 3 showed the unclipped failure; reported beside the registered runs, not instead of them).
    "finetuned_tensornet_matpes_clipped": _gnn_model(
        None, RECIPE_DESCRIPTORS, backbone="tensornet-matpes-pbe", **FINETUNE, clip_descriptors=True
    ),
    "scratch_tensornet_matpes_clipped": _gnn_model(
        None,
        RECIPE_DESCRIPTORS,
        backbone="tensornet",
        backbone_kwargs=MATPES_ARCHITECTURE,
        **FINETUNE,
        clip_descriptors=True,
    ),
}


#: Models the hybrid is compared with in the target lines, and the headline table's columns (issue #4's models 1–4).
SHORT_NAMES = {
    "alexandria_heat_capacity": "alexandria",
    "mp_binary_elasticity": "mp_binary",
    "de_jong_2015_elasticity": "de Jong 2015",
    "flla_2015_formation_energy": "flla 2015",
}
COLUMN_NAMES = {
    "megnet": "plain MEGNet (MatGL, Set2Set)",
    "megnet_readout": "MEGNet, extensive readout",
    "descriptors_rf": "descriptors RF",
    "descriptors_mlp": "descriptors MLP",
    "descriptors_rf_chgnet": "descriptors + chgnet RF",
    "descriptors_mlp_chgnet": "descriptors + chgnet MLP",
    "descriptors_rf_chgnet_noenergy": "descriptors + chgnet (no energy) RF",
    "descriptors_mlp_chgnet_noenergy": "descriptors + chgnet (no energy) MLP",
    "hybrid_megnet": "hybrid MEGNet (gong28, concat)",
    "hybrid_megnet_gate": "hybrid MEGNet (gate)",
    "hybrid_megnet_composition": "hybrid MEGNet (gong28+composition, concat)",
    "hybrid_megnet_chgnet": "hybrid MEGNet (gong28+composition+chgnet, concat)",
    "hybrid_megnet_chgnet_noenergy": "hybrid MEGNet (gong28+composition+chgnet without its energy, concat)",
    "recipe_clipped": "recipe, descriptors clipped to their training range",
    "hybrid_megnet_film": "hybrid MEGNet (FiLM)",
    "descriptors_rf_sim": "descriptors + chgnet (no energy) + sim:chgnet RF",
    "descriptors_mlp_sim": "descriptors + chgnet (no energy) + sim:chgnet MLP",
    "hybrid_megnet_sim": "recipe + sim:chgnet (hybrid MEGNet, concat)",
    "tensornet": "plain TensorNet (MatGL)",
    "tensornet_readout": "TensorNet, extensive readout",
    "hybrid_tensornet": "hybrid TensorNet (gong28, concat)",
    "finetuned_tensornet_matpes": "hybrid TensorNet-MatPES, fine-tuned (recipe's descriptors)",
    "scratch_tensornet_matpes": "hybrid TensorNet, MatPES architecture from scratch (recipe's descriptors)",
    "descriptors_rf_tensornet_matpes": "frozen TensorNet-MatPES features RF",
    "finetuned_tensornet_matpes_clipped": "hybrid TensorNet-MatPES, fine-tuned, descriptors clipped",
    "scratch_tensornet_matpes_clipped": "hybrid TensorNet from scratch, descriptors clipped",
}


def store(dataset: str, task: str, model: str) -> FoldStore:
    """The finished folds of ``accuracy.py``'s ``model`` on ``dataset``'s ``task``."""
    return FoldStore(RESULTS / "folds" / dataset / task / model)


def is_baseline(model: str) -> bool:
    """Whether ``model`` is drawn as a baseline (grey) in the figures: the plain GNNs, their readouts alone and the
    descriptor-only models; the hybrids, the recipe's variants, the pretrained-backbone hybrids and NEGNN are
    ours. ``model@F`` (on a part ``F`` of each training fold) is drawn like ``model``."""
    return model.split("@")[0].startswith(("megnet", "tensornet", "descriptors_"))
