"""Scaling with N: wall time and peak memory of featurize, graph building, one training epoch and prediction.

Data: the union of the four record files in ``../shared/data`` (alexandria_heat_capacity, de_jong_2015_elasticity,
flla_2015_formation_energy, mp_binary_elasticity) plus the two Matbench files in ``../shared/data/matbench``
(jdft2d, phonons), deduplicated by id (first occurrence kept): about 10.3k structures. One seeded permutation of
that pool gives every size its structures (the first N valid ones), so a smaller set is a subset of a larger one.
``all`` is the whole valid pool. Invalid structures (``load(..., skip_invalid=True)``) and structures with an
empty graph at the 5 Å cutoff are skipped before anything is timed.

Each size runs in a fresh subprocess (so memory of one size does not carry into the next), which times four
stages of the package, each separately, and writes ``scale.n<size>.json``:

1. ``featurize``: ``featurize(structures, "gong28", n_jobs, cache_dir=<fresh empty dir>)``: cold cache. The
   joblib workers are started beforehand (untimed, on 2·n_jobs structures without a cache): their start-up
   (≈ 2 s, once per session) would otherwise flatten the fitted exponent.
2. ``graphs``: ``build_dataset(structures, get_element_list(structures), 5.0, ids, descriptors)`` with the
   descriptors of stage 1 through ``DescriptorTransform().fit_transform`` (untimed).
3. ``fit``: ``fit(data, spec=TrainSpec(max_epochs=1, progress=False, accelerator="cpu", n_jobs))`` with the warm
   cache of stage 1: descriptors from the cache, graphs, one epoch and one validation pass. The target is the
   volume per atom (every structure has one; the values do not change the cost). ``epoch`` is the training epoch
   alone (Lightning's epoch start to the start of validation, from a callback given to ``fit(callbacks=...)``), a
   part of ``fit``.
4. ``predict``: ``result.model.predict(structures, cache_dir=<warm cache>, ids=ids)``.

Per stage: wall time, and peak memory = peak RSS of the process plus its child processes (the joblib workers)
during the stage, minus that RSS at the stage's start (sampled every 50 ms in a thread, after ``gc.collect()``
and ``malloc_trim`` at the start); also the CPU seconds of the process and its workers, and the share of the
machine's cores other processes used meanwhile: above 10 % the stage is reported as disturbed (the 2-core machine
is shared; rerun such sizes when it is quiet). The parent fits time ≈ a·N^b and memory ≈ a·N^b (log-log least
squares) per stage, projects both to N = 132,752 (Matbench's largest task, matbench_mp_e_form), flags b > 1.15 as
superlinear, and writes ``benchmarks/results/scale.{md,json,png}``.

    python benchmarks/scale.py [--sizes 1000,4000,all] [--seed 0] [--n-jobs 2] [--out benchmarks/results]
    python benchmarks/scale.py --sizes 40,80,160 --out /tmp/scale_try     # a quick check
    python benchmarks/scale.py --report-only                                # rebuild the report from scale.n*.json
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import gzip
import json
import logging
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import lightning as L
import numpy as np
import pandas as pd
import psutil
import torch
from lightning.pytorch.callbacks import Callback
from matgl.ext.pymatgen import get_element_list
from matplotlib.axes import Axes

import matgl_hybrid
from matgl_hybrid.data import StructureData, load
from matgl_hybrid.descriptors import DescriptorTransform, featurize
from matgl_hybrid.figures import axis_label, panels, save
from matgl_hybrid.files import atomic_write_text
from matgl_hybrid.graphs import build_dataset, has_edges
from matgl_hybrid.training import TrainSpec, device_name, fit

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SHARED = ROOT.parent / "shared" / "data"

SOURCES = ("alexandria_heat_capacity", "de_jong_2015_elasticity", "flla_2015_formation_energy", "mp_binary_elasticity")
MATBENCH = ("matbench_jdft2d", "matbench_phonons")
TARGET_N = 132_752  # matbench_mp_e_form, Matbench v0.1's largest task
TARGET_TASK = "matbench_mp_e_form"
CUTOFF = 5.0  # TrainSpec's default
DISTURBED = 0.10  # other processes' share of the machine's cores above which a stage's timing is called disturbed
MIB = 2**20

#: Stages in run order: key -> label. ``epoch`` is the training epoch inside ``fit``.
STAGES = {
    "featurize": "featurize (gong28, cold cache)",
    "graphs": "build graphs (5 Å)",
    "fit": "fit, 1 epoch (total)",
    "epoch": "training epoch alone",
    "predict": "predict (warm cache)",
}
#: Least vertical distance (points) between two projection labels: close projections are spread apart.
LABEL_GAP_PT = 9.0
COLORS = {"featurize": "#1f77b4", "graphs": "#2ca02c", "fit": "#d62728", "epoch": "#ff7f0e", "predict": "#9467bd"}


# ----------------------------------------------------------------------------------------------------- measuring


def _trim() -> None:
    """Collect garbage and hand freed heap back to the OS, so the RSS at a stage's start is what is live."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def tree_rss(proc: psutil.Process) -> tuple[int, int]:
    """(RSS of ``proc`` plus all its descendants, RSS of ``proc`` alone) in bytes."""
    total, main, _ = tree_usage(proc)
    return total, main


