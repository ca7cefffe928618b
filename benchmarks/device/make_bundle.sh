#!/usr/bin/env bash
# Build .devshared/, the git-ignored bundle that a GPU machine without network needs to run benchmark units
# (benchmarks/README.md, "Preparing a GPU machine"). Run here, from anywhere in the repository:
#
#     nice -n 19 bash benchmarks/device/make_bundle.sh [UNITS.txt]     # default: benchmarks/units/pretrained_backbones.txt
#
# then, on the GPU machine (device tool, carry=[".devshared"]):
#
#     COMMIT=<commit> WORKERS=4 DEADLINE=480 START_BY=200 bash benchmarks/device/go.sh
#
# .devshared/ holds
#   site312.tar.xz   this project's dependencies that the GPU image lacks, installed for CPython 3.12 x86-64 (the
#                    image's python3) from the versions installed here, pruned of what nothing imports, xz-compressed
#   data/            the dataset files of ../shared/data that the units name (DATA=all: every one), byte for byte
#                    (the Matbench runner checks their sha256 where it reads them)
#   cache.tar.xz     the descriptor cache's entries (CACHE_DIR's content; go.sh unpacks it into
#                    $MATGL_HYBRID_CACHE/descriptors)
#   units.txt        the unit list, a copy of UNITS.txt (units_source.txt: its path, which go.sh compares)
#   MANIFEST.txt     what went in: commit, package pins, sizes
#
# Everything that travels (tracked + untracked-not-ignored files + .devshared) must stay under 64 MiB: the script
# prints the total and fails above it. Environment: PYTHON (default python), DATA_SRC (default ../shared/data),
# DATA=all, CACHE_DIR (default: the package's descriptor_cache_dir()), XZ_OPT (default -9), KEEP_WORK=1.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
UNITS=${1:-benchmarks/units/pretrained_backbones.txt}
PY=${PYTHON:-python}
DATA_SRC=${DATA_SRC:-$ROOT/../shared/data}
BUNDLE=.devshared
LIMIT=$((64 * 1024 * 1024))
export XZ_OPT=${XZ_OPT:--9}

[[ -f $UNITS ]] || { echo "no units file $UNITS" >&2; exit 2; }
[[ -d $DATA_SRC ]] || { echo "no data folder $DATA_SRC (set DATA_SRC)" >&2; exit 2; }

# The packages to carry: this project's dependencies and theirs (pyproject.toml, `pip show`) that the GPU image's
# python3 lacks (/work/.library/device/KINDS.md, "Python packages already there": torch, torch-geometric, lightning,
# numpy, scipy, pandas, scikit-learn, matplotlib, safetensors, joblib, tqdm, h5py, lxml, networkx, sympy, requests,
# typing-extensions, huggingface-hub, narwhals, nvidia-ml-py, ... are there). Left out on purpose: boto3, botocore,
# s3transfer, jmespath (matgl requires boto3 but never imports it), pymongo, dnspython (matminer's MongoDB retrieval
# only), dask (the `cluster` extra only). matbench is installed with --no-deps here too (see README).
PACKAGES=(
    matgl chgnet matcalc matminer matbench pymatgen pymatgen-core monty ruamel-yaml ase spglib
    phonopy phonors symfc pydantic pydantic-core annotated-types typing-inspection orjson palettable plotly
    uncertainties bibtexparser torchdata nvidia-ml-py3
)
PLATFORMS=(
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64
)
TARGET=(--python-version 3.12 --implementation cp "${PLATFORMS[@]}" --only-binary=:all:)
# What nothing here imports (paths in the installed tree): tests, stray top-level folders of some wheels, the
# CHGNet weights other than 0.3.0 (the only model used, descriptors/uip.py), plotly's JavaScript bundles,
# matminer's transport and optical databases (read only by TransportData / OpticalData), pynvml.py of
# nvidia-ml-py3 (the image's newer nvidia-ml-py provides pynvml; chgnet imports only nvidia_smi).
PRUNE=(
    bin share build docs scripts test matbench/tests ase/test
    chgnet/pretrained/0.2.0 chgnet/pretrained/r2scan
    plotly/labextension plotly/package_data/plotly.min.js plotly/package_data/widgetbundle.js
    matminer/utils/data_files/mp_transport/transport_database.tar.xz
    matminer/utils/data_files/optical_polyanskiy/database.tar.xz
    pynvml.py
)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/devshared.XXXXXX")
if [[ ${KEEP_WORK:-0} == 1 ]]; then echo "work folder kept: $WORK"; else trap 'rm -rf "$WORK"' EXIT; fi
STAGE=$WORK/bundle
mkdir -p "$WORK/wheels" "$WORK/built" "$STAGE/data"

echo "== pins (versions installed here, $($PY --version 2>&1))"
PINS=()
for name in "${PACKAGES[@]}"; do
    version=$($PY -c "from importlib.metadata import version; print(version('$name'))" 2>/dev/null) ||
        { echo "$name is not installed here: install the project first (make install)" >&2; exit 2; }
    PINS+=("$name==$version")
done
echo "${PINS[*]}"

echo "== wheels for CPython 3.12, manylinux x86-64"
for pin in "${PINS[@]}"; do
    if ! $PY -m pip download -q --no-deps "${TARGET[@]}" -d "$WORK/wheels" "$pin" >"$WORK/pip.log" 2>&1; then
        # sdist-only releases (matcalc, bibtexparser, nvidia-ml-py3): build the wheel here; it must be pure Python
        $PY -m pip wheel -q --no-deps -w "$WORK/built" "$pin" >"$WORK/pip.log" 2>&1 ||
            { cat "$WORK/pip.log" >&2; echo "no wheel for $pin" >&2; exit 1; }
        echo "built from the sdist: $pin"
    fi
