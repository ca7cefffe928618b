"""The report figures of ``docs/figures/``: the same results drawn by the report code before the figures module
(commit fb3e73f, read with ``git show``) and by today's.

cv: ``matgl-hybrid cv`` on the first 300 structures of the embedded de Jong set (log10 K_VRH, 299 positive), a small
MEGNet with gong28 (``SPEC``); its fold records are resumable in ``benchmarks/results/figures_cv/``. Matbench: the
submission's ``report.png`` at fb3e73f and today. Run from the repository root, in a git checkout:

    python benchmarks/figures_before_after.py
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import math
import shutil
import subprocess
import tempfile
from pathlib import Path

from tasks import V1_SUBMISSION

from matgl_hybrid.cli import main as cli
from matgl_hybrid.datasets import DE_JONG_2015_PATH
from matgl_hybrid.evaluation.folds import FoldStore, pooled_parity

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "figures"
WORK = ROOT / "benchmarks" / "results" / "figures_cv"
BEFORE = "fb3e73f"
#: v1's report.png as the repository held it at BEFORE; today's drawing of the same records is in V1_SUBMISSION.
SUBMISSION_BEFORE = "matbench_submissions/matbench_v0.1_MatGLHybrid/report.png"
SPEC = {
    "backbone_kwargs": {
        "dim_node_embedding": 16,
        "dim_edge_embedding": 16,
        "hidden_layer_sizes_input": [32, 16],
        "hidden_layer_sizes_conv": [32, 32, 16],
        "nblocks": 2,
    },
    "batch_size": 16,
    "clip_descriptors": False,  # as the committed folds ran (before the field existed): today's default clips
    "descriptor_set": "gong28",
    "max_epochs": 30,
    "progress": False,
}


def git_show(path: str) -> bytes:
    """The bytes of ``path`` at commit :data:`BEFORE`."""
    return subprocess.run(["git", "show", f"{BEFORE}:{path}"], cwd=ROOT, check=True, capture_output=True).stdout


def run_cv() -> None:
    """The cv run (finished folds in :data:`WORK` are reused; the derived data and spec live in a temporary folder)."""
    with gzip.open(DE_JONG_2015_PATH, "rt") as f:
        first = json.load(f)[:300]
    rows = [dict(r, log10_K_VRH=math.log10(r["K_VRH"])) for r in first if r["K_VRH"] > 0]
    with tempfile.TemporaryDirectory() as tmp:
        data, spec = Path(tmp) / "dj_logk.json.gz", Path(tmp) / "spec.json"
        with gzip.open(data, "wt") as f:
            json.dump(rows, f)
        spec.write_text(json.dumps(SPEC))
        out = WORK / "cv_out"
        args = ["cv", "--data", str(data), "--target", "log10_K_VRH", "--out", str(out), "--config", str(spec)]
        if cli([*args, "--accelerator", "cpu", "--n-jobs", "1"]) != 0:
            raise SystemExit("the cv run failed")


def cv_before() -> None:
    """The cv figure as the report code of :data:`BEFORE` drew it (its long label, no units), same fold records."""
    with tempfile.TemporaryDirectory() as tmp:
        module = Path(tmp) / "report.py"
        module.write_bytes(git_show("matgl_hybrid/evaluation/report.py"))
        spec = importlib.util.spec_from_file_location("report_before", module)
        old = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(old)
        records = FoldStore(WORK / "cv_out" / "folds").records()
        summary = json.loads((WORK / "cv_out" / "cv.json").read_text())
        y, p = pooled_parity(records)
        label, target = "megnet/extensive/gong28", "log10_K_VRH"
        old.write_report(Path(tmp) / "cv", "Cross-validation", {target: {label: summary}}, {target: ""},
                         {target: (label, y, p)})  # fmt: skip
        shutil.copy(Path(tmp) / "cv.png", OUT / "cv_before.png")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    run_cv()
    cv_before()
    shutil.copy(WORK / "cv_out" / "cv.png", OUT / "cv_after.png")
    (OUT / "matbench_report_before.png").write_bytes(git_show(SUBMISSION_BEFORE))
    shutil.copy(V1_SUBMISSION / "report.png", OUT / "matbench_report_after.png")
    print(f"wrote {', '.join(sorted(p.name for p in OUT.glob('*.png')))} in {OUT}")


if __name__ == "__main__":
    main()