def tree_usage(proc: psutil.Process) -> tuple[int, int, dict[int, float]]:
    """(RSS of ``proc`` plus its descendants, RSS of ``proc``, CPU seconds (user + system) of each of them by pid)."""
    main = proc.memory_info().rss
    total = main
    cpu = {proc.pid: sum(proc.cpu_times()[:2])}
    for child in proc.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            total += child.memory_info().rss
            cpu[child.pid] = sum(child.cpu_times()[:2])
    return total, main, cpu


def system_busy() -> float:
    """CPU seconds all cores of the machine have been busy (steal excluded), summed over cores."""
    t = psutil.cpu_times()
    return sum(getattr(t, name, 0.0) for name in ("user", "nice", "system", "irq", "softirq"))


def _reset_hwm() -> bool:
    """Reset this process's peak RSS (VmHWM) on Linux; False where not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _hwm() -> int | None:
    """This process's peak RSS (VmHWM) in bytes, or None."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return None


class Stage:
    """Time a block; sample memory and CPU of this process and its children every ``interval`` s in a thread.

    Each sample is (t, RSS of the tree, own RSS, CPU seconds of the tree since the start, machine busy seconds).
    The machine's busy time minus the tree's is other processes' work: ``foreign_cpu_share`` (of all cores) says
    how much the timing was disturbed.
    """

    def __init__(self, interval: float = 0.05):
        self.interval = interval
        self.samples: list[tuple[float, int, int, float, float]] = []
        self._stop = threading.Event()
        self._proc = psutil.Process()
        self._cpu_start: dict[int, float] = {}
        self._cpu_seen: dict[int, float] = {}
        self.cores = psutil.cpu_count() or 1

    def _sample(self) -> None:
        total, main, cpu = tree_usage(self._proc)
        if not self._cpu_start:
            self._cpu_start = dict(cpu)
        self._cpu_seen.update(cpu)
        own_cpu = sum(v - self._cpu_start.get(pid, 0.0) for pid, v in self._cpu_seen.items())
        self.samples.append((time.perf_counter(), total, main, own_cpu, system_busy()))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> Stage:
        _trim()
        self.hwm_reset = _reset_hwm()
        self.load_average = os.getloadavg()[0]
        self._sample()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.end = time.perf_counter()
        self._stop.set()
        self._thread.join()
        self._sample()
        self.hwm = _hwm() if self.hwm_reset else None

    @property
    def seconds(self) -> float:
        return self.end - self.start

    def _stats(self, base: tuple, inside: list[tuple], seconds: float) -> dict[str, float]:
        last = inside[-1]
        own_cpu = last[3] - base[3]
        foreign = max(0.0, (last[4] - base[4]) - own_cpu)
        span = max(last[0] - base[0], 1e-9)
        return {
            "seconds": seconds,
            "rss_start_mib": base[1] / MIB,
            "peak_rss_mib": max(s[1] for s in inside) / MIB,
            "peak_delta_mib": (max(s[1] for s in inside) - base[1]) / MIB,
            "own_peak_delta_mib": (max(s[2] for s in inside) - base[2]) / MIB,
            "cpu_seconds": own_cpu,
            "cores_used": own_cpu / span,
            "foreign_cpu_share": foreign / (span * self.cores),
        }

    def window(self, start: float, end: float) -> dict[str, float]:
        """The statistics of a part [start, end] of the stage (from the samples; memory above the RSS at start)."""
        before = [s for s in self.samples if s[0] <= start]
        inside = [s for s in self.samples if start <= s[0] <= end] or before[-1:]
        return self._stats(before[-1] if before else inside[0], inside, end - start)

    def summary(self) -> dict[str, Any]:
        out = self._stats(self.samples[0], self.samples, self.seconds)
        out["n_samples"] = len(self.samples)
        out["load_average_at_start"] = self.load_average
        if self.hwm is not None:  # exact peak of this process alone (kernel high-water mark), a check on sampling
            out["own_hwm_delta_mib"] = (self.hwm - self.samples[0][2]) / MIB
        return out


