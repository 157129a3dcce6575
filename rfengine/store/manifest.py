"""``manifest.json``: inputs and their hashes, config, versions, counts and timings.

Two runs on the same inputs with the same options write the same manifest, apart from
the one field ``run`` (when it ran and how long each stage took).
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rfengine.store.work import OUTPUT_FORMAT

if TYPE_CHECKING:
    from rfengine.ingest import ReadStats
    from rfengine.options import AggregateOptions

_PACKAGES = ("rfengine", "torch", "numpy", "pyarrow", "datasets", "safetensors", "pillow")


def sha256(path: Path, chunk: int = 1 << 22) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def versions() -> dict[str, str]:
    """Python and the versions of the packages that shape the results."""
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def build_manifest(
    inputs: list[Path] | list[dict[str, Any]],
    options: AggregateOptions,
    stats: ReadStats,
    timings: dict[str, float],
    *,
    n_images: int,
    n_rows: int | None,
    n_shards: int | None,
    reliability: dict[str, dict[str, float]] | None = None,
    trust: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The manifest's content; ``counts`` satisfies read = used + rejected.

    ``inputs`` are paths (hashed here) or ``{"path", "bytes", "sha256"}`` records.
    """
    records = [describe_input(p) if isinstance(p, Path) else p for p in inputs]
    return {
        "format": OUTPUT_FORMAT,
        "run": {
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "timings_s": {k: round(v, 4) for k, v in timings.items()},
        },
        "inputs": records,
        "config": options.to_json(),
        "versions": versions(),
        "counts": {
            "images": n_images,
            "rows_read": stats.read,
            "rows_used": stats.used,
            "rows_rejected": stats.rejected,
            "files": stats.files,
        },
        "reliability": reliability or {},
        "trust": trust,
        "outputs": {
            "dataset": None if n_rows is None else {"path": "dataset", "rows": n_rows},
            "targets": None if n_shards is None else {"path": "targets", "shards": n_shards},
            "annotators": None if trust is None else {"path": "annotators.parquet"},
            "rejected": {
                "path": "rejected.jsonl" if stats.rejected else None,
                "rows": stats.rejected,
            },
        },
    }


def run_fingerprint(inputs: list[dict[str, Any]], options: AggregateOptions) -> str:
    """16 hex digits naming a run's content: its inputs' hashes, its options and rfengine's
    version (the dataset's ``_fingerprint``: the same for the same run, unlike a random one)."""
    key = {
        "inputs": [{k: r[k] for k in ("bytes", "sha256")} for r in inputs],
        "config": options.to_json(),
        "rfengine": versions()["rfengine"],
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def describe_input(path: Path) -> dict[str, Any]:
    """``{"path", "bytes", "sha256"}`` of an input file; of a folder (an images dataset), the
    total bytes and the SHA-256 of its files' relative paths and SHA-256s, in path order."""
    if not path.is_dir():
        return {"path": str(path), "bytes": path.stat().st_size, "sha256": sha256(path)}
    files = sorted(p for p in path.rglob("*") if p.is_file())
    h = hashlib.sha256()
    for p in files:
        h.update(f"{p.relative_to(path).as_posix()}\0{sha256(p)}\n".encode())
    return {
        "path": str(path),
        "bytes": sum(p.stat().st_size for p in files),
        "sha256": h.hexdigest(),
    }
