"""Rebuild the embedded de Jong 2015 elasticity demo dataset from matminer 0.4.0's source archive on PyPI."""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pandas as pd
from pymatgen.io.vasp.inputs import Poscar

MATMINER_VERSION = "0.4.0"
CSV_MEMBER = f"matminer-{MATMINER_VERSION}/matminer/datasets/elastic_tensor.csv"
TARGETS = ("K_VRH", "G_VRH", "poisson_ratio", "elastic_anisotropy")
EXPECTED_RECORDS = 1181
DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "matgl_hybrid" / "datasets" / "de_jong_2015_elasticity.json.gz"
#: sha256 of the shipped file. A rebuild that differs (another pymatgen's ``as_dict``) would change every structure
#: key and run fingerprint that reads the set: it replaces the shipped file only with ``--replace-shipped``.
SHIPPED_SHA256 = "13915d7aad31f9afdfe9ef001658d95de55ede47b634ee964cc63a290ba44bd0"


def download_sdist(dest: Path) -> Path:
    """Download the matminer source archive into ``dest`` with pip and return its path."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-binary",
        ":all:",
        "--no-deps",
        f"matminer=={MATMINER_VERSION}",
        "-d",
        str(dest),
    ]
    subprocess.run(cmd, check=True)
    archives = sorted(dest.glob(f"matminer-{MATMINER_VERSION}.tar.gz"))
    if not archives:
        raise FileNotFoundError(f"pip download left no matminer-{MATMINER_VERSION}.tar.gz in {dest}")
    return archives[0]


def read_csv(sdist: Path) -> pd.DataFrame:
    """Read ``elastic_tensor.csv`` from the sdist, as matminer 0.4.0's own loader does (``comment="#"``)."""
    with tarfile.open(sdist, "r:gz") as tar:
        try:
            member = tar.extractfile(CSV_MEMBER)
        except KeyError:
            raise FileNotFoundError(f"{sdist.name} has no {CSV_MEMBER}") from None
        if member is None:
            raise FileNotFoundError(f"{CSV_MEMBER} in {sdist.name} is not a regular file")
        with member:
            return pd.read_csv(member, comment="#")


def to_records(df: pd.DataFrame) -> list[dict]:
    """Convert CSV rows to records; structures come from the ``poscar`` column, as in matminer 0.4.0."""
    records = []
    for row in df.itertuples(index=False):
        record = {
            "id": str(row.material_id),
            "formula": str(row.formula),
            "structure": Poscar.from_str(row.poscar).structure.as_dict(),
        }
        record.update({name: float(getattr(row, name)) for name in TARGETS})
        records.append(record)
    ids = [r["id"] for r in records]
    if len(records) != EXPECTED_RECORDS or len(set(ids)) != len(ids):
        raise ValueError(f"expected {EXPECTED_RECORDS} unique ids, got {len(records)} rows / {len(set(ids))} unique")
    return records


def write_gzip_json(records: list[dict], output: Path, expected_sha256: str | None = None) -> bytes:
    """Write ``records`` as deterministic gzipped JSON (mtime 0, no file name) atomically; return the bytes. With
    ``expected_sha256``, bytes of another digest are not written (SystemExit naming both)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    payload = json.dumps(records).encode()
    fd, tmp_name = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
            gz.write(payload)
        os.chmod(tmp_name, 0o644)
        digest = hashlib.sha256(Path(tmp_name).read_bytes()).hexdigest()
        if expected_sha256 is not None and digest != expected_sha256:
            raise SystemExit(f"the rebuilt dataset has sha256 {digest}, the shipped {output.name} {expected_sha256}: "
                             "not written (--replace-shipped writes it, changing every key that reads it)")  # fmt: skip
        os.replace(tmp_name, output)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return output.read_bytes()


def main(argv: list[str] | None = None) -> None:
    """Download (or reuse) the sdist, convert the CSV and write the dataset."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="output .json.gz path")
    parser.add_argument("--sdist", type=Path, help="use this matminer-0.4.0.tar.gz instead of downloading it")
    parser.add_argument("--replace-shipped", action="store_true", help="write over the shipped file though it differs")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        sdist = args.sdist or download_sdist(Path(tmp))
        records = to_records(read_csv(sdist))
    shipped = args.output.resolve() == DEFAULT_OUTPUT and not args.replace_shipped
    data = write_gzip_json(records, args.output, SHIPPED_SHA256 if shipped else None)
    print(f"wrote {len(records)} records to {args.output}")
    print(f"sha256 {hashlib.sha256(data).hexdigest()}")


if __name__ == "__main__":
    main()
