"""``manifest.json``: inputs and their hashes, config, versions, counts and timings."""

from __future__ import annotations

import hashlib
import platform
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rfengine.aggregate import AggregationResult

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


def build_manifest(result: AggregationResult, outputs: dict[str, Any]) -> dict[str, Any]:
    """The manifest's content; ``counts`` satisfies read = used + rejected."""
    stats = result.stats
    return {
        "format": "rfengine-output/1",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "inputs": [
            {"path": str(p), "bytes": p.stat().st_size, "sha256": sha256(p)} for p in result.inputs
        ],
        "config": result.config,
        "versions": versions(),
        "counts": {
            "images": len(result.images),
            "rows_read": stats.read,
            "rows_used": stats.used,
            "rows_rejected": stats.rejected,
            "files": stats.files,
        },
        "timings_s": {k: round(v, 4) for k, v in result.timings.items()},
        "outputs": outputs,
    }