done
for wheel in "$WORK"/built/*.whl; do
    [[ -e $wheel ]] || continue
    [[ $wheel == *-none-any.whl ]] || { echo "not a pure-Python wheel: $wheel" >&2; exit 1; }
    mv "$wheel" "$WORK/wheels/"
done
du -sh "$WORK/wheels"

echo "== installing them into a CPython 3.12 tree, pruning, compressing (xz $XZ_OPT: a few minutes)"
$PY -m pip install -q --no-index --no-deps --no-compile --target "$WORK/site" "${TARGET[@]}" "$WORK"/wheels/*.whl \
    2>&1 | { grep -v -e "^WARNING: Running pip as the 'root' user" -e "^WARNING: Location" || true; }
for path in "${PRUNE[@]}"; do
    rm -rf "${WORK:?}/site/$path"
done
find "$WORK/site" -name __pycache__ -prune -exec rm -rf {} +
du -sh "$WORK/site"
tar -C "$WORK/site" --sort=name --owner=0 --group=0 -cJf "$STAGE/site312.tar.xz" .

echo "== data from $DATA_SRC"
wanted=$(sed 's/#.*//' "$UNITS")
for file in "$DATA_SRC"/*.json.gz; do
    stem=$(basename "$file" .json.gz)
    if [[ ${DATA:-} == all || $wanted == *"$stem"* ]]; then cp -pL "$file" "$STAGE/data/"; fi
done
if [[ ${DATA:-} == all || $wanted == *matbench* ]] && [[ -d $DATA_SRC/matbench ]]; then
    cp -rpL "$DATA_SRC/matbench" "$STAGE/data/"
fi
if [[ -z $(ls -A "$STAGE/data") ]]; then  # no dataset named: take them all rather than none
    cp -rpL "$DATA_SRC"/. "$STAGE/data/"
fi
if [[ -f $DATA_SRC/README.md ]]; then cp -pL "$DATA_SRC/README.md" "$STAGE/data/"; fi
ls -R "$STAGE/data"

CACHE_DIR=${CACHE_DIR:-$($PY -c "from matgl_hybrid.paths import descriptor_cache_dir; print(descriptor_cache_dir())")}
echo "== descriptor cache $CACHE_DIR"
if [[ -d $CACHE_DIR ]]; then
    # a cache being written meanwhile is safe to read: entries are written atomically (temporary files skipped)
    tar -C "$CACHE_DIR" --exclude='*.tmp' --warning=no-file-changed --warning=no-file-removed \
        -cJf "$STAGE/cache.tar.xz" . || [[ $? == 1 ]]
else
    echo "no descriptor cache: the units will compute their descriptors on the GPU machine"
fi

cp "$UNITS" "$STAGE/units.txt"
realpath --relative-to="$ROOT" "$UNITS" >"$STAGE/units_source.txt"  # the tree's path, the same on the GPU machine
{
    echo "built $(date -u +%FT%TZ) at commit $(git rev-parse --short HEAD) from units $UNITS"
    echo "packages (CPython 3.12 manylinux wheels of the versions installed here):"
    printf '  %s\n' "${PINS[@]}"
    echo "pruned from the installed tree: ${PRUNE[*]} __pycache__"
    echo "data: $(cd "$STAGE/data" && find . -type f | sort | tr '\n' ' ')"
    echo "cache: $CACHE_DIR"
} >"$STAGE/MANIFEST.txt"

if [[ -e $BUNDLE && ! -f $BUNDLE/MANIFEST.txt ]]; then  # never delete a folder this script did not build
    echo "make_bundle.sh: $BUNDLE exists and was not built by this script (no MANIFEST.txt): move it away first" >&2
    exit 2
fi
[[ -d $BUNDLE/wheels ]] && cp -r "$BUNDLE/wheels" "$STAGE/wheels"  # extra wheels carried by hand are kept

echo "== sizes"  # checked before the earlier bundle is replaced: a bundle too large to send replaces nothing
du -sh "$STAGE"/* | sed 's/^/  /'
tree=$(git ls-files -z -co --exclude-standard | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
bundle=$(du -sb "$STAGE" | cut -f1)
total=$((tree + bundle))
awk -v t="$tree" -v b="$bundle" -v n="$BUNDLE" \
    'BEGIN { printf "travels: working tree %.1f MiB + %s %.1f MiB = %.1f MiB of 64 MiB\n", t/2^20, n, b/2^20, (t+b)/2^20 }'
if ((total > LIMIT)); then
    echo "TOO LARGE for the device tool: prune more or carry fewer data files ($BUNDLE left as it was)" >&2
    exit 1
fi
rm -rf "$BUNDLE.new"
# a failed copy (a full disk) keeps the old bundle, removes its own half, and fails
cp -r "$STAGE" "$BUNDLE.new" || { rm -rf "$BUNDLE.new"; echo "copying the bundle failed ($BUNDLE left as it was)" >&2; exit 1; }
rm -rf "$BUNDLE" && mv "$BUNDLE.new" "$BUNDLE"
git check-ignore -q "$BUNDLE/units.txt" || echo "WARNING: $BUNDLE is not git-ignored (add it to .gitignore)" >&2