class EpochClock(Callback):
    """Time stamps at the training epoch's start and around validation (given to ``fit(callbacks=...)``)."""

    def __init__(self):
        self.marks: dict[str, float] = {}

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.marks.setdefault("train_start", time.perf_counter())

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.marks.setdefault("val_start", time.perf_counter())

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.marks.setdefault("val_end", time.perf_counter())


# ---------------------------------------------------------------------------------------------------- the data


def _read_json_gz(path: Path) -> Any:
    return json.loads(gzip.decompress(path.read_bytes()))


def candidate_pool(data_dir: Path, matbench: bool) -> tuple[list[tuple[str, str, dict]], dict[str, dict[str, int]]]:
    """(id, source, structure dict) of every record, the first occurrence of each id kept, in file order."""
    pool: dict[str, tuple[str, dict]] = {}
    stats: dict[str, dict[str, int]] = {}
    for name in SOURCES:
        records = _read_json_gz(data_dir / f"{name}.json.gz")
        before = len(pool)
        for record in records:
            pool.setdefault(str(record["id"]), (name, record["structure"]))
        stats[name] = {"records": len(records), "new_ids": len(pool) - before}
    if matbench:
        for task in MATBENCH:
            raw = _read_json_gz(data_dir / "matbench" / f"{task}.json.gz")  # matminer's "split" layout
            column = raw["columns"].index("structure")
            short = task.removeprefix("matbench_")
            before = len(pool)
            for index, row in zip(raw["index"], raw["data"], strict=True):
                pool.setdefault(f"mb-{short}-{int(index) + 1}", (task, row[column]))
            stats[task] = {"records": len(raw["index"]), "new_ids": len(pool) - before}
    return [(i, source, structure) for i, (source, structure) in pool.items()], stats


