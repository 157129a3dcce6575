"""Write: the HF dataset, safetensors targets, manifest and rejections, atomically."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rfengine.write.dataset import build_table, write_dataset
from rfengine.write.manifest import build_manifest, sha256
from rfengine.write.targets import load_targets, write_targets

if TYPE_CHECKING:
    from rfengine.aggregate import AggregationResult

__all__ = ["build_table", "load_targets", "save_result", "sha256", "write_dataset", "write_targets"]


def _check_target(out: Path, overwrite: bool) -> None:
    if not out.exists():
        return
    if not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    if out.is_dir() and any(out.iterdir()) and not (out / "manifest.json").exists():
        raise FileExistsError(
            f"{out} is a non-empty folder that is not an rfengine output; not replacing it"
        )


def save_result(
    result: AggregationResult, out: Path, *, overwrite: bool = False, progress: bool = False
) -> Path:
    """Write everything into a hidden sibling folder, then rename it to ``out``.

    A failed or interrupted run leaves no ``out`` (and removes its temporary folder when it
    can); an existing ``out`` is replaced only with ``overwrite``, and only at the end.
    """
    out = Path(out)
    _check_target(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        t0 = time.perf_counter()
        n_rows = write_dataset(result, tmp / "dataset", progress=progress)
        shards = write_targets(result, tmp / "targets")
        if result.rejected:
            with (tmp / "rejected.jsonl").open("w", encoding="utf-8") as fh:
                for rej in result.rejected:
                    fh.write(json.dumps(rej.to_json(), ensure_ascii=False, default=str) + "\n")
        result.timings["write"] = time.perf_counter() - t0
        outputs = {
            "dataset": {"path": "dataset", "rows": n_rows},
            "targets": {"path": "targets", "shards": len(shards)},
            "rejected": {
                "path": "rejected.jsonl" if result.rejected else None,
                "rows": len(result.rejected),
            },
        }
        manifest = build_manifest(result, outputs)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        old = None
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            out.rename(old)
        tmp.rename(out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
