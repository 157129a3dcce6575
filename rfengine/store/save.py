"""Saving an in-memory result (``save_output``), and the rejections and annotators files.

Outputs are built in a work folder beside ``out`` (``work.py``) and published by one
rename, so that no ``out`` ever looks complete before it is.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rfengine.aggregation.reliability import reliability, split_half_summary
from rfengine.store.dataset import finalize_dataset, write_dataset_part
from rfengine.store.manifest import build_manifest, describe_input, run_fingerprint
from rfengine.store.targets import finalize_targets, write_targets
from rfengine.store.work import WorkDir, check_target

if TYPE_CHECKING:
    from rfengine.aggregation.result import AggregationResult
    from rfengine.aggregation.trust import TrustEstimate

__all__ = ["publish", "save_output", "write_annotators", "write_rejections"]


def write_rejections(rejections, path: Path, mode: str = "w") -> None:
    """Append (or write) rejections as JSON lines: valid JSON whatever the row held (a
    non-finite number as its text; text that is not Unicode, such as a lone surrogate, as
    its ``\\uXXXX`` escape, which JSON readers turn back into the same string)."""
    with path.open(mode, encoding="utf-8", errors="backslashreplace") as fh:
        for rej in rejections:
            text = json.dumps(rej.to_json(), ensure_ascii=False, default=str, allow_nan=False)
            fh.write(text + "\n")


def write_annotators(trust: TrustEstimate, path: Path) -> None:
    """``annotators.parquet``: one row per annotator (``TrustEstimate.table``)."""
    import pyarrow.parquet as pq

    pq.write_table(trust.table(), path)


def publish(work: WorkDir, manifest: dict[str, Any], overwrite: bool) -> None:
    """The last step of every output, in memory or streamed: its manifest written into the
    work folder's ready output, which is then renamed to OUT (``WorkDir.publish``)."""
    (work.files.ready / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    work.publish(work.files.ready, overwrite)


def save_output(result: AggregationResult, out: str | Path, *, overwrite: bool = False) -> Path:
    """Write an in-memory result to ``out`` atomically: ``dataset/``, ``targets/``,
    ``manifest.json`` (and ``rejected.jsonl``, ``annotators.parquet``), through the pipeline's
    writers as one partition. Read it back with ``rfengine.load_output``."""
    out = Path(out)
    check_target(out, overwrite)
    with WorkDir(out) as work:
        work.fresh()  # the in-memory path has nothing to resume
        try:
            ready = work.files.ready
            ready.mkdir()
            t0 = time.perf_counter()
            inputs = [describe_input(p) for p in result.inputs]
            outputs = result.options.outputs
            n_rows = n_shards = None
            if "dataset" in outputs:
                part = work.dir / "part-00000.arrow"  # one partition
                write_dataset_part(result, part)
                fingerprint = run_fingerprint(inputs, result.options)
                n_rows = finalize_dataset([part], ready / "dataset", fingerprint)
            if "targets" in outputs:
                entries = write_targets(result, work.files.shards)
                shards = finalize_targets(entries, work.files.shards, ready / "targets")
                n_shards = len(shards)
            if result.rejected:
                write_rejections(result.rejected, ready / "rejected.jsonl")
            if result.trust is not None:
                write_annotators(result.trust, ready / "annotators.parquet")
            result.timings["write"] = time.perf_counter() - t0
            manifest = build_manifest(
                inputs,
                result.options,
                result.stats,
                result.timings,
                n_images=len(result.images),
                n_rows=n_rows,
                n_shards=n_shards,
                reliability={
                    **reliability(result.rating_pairs),
                    **split_half_summary({k: [v] for k, v in result.heatmap_reliability.items()}),
                },
                trust=None if result.trust is None else result.trust.summary(),
            )
            publish(work, manifest, overwrite)
        except BaseException:
            work.clear()  # nothing to resume from: leave nothing behind
            raise
    return out