def select(pool: list[tuple[str, str, dict]], n: int | None, seed: int) -> tuple[StructureData, dict[str, Any]]:
    """The first ``n`` valid structures (all when None) of a seeded permutation of ``pool``; target: volume/atom."""
    order = np.random.default_rng(seed).permutation(len(pool))
    structures, ids, sources = [], [], []
    invalid = no_edges = 0
    position = 0
    while (n is None or len(ids) < n) and position < len(order):
        take = order[position : position + (len(order) if n is None else n - len(ids))]
        position += len(take)
        frame = pd.DataFrame([pool[i] for i in take], columns=["id", "source", "structure"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = load(frame, id_column="id", skip_invalid=True)
        invalid += len(data.skipped)
        source_of = dict(zip(frame["id"], frame["source"], strict=True))
        for structure, structure_id in zip(data.structures, data.ids, strict=True):
            if not has_edges(structure, CUTOFF):
                no_edges += 1
                continue
            structures.append(structure)
            ids.append(structure_id)
            sources.append(source_of[structure_id])
    if n is not None and len(ids) < n:
        raise SystemExit(f"asked for {n} structures, but the pool has only {len(ids)} valid ones: use --sizes ...,all")
    targets = np.array([s.volume / len(s) for s in structures])
    info = {
        "pool": len(pool),
        "skipped_invalid": invalid,
        "skipped_no_edges": no_edges,
        "sources": {s: sources.count(s) for s in dict.fromkeys(sources)},
    }
    return StructureData(structures, targets, ids, target_name="volume_per_atom"), info


# ------------------------------------------------------------------------------------------------- one size


def _directory_size(path: Path) -> tuple[int, int]:
    files = [p for p in path.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def run_size(label: str, args: argparse.Namespace) -> dict[str, Any]:
    """Measure the four stages at one size (in this process, which should be fresh) and return the record."""
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    start = time.perf_counter()
    pool, pool_stats = candidate_pool(Path(args.data_dir), args.matbench)
    data, selection = select(pool, None if label == "all" else int(label), args.seed)
    del pool
    structures, ids = data.structures, data.ids
    n = len(data)
    elements = get_element_list(structures)
    tag = f"[N={n}]"
    print(f"{tag} {n} structures ({selection['sources']}) loaded in {time.perf_counter() - start:.0f} s", flush=True)
    featurize(structures[: 2 * args.n_jobs], "gong28", n_jobs=args.n_jobs, cache_dir=None, progress=False)  # warm up
    _trim()
    rss_loaded = tree_rss(psutil.Process())[0] / MIB

    stages: dict[str, dict[str, Any]] = {}

    def report(key: str) -> None:
        s = stages[key]
        print(
            f"{tag} {key}: {s['seconds']:.2f} s ({s['seconds'] / n * 1000:.2f} ms/structure), "
            f"peak +{s['peak_delta_mib']:.0f} MiB, {s['cores_used']:.1f} cores busy, "
            f"other processes {s['foreign_cpu_share']:.0%} of the machine",
            flush=True,
        )

    with tempfile.TemporaryDirectory(prefix="scale_cache_") as cache:
        with Stage() as stage:
            frame = featurize(structures, "gong28", n_jobs=args.n_jobs, cache_dir=cache, ids=ids, progress=False)
        stages["featurize"] = stage.summary()
        stages["featurize"]["featurizer_errors"] = len(frame.attrs.get("errors", []))
        files, size = _directory_size(Path(cache))
        cache_info = {"files": files, "bytes": size, "bytes_per_structure": size / n}
        report("featurize")

        descriptors = DescriptorTransform().fit_transform(frame)
        with Stage() as stage:
            dataset = build_dataset(structures, elements, CUTOFF, ids, descriptors)
        stages["graphs"] = stage.summary()
        graphs = {
            "nodes": int(sum(g.num_nodes for g in dataset.graphs)),
            "edges": int(sum(g.edge_index.shape[1] for g in dataset.graphs)),
        }
        graphs["edges_per_structure"] = graphs["edges"] / n
        graphs["mean_sites"] = graphs["nodes"] / n
        report("graphs")
        del dataset, descriptors

        spec = TrainSpec(max_epochs=1, progress=False, accelerator="cpu", n_jobs=args.n_jobs)
        clock = EpochClock()
        with Stage() as stage:
            result = fit(data, spec=spec, cache_dir=cache, callbacks=[clock])
        stages["fit"] = stage.summary()
        marks = clock.marks
        stages["fit"].update(
            fit_result_seconds=result.seconds,
            epochs_run=result.epochs_run,
            n_train=len(result.train_ids),
            n_val=len(result.val_ids),
            validation_seconds=marks["val_end"] - marks["val_start"],
            before_epoch_seconds=marks["train_start"] - stage.start,
        )
        stages["epoch"] = stage.window(marks["train_start"], marks["val_start"])
        stages["epoch"]["structures_per_second"] = len(result.train_ids) / stages["epoch"]["seconds"]
        report("fit")
        report("epoch")

        with Stage() as stage:
            predictions = result.model.predict(structures, cache_dir=cache, ids=ids)
        stages["predict"] = stage.summary()
        stages["predict"]["finite"] = bool(np.isfinite(predictions).all())
        report("predict")

    return {
        "label": label,
        "n": n,
        "seed": args.seed,
        "n_jobs": args.n_jobs,
        "matbench": args.matbench,
        "torch_threads": torch.get_num_threads(),
        "device": device_name("cpu"),
        "n_elements": len(elements),
        "pool_stats": pool_stats,
        "selection": selection,
        "rss_after_load_mib": rss_loaded,
        "cache": cache_info,
        "graphs": graphs,
        "stages": stages,
        "total_seconds": time.perf_counter() - start,
    }


# ------------------------------------------------------------------------------------------------- analysis


def power_fit(ns: list[float], ys: list[float]) -> dict[str, Any] | None:
    """y ≈ a·N^b by least squares in log-log; None with fewer than 2 sizes or a non-positive value."""
    if len(ns) < 2 or min(ys) <= 0:
        return None
    x, y = np.log(np.asarray(ns, dtype=float)), np.log(np.asarray(ys, dtype=float))
    b, log_a = np.polyfit(x, y, 1)
    residual = y - (log_a + b * x)
    r2 = 1.0 - float(residual @ residual) / float(((y - y.mean()) ** 2).sum()) if len(ns) > 2 else 1.0
    local = [float((y[i + 1] - y[i]) / (x[i + 1] - x[i])) for i in range(len(ns) - 1)]
    return {"a": float(np.exp(log_a)), "b": float(b), "r2": r2, "local_b": local}


def project(f: dict[str, Any] | None, n: float) -> float | None:
    return None if f is None else f["a"] * n ** f["b"]


def analyse(runs: list[dict[str, Any]], threshold: float, target_n: int = TARGET_N) -> dict[str, dict[str, Any]]:
    """Per stage: the time and memory fits, their projections to ``target_n`` and the superlinear flags."""
    runs = sorted(runs, key=lambda r: r["n"])
    ns = [r["n"] for r in runs]
    out = {}
    for key in STAGES:
        seconds = [r["stages"][key]["seconds"] for r in runs]
        memory = [r["stages"][key]["peak_delta_mib"] for r in runs]
        cpu = [r["stages"][key]["cpu_seconds"] for r in runs]
        time_fit, memory_fit = power_fit(ns, seconds), power_fit(ns, memory)
        out[key] = {
            "n": ns,
            "seconds": seconds,
            "peak_delta_mib": memory,
            "cpu_seconds": cpu,
            "time_fit": time_fit,
            "memory_fit": memory_fit,
            "cpu_fit": power_fit(ns, cpu),  # less sensitive than wall time to other processes on the machine
            "projected_seconds": project(time_fit, target_n),
            "projected_seconds_linear": seconds[-1] * target_n / ns[-1],
            "projected_delta_mib": project(memory_fit, target_n),
            "projected_delta_mib_linear": memory[-1] * target_n / ns[-1],
            "superlinear_time": bool(time_fit and time_fit["b"] > threshold),
            "superlinear_memory": bool(memory_fit and memory_fit["b"] > threshold),
        }
    return out


# --------------------------------------------------------------------------------------------------- report


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "nproc": affinity,
        "cpu_count": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": psutil.virtual_memory().total / 2**30,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "matgl_hybrid": matgl_hybrid.__version__,
    }


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _memory(mib: float | None) -> str:
    if mib is None:
        return "n/a"
    return f"{mib / 1024:.1f} GiB" if abs(mib) >= 1024 else f"{mib:.0f} MiB"


def _b(f: dict[str, Any] | None) -> str:
    return "n/a" if f is None else f"{f['b']:.2f}"


def write_report(
    runs: list[dict[str, Any]], out: Path, command: str, threshold: float, measured_on: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Write ``scale.{json,md,png}`` into ``out`` from the per-size records; returns the summary. ``measured_on``:
    the machine the records were measured on (a rebuilt report's, from the earlier ``scale.json``), else this one."""
    runs = sorted(runs, key=lambda r: r["n"])
    fits = analyse(runs, threshold)
    largest = runs[-1]
    info = dict(measured_on) if measured_on else machine()
    info["torch_threads"] = largest["torch_threads"]
    info["device"] = largest["device"]
    flagged = [k for k, f in fits.items() if f["superlinear_time"] or f["superlinear_memory"]]
    disturbed = sorted(
        {(r["n"], k) for r in runs for k in STAGES if r["stages"][k]["foreign_cpu_share"] > DISTURBED},
    )
    summary = {
        "command": command,
        "machine": info,
        "seed": largest["seed"],
        "n_jobs": largest["n_jobs"],
        "target_n": TARGET_N,
        "target_task": TARGET_TASK,
        "superlinear_threshold": threshold,
        "superlinear": flagged,
        "disturbed": [{"n": n, "stage": k} for n, k in disturbed],
        "sizes": [r["n"] for r in runs],
        "fits": fits,
        "runs": runs,
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "scale.json", json.dumps(summary, indent=1) + "\n")

    ns = [r["n"] for r in runs]
    header = "| stage | " + " | ".join(f"N = {n:,}" for n in ns) + " |"
    rule = "|---|" + "---:|" * len(ns)

    def row(stage: str, cells) -> str:
        return f"| {STAGES[stage]} | " + " | ".join(cells) + " |"

    time_rows = [
        row(k, (f"{s:.1f} s ({s / n * 1000:.1f} ms/str.)" for s, n in zip(f["seconds"], ns, strict=True)))
        for k, f in fits.items()
    ]
    memory_rows = [
        row(
            k,
            (
                f"+{_memory(r['stages'][k]['peak_delta_mib'])} (peak {_memory(r['stages'][k]['peak_rss_mib'])})"
                for r in runs
            ),
        )
        for k in fits
    ]
    cpu_rows = [
        row(
            k,
            (
                f"{r['stages'][k]['cpu_seconds']:.1f} s, {r['stages'][k]['cores_used']:.2f} / "
                f"{r['stages'][k]['foreign_cpu_share']:.0%}"
                for r in runs
            ),
        )
        for k in fits
    ]
    fit_rows = []
    for k, f in fits.items():
        local = f["time_fit"]["local_b"] if f["time_fit"] else []
        flag = []
        if f["superlinear_time"]:
            flag.append("**time superlinear**")
        if f["superlinear_memory"]:
            flag.append("**memory superlinear**")
        fit_rows.append(
            f"| {STAGES[k]} | {_b(f['time_fit'])} | {', '.join(f'{x:.2f}' for x in local) or 'n/a'} | "
            f"{_b(f['cpu_fit'])} | "
            f"{_duration(f['projected_seconds'])} | {_duration(f['projected_seconds_linear'])} | "
            f"{_b(f['memory_fit'])} | {_memory(f['projected_delta_mib'])} | "
            f"{_memory(f['projected_delta_mib_linear'])} | {', '.join(flag) or 'linear'} |"
        )
    pool = largest["pool_stats"]
    graph_note = "; ".join(
        f"N = {r['n']:,}: {r['graphs']['mean_sites']:.1f} sites, {r['graphs']['edges_per_structure']:.0f} edges"
        for r in runs
    )
    fit_stage = largest["stages"]["fit"]
    lines = [
        "# Scaling with N: featurize, graphs, one training epoch, prediction",
        "",
        f"Command: `{command}` (each size in a fresh subprocess; per-size records `scale.n<size>.json`).",
        "",
        f"Machine: {info['cpu']}, nproc {info['nproc']}, {info['memory_gib']:.0f} GiB RAM, torch threads "
        f"{info['torch_threads']} (device: {info['device']}), n_jobs {largest['n_jobs']}; Python {info['python']}, "
        f"torch {info['torch']}, matgl-hybrid {info['matgl_hybrid']}.",
        "",
        "Data: the union of "
        + ", ".join(f"`{k}` ({v['records']} records, {v['new_ids']} new ids)" for k, v in pool.items())
        + f", deduplicated by id: {largest['selection']['pool']} structures; sizes are the first N valid ones of one "
        f"permutation (seed {largest['seed']}), so each set contains the smaller ones. Mean structure per size: "
        f"{graph_note} (5 Å graph). Fit target: volume per atom (any target costs the same). Structures per source "
        f"at N = {largest['n']:,}: "
        + ", ".join(f"{k} {v}" for k, v in largest["selection"].get("sources", {}).items())
        + " (per-structure costs differ by source: matbench_jdft2d's layered cells with vacuum featurize ≈ 10× "
        "slower than the bulk crystals, so small random subsets carry sampling noise in their mix).",
        "",
        "Stages, each timed separately in the same process: `featurize(..., 'gong28', n_jobs, cache_dir=<empty "
        "dir>)` (workers started beforehand, untimed); `build_dataset` (all N, with the transformed descriptors); "
        "`fit(TrainSpec(max_epochs=1, accelerator='cpu'))` on the warm cache (descriptors from the cache, graphs of "
        "the training and validation split, one epoch, one validation pass); the training epoch alone (a Lightning "
        "callback, inside `fit`); `model.predict(structures, cache_dir=<warm cache>)`.",
        "",
        "## Wall time",
        "",
        header,
        rule,
        *time_rows,
        "",
        f"At N = {largest['n']:,}, `fit` spent {fit_stage['before_epoch_seconds']:.1f} s before its "
        f"epoch (descriptors from the cache, transform, graphs) and {fit_stage['validation_seconds']:.1f} s "
        "validating.",
        "",
        "CPU: CPU time of the process and its workers, the cores it kept busy on average / the share of the "
        "machine's cores other processes used meanwhile (a disturbed timing when large; CPU time suffers less):",
        "",
        header,
        rule,
        *cpu_rows,
        "",
        (
            f"**Disturbed** (other processes > {DISTURBED:.0%} of the machine): "
            + "; ".join(
                f"N = {n:,}: "
                + (
                    "all stages"
                    if all((n, k) in disturbed for k in STAGES)
                    else ", ".join(STAGES[k] for k in STAGES if (n, k) in disturbed)
                )
                for n in dict.fromkeys(n for n, _ in disturbed)
            )
            + ". Those timings are inflated: rerun on a quiet machine (`--resume` keeps the clean sizes once their "
            "disturbed `scale.n<size>.json` are deleted)."
            if disturbed
            else f"No stage was disturbed (other processes ≤ {DISTURBED:.0%} of the machine throughout)."
        ),
        "",
        "## Peak memory",
        "",
        "Peak RSS of the process plus its child processes (joblib workers) during the stage, minus that RSS at the "
        "stage's start (after `gc.collect()` and `malloc_trim`); in brackets the absolute peak. RSS sums count "
        "pages shared between the workers and the parent twice.",
        "",
        header,
        rule,
        *memory_rows,
        "",
        f"Descriptor cache on disk: {largest['cache']['bytes_per_structure'] / 1024:.1f} KiB per structure "
        f"({largest['cache']['files']} files at N = {largest['n']:,}): "
        f"{_memory(largest['cache']['bytes_per_structure'] * TARGET_N / MIB)} at N = {TARGET_N:,}.",
        "",
        f"## Growth exponents and projection to N = {TARGET_N:,} ({TARGET_TASK})",
        "",
        f"time ≈ a·N^b and memory ≈ a·N^b, least squares in log-log over N = {', '.join(f'{n:,}' for n in ns)}; "
        f"local b between consecutive sizes; b (CPU time) is the same fit of the CPU seconds of the process and its "
        f"workers; b (time) or b (memory) > {threshold} is flagged superlinear. 'linear' projections scale the "
        "largest size's value by N. Projections assume the same mix of structure sizes (matbench_mp_e_form's "
        "structures differ) and that the constant start-up costs stay negligible.",
        "",
        "| stage | b (time) | local b | b (CPU time) | time at 132,752 (fit) | (linear) | b (memory) "
        "| memory at 132,752 (fit) | (linear) | verdict |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---|",
        *fit_rows,
        "",
        (
            f"Superlinear (b > {threshold}): **{', '.join(STAGES[k] for k in flagged)}**."
            if flagged
            else f"No stage grows faster than N^{threshold} in time or memory."
        ),
        "",
        "![scaling](scale.png)",
        "",
    ]
    atomic_write_text(out / "scale.md", "\n".join(lines))
    plot(fits, out / "scale.png", threshold)
    return summary


def plot(fits: dict[str, dict[str, Any]], path: Path, threshold: float) -> None:
    """Time and memory per stage against N (log-log): measured, fitted a·N^b, and the projection to ``TARGET_N``."""
    fig, axes = panels(2, size=(6.4, 4.8))
    for ax in axes:
        ax.set_xscale("log")
        ax.set_yscale("log")
    for ax, value, fit_key, projected, unit in (
        (axes[0], "seconds", "time_fit", "projected_seconds", axis_label("wall time", "s")),
        (
            axes[1],
            "peak_delta_mib",
            "memory_fit",
            "projected_delta_mib",
            axis_label("peak memory above stage start", "MiB"),
        ),
    ):
        labels = []
        for key, f in fits.items():
            ns, ys = np.asarray(f["n"], dtype=float), np.asarray(f[value], dtype=float)
            positive = ys > 0
            style = "--" if key == "epoch" else "-"
            ax.plot(ns[positive], ys[positive], "o", color=COLORS[key])
            fitted = f[fit_key]
            label = f"{STAGES[key]}: b = {_b(fitted)}"
            if fitted is None:
                ax.plot(ns[positive], ys[positive], style, color=COLORS[key], label=label)
                continue
            if fitted["b"] > threshold:
                label += " (superlinear)"
            measured, beyond = np.geomspace(ns.min(), ns.max(), 20), np.geomspace(ns.max(), TARGET_N, 20)
            ax.plot(measured, fitted["a"] * measured ** fitted["b"], style, color=COLORS[key], lw=1.2, label=label)
            ax.plot(beyond, fitted["a"] * beyond ** fitted["b"], ":", color=COLORS[key], lw=1.2)
            ax.plot([TARGET_N], [f[projected]], "*", color=COLORS[key], ms=12)
            labels.append((f[projected], _duration(f[projected]) if value == "seconds" else _memory(f[projected])))
        ax.set_xlim(right=TARGET_N * 3)
        _spread_labels(ax, TARGET_N, labels)
        ax.axvline(TARGET_N, color="#999999", ls=":", lw=1)
        ax.text(
            TARGET_N,
            0.02,
            f"{TARGET_TASK} \nN = {TARGET_N:,} ",
            fontsize=7,
            color="#666666",
            ha="right",
            va="bottom",
            transform=ax.get_xaxis_transform(),
        )
        ax.set_xlabel(axis_label("N", "structures"))
        ax.set_ylabel(unit)
        ax.grid(True, which="both", alpha=0.2)
        ax.legend(fontsize=7, loc="upper left")
    axes[0].set_title("time: measured (dots), a·N^b fit (dotted beyond the data), ★ projection", fontsize=10)
    axes[1].set_title("memory: measured (dots), a·N^b fit (dotted beyond the data), ★ projection", fontsize=10)
    save(fig, path)


def _spread_labels(ax: Axes, x: float, labels: list[tuple[float, str]]) -> None:
    """Write each ``(y, text)`` right of ``(x, y)``, moved up where needed so that no two are closer than
    :data:`LABEL_GAP_PT` (projections of similar size would print on top of each other)."""
    ax.autoscale_view()
    to_points = 72 / ax.figure.dpi
    heights = [ax.transData.transform((x, y))[1] * to_points for y, _ in labels]
    last = -np.inf
    for i in np.argsort(heights):
        placed = max(heights[i], last + LABEL_GAP_PT)
        y, text = labels[i]
        offset = (6, placed - heights[i])
        ax.annotate(text, (x, y), textcoords="offset points", xytext=offset, fontsize=7, va="center")
        last = placed


# ------------------------------------------------------------------------------------------------------ main


def _command() -> str:
    script = Path(sys.argv[0]).resolve()
    with contextlib.suppress(ValueError):
        script = script.relative_to(ROOT)
    return shlex.join(["python", str(script), *sys.argv[1:]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,4000,all", help="comma-separated N; 'all' is the whole valid pool")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-jobs", type=int, default=2, help="descriptor workers (featurize and fit)")
    parser.add_argument("--data-dir", default=str(SHARED))
    parser.add_argument(
        "--matbench",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="add the two Matbench files to the pool (needed to reach ~10k)",
    )
    parser.add_argument("--out", default=str(RESULTS), help="folder of scale.{md,json,png} and scale.n<size>.json")
    parser.add_argument("--superlinear", type=float, default=1.15, help="flag a growth exponent above this")
    parser.add_argument("--resume", action="store_true", help="keep sizes whose scale.n<size>.json exists")
    parser.add_argument("--report-only", action="store_true", help="rebuild the report from scale.n<size>.json")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: measure this one size, write --worker-out
    parser.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        atomic_write_text(Path(args.worker_out), json.dumps(run_size(args.worker, args), indent=1) + "\n")
        return

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    labels = [s.strip() for s in args.sizes.split(",") if s.strip()]
    for label in labels:
        if label != "all" and not (label.isdigit() and int(label) >= 10):
            parser.error(f"--sizes: {label!r} is neither an integer >= 10 nor 'all'")
    settings = {"seed": args.seed, "n_jobs": args.n_jobs, "matbench": args.matbench}
    runs = []
    start = time.perf_counter()
    for label in labels:
        path = out / f"scale.n{label}.json"
        if args.report_only or (args.resume and path.exists()):
            record = json.loads(path.read_text())
            if any(record[k] != v for k, v in settings.items()) and not args.report_only:
                raise SystemExit(f"{path} was measured with other settings; delete it or drop --resume")
            print(f"N={label}: from {path}")
            runs.append(record)
            continue
        print(f"N={label}: fresh subprocess", flush=True)
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", label, "--worker-out", str(path)]
        command += ["--seed", str(args.seed), "--n-jobs", str(args.n_jobs), "--data-dir", args.data_dir]
        command += ["--matbench" if args.matbench else "--no-matbench"]
        env = {**os.environ, "TQDM_DISABLE": "1"}  # MatGL's graph building draws a progress bar
        subprocess.run(command, check=True, env=env)
        runs.append(json.loads(path.read_text()))
        print(f"N={runs[-1]['n']}: done in {runs[-1]['total_seconds']:.0f} s", flush=True)
    if not args.report_only:
        print(f"all sizes in {time.perf_counter() - start:.0f} s")
    command, measured_on = _command(), None
    if args.report_only and (earlier := out / "scale.json").is_file():  # the measurement's command and machine
        recorded = json.loads(earlier.read_text())
        command, measured_on = recorded["command"], recorded["machine"]
    summary = write_report(runs, out, command, args.superlinear, measured_on)
    for key, f in summary["fits"].items():
        print(
            f"{key}: b(time) = {_b(f['time_fit'])}, b(memory) = {_b(f['memory_fit'])}; at N = {TARGET_N:,}: "
            f"{_duration(f['projected_seconds'])}, +{_memory(f['projected_delta_mib'])}"
            + (" SUPERLINEAR" if f["superlinear_time"] or f["superlinear_memory"] else "")
        )
    print(f"wrote {out / 'scale.md'}, {out / 'scale.json'}, {out / 'scale.png'}")


if __name__ == "__main__":
    main()
