#!/usr/bin/env bash
# Run a unit list on the GPU machine (no network) from the bundle of benchmarks/device/make_bundle.sh
# (benchmarks/README.md, "Preparing a GPU machine"). Through the device tool, with carry=[".devshared"] and a
# timeout_s of at least DEADLINE + 60 (DEADLINE and START_BY count from this script's start, setup included):
#
#     COMMIT=<commit> WORKERS=4 DEADLINE=480 START_BY=200 bash benchmarks/device/go.sh
#
# COMMIT, required, is the tree's commit as `git rev-parse --short HEAD` gives it, with `-dirty` appended when
# `git diff --quiet HEAD` fails (the copy on the GPU machine has no git metadata); it is recorded with every fold.
# The script refuses a bundle whose unit list is not the tree's file it was built from (rebuild the bundle):
# `bash benchmarks/device/go.sh --check` checks that here, before a machine is started for nothing.
#
# Four units at once: the H200 moved no more structures per second with more (benchmarks/README.md). Every 30 s
# the result files written so far are archived into $OUT/folds.tgz, so a call killed at its time limit still
# returns every unit finished before. The script stops before any unit when torch sees no CUDA device (ALLOW_CPU=1
# runs anyway).
#
# Steps: unpack the dependencies into $SITE (/tmp/site) and put them and the repository on PYTHONPATH, with
# matgl-hybrid's entry points (read from pyproject.toml); unpack the descriptor cache into
# $MATGL_HYBRID_CACHE (/tmp/matgl-hybrid-cache); make ../shared/data point at .devshared/data where it can, and add
# `--data-dir .devshared/data` to the units of scripts that take it; import the committed simulated values once;
# run the units (benchmarks/run_units.py); archive every result file the run wrote (new or changed for git,
# Lightning checkpoints and git-ignored fit folders left out) into $OUT/folds.tgz, the unit logs into
# $OUT/logs.tgz, the descriptor values computed on the machine into $OUT/cache_new.json.gz (after the cache fill,
# even one cut short, and at the end: `matgl-hybrid cache-import cache_new.json.gz` here, then rebuild the bundle,
# and no later call computes them again); print one summary line. UNITS (default .devshared/units.txt) runs another
# list.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$PWD
BUNDLE=.devshared
WORKERS=${WORKERS:-4}
DEADLINE=${DEADLINE:-480}
START_BY=${START_BY:-200}  # a unit started later has too little of DEADLINE left to finish (a 50 % fold: 221 s)
UNITS=${UNITS:-$BUNDLE/units.txt}
OUT=${OUT:-/tmp/go_out}
SITE=${SITE:-/tmp/site}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
t0=$SECONDS

[[ -f $BUNDLE/site312.tar.xz ]] ||
    { echo "no $BUNDLE/site312.tar.xz: build it with benchmarks/device/make_bundle.sh, carry [\"$BUNDLE\"]" >&2; exit 2; }
source_list=$(cat "$BUNDLE/units_source.txt" 2>/dev/null || true)
if [[ $UNITS == "$BUNDLE/units.txt" ]] && { [[ -z $source_list || ! -f $source_list ]] || ! cmp -s "$UNITS" "$source_list"; }; then
    echo "the bundle's unit list is not the tree's ${source_list:-(unrecorded source)}: an older bundle; rebuild it" \
        "(benchmarks/device/make_bundle.sh ${source_list:-UNITS.txt})" >&2
    exit 2
fi
if [[ ${1:-} == --check ]]; then
    echo "the bundle's unit list is the tree's $UNITS"
    exit 0
fi
# worked out here, before the call, and given as text: the copy on the GPU machine has no git metadata, where
# $(git rev-parse …) gives nothing and COMMIT would be "-dirty"
[[ ${COMMIT:-} =~ ^[0-9a-f]{7,40}(-dirty)?$ ]] ||
    { echo "COMMIT must be a commit, given as text: COMMIT=<the output of \$(git rev-parse --short HEAD)\$(git diff" \
        "--quiet HEAD || echo -dirty) run here> (got '${COMMIT:-}')" >&2; exit 2; }
