"""Write: the HF dataset, safetensors targets, manifest and rejections, atomically.

Outputs are built partition by partition in a work folder beside ``out`` and published by
one rename, so that no ``out`` ever looks complete before it is.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rfengine.write.dataset import build_table, finalize_dataset, write_dataset_part
from rfengine.write.manifest import build_manifest, sha256
from rfengine.write.targets import finalize_targets, load_targets, write_targets

if TYPE_CHECKING:
    from rfengine.result import AggregationResult

__all__ = [
    "build_table",
    "check_target",
    "finalize_dataset",
    "finalize_targets",
    "load_targets",
    "publish",
    "save_output",
    "sha256",
    "write_dataset_part",
    "write_rejections",
    "write_targets",
]


def check_target(out: Path, overwrite: bool) -> None:
    """Refuse to replace ``out`` unless asked, and never a folder rfengine did not write."""
    if not out.exists():
        return
    if not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    if out.is_dir() and any(out.iterdir()) and not (out / "manifest.json").exists():
        raise FileExistsError(
            f"{out} is a non-empty folder that is not an rfengine output; not replacing it"
        )


def publish(ready: Path, out: Path, overwrite: bool) -> Path:
    """Rename the finished folder ``ready`` to ``out`` (replacing it only with overwrite)."""
    check_target(out, overwrite)
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        out.rename(old)
    ready.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return out


def write_rejections(rejections, path: Path, mode: str = "w") -> None:
    """Append (or write) rejections as JSON lines."""
    with path.open(mode, encoding="utf-8") as fh:
        for rej in rejections:
            fh.write(json.dumps(rej.to_json(), ensure_ascii=False, default=str) + "\n")


def save_output(result: AggregationResult, out: str | Path, *, overwrite: bool = False) -> Path:
    """Write an in-memory result to ``out`` atomically: ``dataset/``, ``targets/``,
    ``manifest.json`` (and ``rejected.jsonl``), through the pipeline's writers as one
    partition. Read it back with ``rfengine.load_output``."""
    out = Path(out)
    check_target(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    ready = work / "ready"
    ready.mkdir(parents=True)
    try:
        t0 = time.perf_counter()
        write_dataset_part(result, work / "part-00000.arrow")
        n_rows = finalize_dataset([work / "part-00000.arrow"], ready / "dataset")
        entries = write_targets(result, work / "shards")
        shards = finalize_targets(entries, work / "shards", ready / "targets")
        if result.rejected:
            write_rejections(result.rejected, ready / "rejected.jsonl")
        result.timings["write"] = time.perf_counter() - t0
        manifest = build_manifest(
            result.inputs,
            result.options,
            result.stats,
            result.timings,
            len(result.images),
            n_rows,
            len(shards),
        )
        (ready / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        publish(ready, out, overwrite)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out
