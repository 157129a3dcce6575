"""Aggregation of inputs larger than memory: stream, partition by image, aggregate, write.

1. **Read and partition**: every responses file is streamed in chunks and validated
   (``ResponseReader``); valid rows go to Arrow IPC files, one per contiguous range of
   images-table rows. So a partition holds every response of its images (duplicates are
   found within it), and partitions finish in images-table order.
2. **Aggregate**: partition by partition, the in-memory computation (``aggregate.compute``)
   runs on that range of images, and its dataset part and target shards are written.
3. **Finalise**: the dataset parts are concatenated (memory-mapped) and saved with
   ``save_to_disk``, shards renumbered, the manifest written, and the folder renamed to OUT.

Peak memory is set by ``memory_budget`` (partition size, splat buffers), not by the input
size. Everything happens in a work folder beside OUT, with ``progress.json`` recording the
inputs' hashes, the config and the finished stages: ``resume=True`` reuses what an
interrupted run finished when those match.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from tqdm.auto import tqdm

from rfengine.aggregate import DEFAULT_BUDGET, AggregationResult, DType, compute, make_config
from rfengine.ingest import Images, ReadStats, read_images
from rfengine.ingest.formats import check_readable, table_format
from rfengine.ingest.responses import KEPT, ResponseReader
from rfengine.kernels import Preset
from rfengine.write import (
    check_target,
    finalize_dataset,
    finalize_targets,
    publish,
    write_dataset_part,
    write_rejections,
    write_targets,
)
from rfengine.write.manifest import build_manifest, describe_input

#: bytes of memory one response row costs while a partition is aggregated (Arrow columns,
#: sort and numpy copies, annotator strings), measured with benchmarks/ingest.py
ROW_BYTES = 1000
#: copies of a partition's heatmaps alive at once (the maps, a cast, an Arrow slice, a shard)
HEAT_COPIES = 3
#: rough bytes per JSONL or CSV row, to estimate a file's rows from its size
TEXT_ROW_BYTES = 110
FORMAT = "rfengine-work/1"


def _estimate_rows(path: Path) -> int:
    if table_format(path) == "parquet":
        import pyarrow.parquet as pq

        try:
            return pq.ParquetFile(path).metadata.num_rows
        except (pa.ArrowException, OSError):
            return 0  # parse_file reports it properly
    return path.stat().st_size // TEXT_ROW_BYTES + 1


def plan_partitions(images: Images, rows: int, config: dict[str, Any]) -> int:
    """Images per partition, so that a partition's rows and heatmaps fit the budget."""
    budget = config["memory_budget"]
    n = len(images)
    if config["heatmap_size"] == "native":
        pixels = int((images.width * images.height).max()) if n else 1
    else:
        h, w = (int(v) for v in config["heatmap_size"].split("x"))
        pixels = h * w
    item = 2 if config["dtype"] == "float16" else 4
    heat_per_image = 2 * pixels * item  # both kinds, held until the partition is written
    by_heat = max(1, (budget // 2) // (HEAT_COPIES * heat_per_image))
    parts_by_rows = max(1, math.ceil(rows * ROW_BYTES / (budget // 2)))
    by_rows = max(1, math.ceil(n / parts_by_rows))
    return max(1, min(by_heat, by_rows, n))


class _Work:
    """The work folder and its progress file."""

    def __init__(self, out: Path):
        self.dir = out.parent / f".{out.name}.rfengine-work"
        self.file = self.dir / "progress.json"

    def load(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.file.read_text())
        except (OSError, ValueError):
            return None

    def save(self, state: dict[str, Any]) -> None:
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(self.file)


def aggregate_to_disk(
    images: str | Path,
    responses: str | Path | Sequence[str | Path],
    out: str | Path,
    *,
    preset: Preset = "default",
    heatmap_size: str | tuple[int, int] | None = "native",
    device: str = "auto",
    dtype: DType = "float16",
    on_error: Literal["fail", "skip"] = "fail",
    weights: Literal["trust", "uniform"] = "trust",
    memory_budget: str | int = DEFAULT_BUDGET,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Aggregate any amount of responses into ``out`` with bounded memory; returns the manifest.

    Same options and outputs as ``aggregate(...).save(out)``; results are identical. With
    ``resume=True``, finished stages of an interrupted run with the same inputs (by sha256)
    and options are reused.
    """
    out = Path(out)
    config = make_config(preset, heatmap_size, device, dtype, on_error, weights, memory_budget)
    check_target(out, overwrite)
    paths = (
        [Path(responses)] if isinstance(responses, (str, Path)) else [Path(p) for p in responses]
    )
    images_path = Path(images)
    timings: dict[str, float] = {}
    say = _Say(progress)

    t0 = time.perf_counter()
    imgs = read_images(images_path)
    for p in paths:  # fail fast on a missing or broken file, before any long work
        check_readable(p)
    inputs = [describe_input(p) for p in [images_path, *paths]]
    key = {"format": FORMAT, "inputs": inputs, "config": config}
    work = _Work(out)
    state = work.load() if resume else None
    if state is not None and state.get("key") == key:
        say(f"resuming from {work.dir}")
    else:
        if work.dir.exists():
            why = "its inputs or options differ" if resume else "use --resume to reuse it"
            say(f"discarding an unfinished earlier run in {work.dir} ({why})")
            shutil.rmtree(work.dir)
        work.dir.mkdir(parents=True)
        state = {"key": key, "partitioned": False, "parts": {}}
        work.save(state)
    timings["hash"] = time.perf_counter() - t0

    reader = ResponseReader(paths, imgs, on_error)
    n_img = len(imgs)
    if not state["partitioned"]:
        t0 = time.perf_counter()
        rows_est = sum(_estimate_rows(p) for p in paths)
        per_part = plan_partitions(imgs, rows_est, config)
        state.update(_partition(reader, work, per_part, n_img, say))
        state["partitioned"] = True
        state["per_part"] = per_part
        state["read_s"] = time.perf_counter() - t0
        work.save(state)
    timings["read_partition"] = state["read_s"]
    per_part = state["per_part"]
    n_parts = math.ceil(n_img / per_part) if n_img else 0

    t_reduce = t_splat = 0.0
    t0 = time.perf_counter()
    bar = tqdm(total=n_img, desc="aggregating", unit="img", disable=not progress)
    shards_written = 0
    for p in range(n_parts):
        lo, hi = p * per_part, min(n_img, (p + 1) * per_part)
        done = state["parts"].get(str(p))
        if done is None:
            done = _aggregate_part(reader, work, imgs, p, lo, hi, config)
            state["parts"][str(p)] = done
            work.save(state)
        t_reduce += done["timings"]["reduce"]
        t_splat += done["timings"]["splat"]
        shards_written += len(done["targets"]) + 1  # target shards and the dataset part
        bar.set_postfix_str(f"{shards_written} shards written", refresh=False)
        bar.update(hi - lo)
    bar.close()
    timings["reduce"], timings["splat"] = t_reduce, t_splat
    timings["aggregate_write"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    stats = ReadStats([dict(f) for f in state["read_stats"]])
    for p in range(n_parts):
        for fi, (used, rej) in enumerate(state["parts"][str(p)]["counts"]):
            stats.files[fi]["used"] += used
            stats.files[fi]["rejected"] += rej
    ready = work.dir / "ready"
    shutil.rmtree(ready, ignore_errors=True)
    ready.mkdir()
    say("writing the dataset")
    parts = [work.dir / "dataset-parts" / f"part-{p:05d}.arrow" for p in range(n_parts)]
    n_rows = finalize_dataset(parts, ready / "dataset")
    entries = [e for p in range(n_parts) for e in state["parts"][str(p)]["targets"]]
    shards = finalize_targets(entries, work.dir / "shards", ready / "targets")
    rejected_files = [work.dir / "rejected-read.jsonl"] + [
        work.dir / f"rejected-part-{p:05d}.jsonl" for p in range(n_parts)
    ]
    if stats.rejected:
        with (ready / "rejected.jsonl").open("wb") as fh:
            for f in rejected_files:
                if f.exists():
                    with f.open("rb") as src:
                        shutil.copyfileobj(src, fh)
    timings["finalize"] = time.perf_counter() - t0
    manifest = build_manifest(inputs, config, stats, timings, n_img, n_rows, len(shards))
    manifest["partitions"] = {"count": n_parts, "images_per_partition": per_part}
    (ready / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    publish(ready, out, overwrite)
    shutil.rmtree(work.dir, ignore_errors=True)
    return manifest


def _partition(reader: ResponseReader, work: _Work, per_part: int, n_img: int, say: _Say) -> dict:
    """Stream, validate and split the responses into partition files."""
    n_parts = max(1, math.ceil(n_img / per_part))
    folder = work.dir / "parts"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    rej_path = work.dir / "rejected-read.jsonl"
    rej_path.write_text("")
    reader.sink = lambda rs: write_rejections(rs, rej_path, mode="a")
    writers: dict[int, pa.ipc.RecordBatchFileWriter] = {}
    bar = tqdm(desc="reading responses", unit=" rows", unit_scale=True, disable=not say.on)
    try:
        for chunk in reader.chunks():
            part = chunk["image"].to_numpy() // per_part
            order = np.argsort(part, kind="stable")
            chunk, part = chunk.take(pa.array(order)), part[order]
            bounds = np.searchsorted(part, np.arange(n_parts + 1))
            for p in np.flatnonzero(np.diff(bounds)):
                w = writers.get(int(p))
                if w is None:
                    w = writers[int(p)] = pa.ipc.new_file(str(folder / f"part-{p:05d}.arrow"), KEPT)
                w.write_table(chunk.slice(int(bounds[p]), int(bounds[p + 1] - bounds[p])))
            bar.update(chunk.num_rows)
    finally:
        for w in writers.values():
            w.close()
        bar.close()
    return {"read_stats": reader.stats.files}


def _aggregate_part(
    reader: ResponseReader, work: _Work, imgs: Images, p: int, lo: int, hi: int, config: dict
) -> dict:
    """Aggregate images ``lo:hi`` from partition ``p`` and write its outputs."""
    path = work.dir / "parts" / f"part-{p:05d}.arrow"
    rows = pa.ipc.open_file(str(path)).read_all() if path.exists() else KEPT.empty_table()
    rej: list = []
    reader.sink = rej.extend
    # this partition's own counts (the state adds them up, so that a resumed run can too)
    reader.stats = ReadStats(
        [{**f, "read": 0, "used": 0, "rejected": 0} for f in reader.stats.files]
    )
    resp = reader.finish(rows)
    del rows
    resp.image = resp.image - lo
    sub = imgs.subset(lo, hi)
    scores, words, heatmaps, timings = compute(sub, resp, config)
    result = AggregationResult(sub, scores, words, heatmaps, config, reader.stats, row_offset=lo)
    (work.dir / "dataset-parts").mkdir(exist_ok=True)
    write_dataset_part(result, work.dir / "dataset-parts" / f"part-{p:05d}.arrow")
    targets = write_targets(result, work.dir / "shards", tag=f"-p{p:05d}")
    write_rejections(rej, work.dir / f"rejected-part-{p:05d}.jsonl")
    counts = [(f["used"], f["rejected"]) for f in reader.stats.files]
    return {"targets": targets, "counts": counts, "timings": timings}


class _Say:
    """Progress lines on stderr, unless quiet."""

    def __init__(self, on: bool):
        self.on = on

    def __call__(self, msg: str) -> None:
        if self.on:
            print(f"rfengine: {msg}", file=sys.stderr)


__all__ = ["aggregate_to_disk", "plan_partitions"]