export GO_COMMIT=$COMMIT  # recorded in each fold: which code trained it
[[ $($PY -c 'import sys; print(*sys.version_info[:2], sep=".")') == 3.12 ]] ||
    echo "WARNING: $PY is not CPython 3.12; the bundle's compiled packages are built for 3.12" >&2

untar_xz() {  # archive folder: GNU tar with xz, else Python's tarfile
    if command -v xz >/dev/null; then
        tar -C "$2" -xJf "$1"
    else
        $PY -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2], filter="data")' "$1" "$2"
    fi
}

echo "== dependencies into $SITE"
mkdir -p "$SITE"
untar_xz "$BUNDLE/site312.tar.xz" "$SITE"
if compgen -G "$BUNDLE/wheels/*.whl" >/dev/null; then  # extra wheels carried by hand, if any
    $PY -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$SITE" "$BUNDLE"/wheels/*.whl
fi
# matgl-hybrid itself runs from the repository; its entry points (commands, descriptor sets, the checkpoint
# allowlist) need a dist-info, written here from pyproject.toml
$PY - "$SITE" <<'EOF'
import re, sys, tomllib
from pathlib import Path

project = tomllib.loads(Path("pyproject.toml").read_text())["project"]
version = re.search(r'__version__ = "([^"]+)"', Path("matgl_hybrid/version.py").read_text())[1]
info = Path(sys.argv[1]) / f"matgl_hybrid-{version}.dist-info"
info.mkdir(parents=True, exist_ok=True)
(info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: matgl-hybrid\nVersion: {version}\n")
groups = {"console_scripts": project.get("scripts", {}), **project.get("entry-points", {})}
text = "".join(f"[{g}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) + "\n" for g, eps in groups.items())
(info / "entry_points.txt").write_text(text)
EOF
export PYTHONPATH=$ROOT:$SITE${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg HF_HUB_OFFLINE=1
export GO_WORKERS=$WORKERS  # recorded in each fold (its seconds depend on the units beside it)
# unit lists say `python`: always this $PY, whatever else the image calls python (a wrapper, not a link: a linked
# venv interpreter would look for its pyvenv.cfg beside the link and lose the venv's packages)
mkdir -p /tmp/go_bin && printf '#!/bin/sh\nexec %s "$@"\n' "$(command -v "$PY")" >/tmp/go_bin/python
chmod +x /tmp/go_bin/python && export PATH=/tmp/go_bin:$PATH
# each unit's torch and BLAS share the cores with the other units' (16 threads each would oversubscribe them)
threads=$(($(nproc) / WORKERS))
((threads >= 1)) || threads=1
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$threads} MKL_NUM_THREADS=${MKL_NUM_THREADS:-$threads}

echo "== descriptor cache"
export MATGL_HYBRID_CACHE=${MATGL_HYBRID_CACHE:-/tmp/matgl-hybrid-cache}
mkdir -p "$MATGL_HYBRID_CACHE"
if [[ -f $BUNDLE/cache.tar.xz ]]; then
    mkdir -p "$MATGL_HYBRID_CACHE/descriptors"
    untar_xz "$BUNDLE/cache.tar.xz" "$MATGL_HYBRID_CACHE/descriptors"
fi
echo "$(find "$MATGL_HYBRID_CACHE" -name '*.json' | wc -l) cached structures in $MATGL_HYBRID_CACHE"
cache_marker=$(mktemp /tmp/go_cache_marker.XXXXXX)
sleep 1  # cache files written from now on are newer than the marker

archive_cache() {  # the structures' files written since the bundle's cache was unpacked, as a cache-import archive
    $PY - "$MATGL_HYBRID_CACHE/descriptors" "$cache_marker" "$OUT/cache_new.json.gz" <<'EOF' || true
import gzip, json, os, sys
from pathlib import Path

root, since, out = Path(sys.argv[1]), os.path.getmtime(sys.argv[2]), Path(sys.argv[3])
entries = {}
for path in root.glob("??/*.json"):
    if path.stat().st_mtime > since:
        try:
            entries[path.stem] = json.loads(path.read_text())
        except ValueError:  # being replaced: the next archive has it
            pass
temporary = out.with_name(f".{out.name}")
temporary.write_bytes(gzip.compress(json.dumps({"format": 1, "entries": entries}).encode(), mtime=0))
temporary.replace(out)
print(f"{len(entries)} structures with new descriptor values in {out.name} (here: matgl-hybrid cache-import)")
EOF
}

echo "== data"
# tasks.py reads ../shared/data (MATBENCH_DATA, used by matbench_study.py, has no flag or variable): link it where
# the repository's parent is writable; scripts with --data-dir get it in their unit lines anyway
if [[ ! -e ../shared/data ]]; then
    if mkdir -p ../shared 2>/dev/null && ln -s "$ROOT/$BUNDLE/data" ../shared/data 2>/dev/null; then
        echo "../shared/data -> $ROOT/$BUNDLE/data"
    else
        echo "WARNING: could not link ../shared/data; only units with --data-dir find the data" >&2
    fi
fi
RUN_UNITS=/tmp/go_units.txt
sed -E '/--data-dir/b; /benchmarks\/(accuracy|select_recipe|heterogeneity_wrap|scale)\.py/ s|^([^#]*[^#[:space:]])([[:space:]]*(#.*)?)$|\1 --data-dir .devshared/data\2|' \
    "$UNITS" >"$RUN_UNITS"
cp "$RUN_UNITS" "$OUT/units_run.txt"

echo "== environment check (and the committed simulated values into the cache, for units that read them)"
SIM=0
if grep -qE '^[^#]*(matbench_study|sim:)' "$RUN_UNITS"; then SIM=1; fi
SIM=$SIM $PY - <<'EOF'
import os, sys

sys.path.insert(0, "benchmarks")
import chgnet, matgl, matminer, pymatgen.core, torch  # an import error here stops the run

import tasks

print(f"torch {torch.__version__}, cuda {torch.cuda.is_available()}, matgl {matgl.__version__}")
if not torch.cuda.is_available() and os.environ.get("ALLOW_CPU") != "1":
    sys.exit("torch sees no CUDA device: the units would train on the CPU (ALLOW_CPU=1 runs anyway)")
if os.environ["SIM"] == "1":
    tasks.restore_sim_archives()  # every archive of benchmarks/results/sim_values, once, before the units start
EOF

echo "== descriptor cache filled once per dataset of the accuracy.py units (they then read it side by side)"
$PY - "$RUN_UNITS" <<'EOF' >/tmp/go_prefill.txt
import re, sys
from pathlib import Path

wanted = {}  # dataset -> (data dir, models, tasks), in the list's order
for line in Path(sys.argv[1]).read_text().splitlines():
    line = line.split("#")[0]
    if "benchmarks/accuracy.py" not in line:
        continue
    args = dict(re.findall(r"--(dataset|models|tasks|data-dir) (\S+)", line))
    if "dataset" not in args:
        continue
    data_dir, models, tasks = wanted.setdefault(args["dataset"], (args.get("data-dir", ""), {}, {}))
    models.update(dict.fromkeys(args.get("models", "").split(",")))
    tasks.update(dict.fromkeys(args.get("tasks", "").split(",")))
for dataset, (data_dir, models, tasks) in wanted.items():
    option = f" --data-dir {data_dir}" if data_dir else ""
    targets = f" --tasks {','.join(t for t in tasks if t)}" if all(tasks) else ""
    print(f"benchmarks/accuracy.py --dataset {dataset} --models {','.join(m for m in models if m)}{targets}{option} --prefill-only")
EOF
while read -r -a prefill; do
    echo "  ${prefill[*]}"
    left=$((START_BY - 30 - (SECONDS - t0)))  # a slow prefill may not eat the time every unit needs
    ((left > 0)) || { echo "no time left before START_BY to fill the cache: import cache_new.json.gz here and" \
        "rebuild the bundle with it" >&2; archive_cache; exit 3; }
    timeout "$left" $PY "${prefill[@]}" </dev/null >>"$OUT/prefill.log" 2>&1 ||
        { tail -n 20 "$OUT/prefill.log" >&2; archive_cache; exit 4; }
done </tmp/go_prefill.txt
archive_cache
setup=$((SECONDS - t0))
echo "setup took $setup s"

# DEADLINE and START_BY count from this script's start: what setup took is not the units' time
deadline=$((DEADLINE - setup - 20))  # 20 s left for the last archive
start_by=$((START_BY - setup))
((deadline > 60)) || { echo "setup took $setup s of DEADLINE=$DEADLINE: no time left for units" >&2; exit 3; }
((start_by >= 30)) || { echo "setup took $setup s of START_BY=$START_BY: no unit could start in time" >&2; exit 3; }
echo "== units: $RUN_UNITS, --workers $WORKERS --deadline $deadline --start-by $start_by"
marker=$(mktemp /tmp/go_marker.XXXXXX)
sleep 1  # files written from now on are newer than the marker
list=/tmp/go_results.txt

archive() {  # the result files this run wrote so far into $OUT/folds.tgz (replaced whole), the unit logs too
    if git rev-parse --git-dir >/dev/null 2>&1; then
        # new or modified for git (ignored files, e.g. inner fit folders, are not listed), written by this run
        git status --porcelain=v1 -z --untracked-files=all -- benchmarks/results |
            while IFS= read -r -d '' entry; do
                path=${entry:3}
                if [[ ${entry:0:2} != *D* && $path != *.ckpt && $path != *.tmp && -f $path && $path -nt $marker ]]; then
                    printf '%s\n' "$path"
                fi
            done >"$list.tmp"
    else
        # no git metadata here: what the run wrote, minus checkpoints and the folders .gitignore leaves out
        find benchmarks/results -type f -newer "$marker" ! -name '*.ckpt' ! -name '*.tmp' \
            ! -path '*/inner/fold*/*/fold*/*' ! -path '*/selection/fold*/*/fold*/*' \
            ! -path 'benchmarks/results/probe_work/*' ! -path 'benchmarks/results/ssl_work/*' >"$list.tmp"
    fi
    mv "$list.tmp" "$list"
    # into a temporary file first: a call killed mid-archive keeps the previous, complete one
    tar -czf "$OUT/.folds.tgz" -T "$list" && mv "$OUT/.folds.tgz" "$OUT/folds.tgz"
    { tar -C /tmp -czf "$OUT/.logs.tgz" go_logs && mv "$OUT/.logs.tgz" "$OUT/logs.tgz"; } 2>/dev/null || true
}

stop=/tmp/go_stop_archiver
rm -f "$stop"
(  # every 30 s, and ends within a second of the stop file, between two archives (never mid-tar)
    while true; do
        for _ in {1..30}; do [[ -e $stop ]] && exit 0; sleep 1; done
        archive 2>/dev/null || true
    done
) &
archiver=$!
rc=0
$PY benchmarks/run_units.py "$RUN_UNITS" --workers "$WORKERS" --deadline "$deadline" --start-by "$start_by" \
    --logs /tmp/go_logs 2>&1 | tee "$OUT/run_units.log" || rc=$?
touch "$stop"
wait "$archiver" 2>/dev/null || true  # a second, or the archive under way: never killed mid-archive

echo "== results"
archive
archive_cache
sed 's/^/  /' "$list"
size=$(du -k "$OUT/folds.tgz" 2>/dev/null | cut -f1) || size=0
((size < 16000)) || echo "WARNING: folds.tgz is ${size} KiB; the device tool returns files up to 16 MiB" >&2

outcome=$(tail -n 1 "$OUT/run_units.log")
gpu=$(nvidia-smi -L 2>/dev/null | head -n 1 || true)
echo "SUMMARY: ${outcome:-run_units printed nothing} (run_units rc $rc) | $(wc -l <"$list") result files in folds.tgz" \
    "| ${gpu:-no nvidia-smi} | commit $GO_COMMIT | $((SECONDS - t0)) s in all"
exit "$rc"
