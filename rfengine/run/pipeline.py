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

import hashlib
import json
import math
import shutil
import sys
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from tqdm.auto import tqdm
from typing_extensions import Unpack

from rfengine.aggregation.compute import score_ranges
from rfengine.aggregation.reliability import merge_pair_counts, reliability, split_half_summary
from rfengine.aggregation.result import AggregationResult
from rfengine.aggregation.trust import TrustEstimate, evidence
from rfengine.errors import InputError, Rejection
from rfengine.ingest import Images, ReadStats, read_images
from rfengine.ingest.columns import KEPT
from rfengine.ingest.formats import check_readable, table_format
from rfengine.ingest.responses import ResponseReader
from rfengine.options import AggregateOptions, Engine, OptionArgs
from rfengine.run.stages import (
    Plan,
    aggregate_partition,
    bounds_stage,
    partition_responses,
    trust_stage,
    write_partition,
)
from rfengine.schema import CRITERIA
from rfengine.store import (
    WorkDir,
    check_target,
    finalize_dataset,
    finalize_targets,
    reporting_work_folder,
    write_rejections,
)
from rfengine.store.manifest import build_manifest, describe_input, run_fingerprint

#: bytes of memory one response row costs while a partition is aggregated (Arrow columns,
#: sort and numpy copies, annotator strings), measured with benchmarks/ingest.py
ROW_BYTES = 1000
#: copies of a partition's heatmaps alive at once, at most: the maps (the splat casts them
#: into one block per size, ``result.Heatmaps``), an Arrow slice and a shard where rows are
#: not consecutive in a block (else both are views), plus the previous partition's maps,
#: which the writer thread is still writing
HEAT_COPIES = 4
#: rough bytes per JSONL or CSV row, to estimate a file's rows from its size
TEXT_ROW_BYTES = 110
FORMAT = "rfengine-work/2"


def _estimate_rows(path: Path) -> int:
    if table_format(path) == "parquet":
        import pyarrow.parquet as pq

        try:
            return pq.ParquetFile(path).metadata.num_rows
        except (pa.ArrowException, OSError):
            return 0  # parse_file reports it properly
    return path.stat().st_size // TEXT_ROW_BYTES + 1


def min_memory_budget(images: Images, options: AggregateOptions) -> int:
    """The smallest memory budget that can aggregate ``images`` at ``options``' grid: one
    image of the largest grid's float32 splat output and its cast copy, which no batching
    can split."""
    if options.heatmap_size is not None:
        pixels = options.heatmap_size[0] * options.heatmap_size[1]
    else:
        pixels = int((images.width * images.height).max()) if len(images) else 0
    return pixels * (4 + options.itemsize)


def check_budget(images: Images, options: AggregateOptions) -> None:
    """Refuse up front a run whose largest image cannot fit the memory budget, rather than
    attempt it (an InputError naming the image and what would fit)."""
    need = min_memory_budget(images, options)
    if need > options.memory_budget:
        k = int(np.argmax(images.width * images.height))
        grid = options.heatmap_size or (int(images.height[k]), int(images.width[k]))
        raise InputError(
            f"image {images.ids[k]!r} needs {need / 2**20:.1f} MiB for one heatmap at "
            f"{grid[0]}x{grid[1]}, over the memory budget of "
            f"{options.memory_budget / 2**20:.1f} MiB: raise --memory-budget to at least "
            f"{math.ceil(need / 2**20)}MB or choose a smaller --heatmap-size"
        )


def plan_partitions(images: Images, rows: int, options: AggregateOptions) -> int:
    """Images per partition, so that a partition's rows and heatmaps fit the budget."""
    half = max(1, options.memory_budget // 2)
    n = len(images)
    if options.heatmap_size is None:
        pixels = int((images.width * images.height).max()) if n else 1
    else:
        pixels = options.heatmap_size[0] * options.heatmap_size[1]
    heat_per_image = 2 * pixels * options.itemsize  # both kinds, held until written
    by_heat = max(1, half // (HEAT_COPIES * heat_per_image))
    parts_by_rows = max(1, math.ceil(rows * ROW_BYTES / half))
    by_rows = max(1, math.ceil(n / parts_by_rows))
    return max(1, min(by_heat, by_rows, n))


# ------------------------------------------------------------------------------ stages


@dataclass(frozen=True)
class Inputs:
    """The read stage's inputs, checked: the images table and the responses files."""

    images: Images
    responses: list[Path]

    @property
    def paths(self) -> list[Path]:
        """Every input file, the images table first (when it came from a file)."""
        return ([self.images.source] if self.images.source else []) + self.responses


def open_inputs(
    images: str | Path | Images,
    responses: str | Path | Sequence[str | Path],
    allow_outside_paths: bool = False,
) -> Inputs:
    """Read the images table (its image files checked, see ``read_images``) and check every
    responses file is readable, before long work."""
    paths = (
        [Path(responses)] if isinstance(responses, (str, Path)) else [Path(p) for p in responses]
    )
    imgs = (
        images
        if isinstance(images, Images)
        else read_images(images, allow_outside_paths=allow_outside_paths)
    )
    for p in paths:
        check_readable(p)
    return Inputs(imgs, paths)


def aggregate(
    images: str | Path | Images,
    responses: str | Path | Sequence[str | Path],
    options: AggregateOptions | None = None,
    *,
    allow_outside_paths: bool = False,
    progress: bool = False,
    **args: Unpack[OptionArgs],
) -> AggregationResult:
    """Aggregate responses into scores, word scores and heatmaps, in memory.

    The same stages as ``aggregate_to_disk`` (read -> validate -> aggregate) on a single
    partition, held in memory; write the result with ``rfengine.save_output``. For inputs
    larger than memory, ``aggregate_to_disk`` (the CLI's path) streams them partition by
    partition, with identical results.

    Args:
        images: images table path (JSONL, CSV, Parquet) or a loaded ``Images``.
        responses: one or more responses files in the interchange format.
        options: an ``AggregateOptions``; or give its fields as keywords (``preset``,
            ``heatmap_size="512x512"``, ``device``, ``dtype``, ``on_error``, ``weights``,
            ``memory_budget="1GB"``), which override ``options``.
        allow_outside_paths: let the images table name files outside its own folder
            (refused by default: see ``read_images``).
        progress: progress bars on stderr.

    Returns:
        An ``AggregationResult``.

    Example:
        >>> import rfengine
        >>> result = rfengine.aggregate("images.jsonl", "responses.jsonl")  # doctest: +SKIP
        >>> rfengine.save_output(result, "out/")  # doctest: +SKIP
    """
    opts = AggregateOptions.create(options, **args)
    t0 = time.perf_counter()
    inp = open_inputs(images, responses, allow_outside_paths)
    check_budget(inp.images, opts)
    reader = ResponseReader(inp.responses, inp.images, opts.on_error)
    rejected: list[Rejection] = []
    rows = pa.concat_tables(list(reader.chunks(rejected.extend)))
    read_s = time.perf_counter() - t0
    part, dupes = aggregate_partition(reader, rows, inp.images, 0, len(inp.images), opts, progress)
    return replace(
        part,
        stats=reader.stats.merge(part.stats),
        rejected=sorted(rejected + dupes, key=lambda r: r.order),
        timings={"read": read_s, **part.timings},
        inputs=inp.paths,
    )


def image_files_fingerprint(images: Images) -> str:
    """A digest of the image files the dataset embeds: path, size and modification time of
    each (a file replaced or edited changes it), so that ``resume`` never mixes old and
    new image bytes."""
    h = hashlib.sha256()
    for p in images.paths:
        if p is not None:
            st = p.stat()
            h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def aggregate_to_disk(
    images: str | Path,
    responses: str | Path | Sequence[str | Path],
    out: str | Path,
    options: AggregateOptions | None = None,
    *,
    overwrite: bool = False,
    resume: bool = False,
    allow_outside_paths: bool = False,
    progress: bool = False,
    engine: str | Engine = "local",
    **args: Unpack[OptionArgs],
) -> dict[str, Any]:
    """Aggregate any amount of responses into ``out`` with bounded memory; returns the manifest.

    The stages of ``aggregate`` (read -> validate -> partition -> aggregate -> write ->
    publish) over as many partitions as ``memory_budget`` needs; results are identical to
    ``save_output(aggregate(...), out)``. Options as for ``aggregate``. With
    ``resume=True``, finished stages of an interrupted run with the same inputs (tables by
    sha256, embedded image files by size and modification time) and options are reused;
    otherwise, or when any of those changed, the run starts over and says why.
    One run at a time per ``out`` (a lock beside it); a failed run says where its work
    folder is. ``engine``: ``"local"`` (default) or ``"ray"`` / an ``Engine`` (a Ray
    cluster, see ``rfengine.run.ray``), with identical outputs.
    """
    opts = AggregateOptions.create(options, **args)
    eng = engine if isinstance(engine, Engine) else Engine.create(engine)
    out = Path(out)
    check_target(out, overwrite)
    with WorkDir(out) as work, reporting_work_folder(work):
        return _aggregate_to_disk(
            images,
            responses,
            work,
            opts,
            overwrite,
            resume,
            allow_outside_paths,
            _Say(progress),
            eng,
        )


def _aggregate_to_disk(
    images: str | Path,
    responses: str | Path | Sequence[str | Path],
    work: WorkDir,
    opts: AggregateOptions,
    overwrite: bool,
    resume: bool,
    allow_outside_paths: bool,
    say: _Say,
    engine: Engine,
) -> dict[str, Any]:
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    inp = open_inputs(images, responses, allow_outside_paths)
    check_budget(inp.images, opts)
    inputs = [describe_input(p) for p in inp.paths]
    key = {
        "format": FORMAT,
        "inputs": inputs,
        "image_files": image_files_fingerprint(inp.images),
        "config": opts.to_json(),
    }
    state = work.load()
    if resume and state is not None and state.get("key") == key:
        say(f"resuming from {work.dir}")
    else:
        if state is not None or work.dir.exists():
            if not resume:
                why = "pass --resume to reuse it"
            elif state is None:
                why = "it recorded no progress"
            else:
                old = state.get("key", {})
                changed = [k for k in ("inputs", "image_files", "config") if old.get(k) != key[k]]
                names = {"inputs": "input tables", "image_files": "image files"}
                why = f"its {', '.join(names.get(k, k) for k in changed) or 'format'} changed"
            say(f"discarding an unfinished earlier run in {work.dir} ({why})")
        work.fresh()
        state = {"key": key, "partitioned": False, "parts": {}}
        work.save(state)
    timings["hash"] = time.perf_counter() - t0

    imgs = inp.images
    reader = ResponseReader(inp.responses, imgs, opts.on_error)
    n_img = len(imgs)
    if not state["partitioned"]:
        rows_est = sum(_estimate_rows(p) for p in inp.responses)
        state["per_part"] = plan_partitions(imgs, rows_est, opts)
    plan = Plan(n_img, state["per_part"])
    if engine.name == "ray":
        from rfengine.run.ray import run_on_ray

        trust = run_on_ray(reader, work, imgs, opts, state, say, timings, engine)
    else:
        trust = _run_local(reader, work, imgs, opts, state, say, timings)
    stats = ReadStats(state["read_stats"])
    pairs: dict[str, list] = {c: [] for c in CRITERIA}
    timings["reduce"] = timings["splat"] = 0.0
    for p in range(plan.count):
        done = state["parts"][str(p)]
        timings["reduce"] += done["timings"]["reduce"]
        timings["splat"] += done["timings"]["splat"]
        for c in CRITERIA:
            pairs[c].append({int(m): v for m, v in done["rating_pairs"][c].items()})
        stats = stats.merge(ReadStats(done["stats"]))

    t0 = time.perf_counter()
    ready = work.dir / "ready"
    shutil.rmtree(ready, ignore_errors=True)
    ready.mkdir()
    say("writing the dataset")
    n_rows = n_shards = None
    if "dataset" in opts.outputs:
        parts = [work.dir / "dataset-parts" / f"part-{p:05d}.arrow" for p in range(plan.count)]
        n_rows = finalize_dataset(parts, ready / "dataset", run_fingerprint(inputs, opts))
    if "targets" in opts.outputs:
        entries = [e for p in range(plan.count) for e in state["parts"][str(p)]["targets"]]
        n_shards = len(finalize_targets(entries, work.dir / "shards", ready / "targets"))
    rejected_files = [work.dir / "rejected-read.jsonl"] + [
        work.dir / f"rejected-part-{p:05d}.jsonl" for p in range(plan.count)
    ]
    if trust is not None:
        shutil.copyfile(work.dir / "annotators.parquet", ready / "annotators.parquet")
    if stats.rejected:
        with (ready / "rejected.jsonl").open("wb") as fh:
            for f in rejected_files:
                if f.exists():
                    with f.open("rb") as src:
                        shutil.copyfileobj(src, fh)
    timings["finalize"] = time.perf_counter() - t0
    manifest = build_manifest(
        inputs,
        opts,
        stats,
        timings,
        n_img,
        n_rows,
        n_shards,
        {
            **reliability({c: merge_pair_counts(p) for c, p in pairs.items()}),
            **split_half_summary(_split_half(work, plan.count) if opts.reliability else {}),
        },
        trust=None if trust is None else trust.summary(),
    )
    manifest["partitions"] = {"count": plan.count, "images_per_partition": plan.per_part}
    manifest["run"]["engine"] = engine.name
    (ready / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    work.publish(ready, overwrite)
    return manifest


def _run_local(
    reader: ResponseReader,
    work: WorkDir,
    imgs: Images,
    opts: AggregateOptions,
    state: dict[str, Any],
    say: _Say,
    timings: dict[str, float],
) -> TrustEstimate | None:
    """The read, estimate and aggregate stages on this machine: partitions in Arrow files in
    the work folder, computed one after another while a writer thread writes the previous
    one. Fills ``state`` (``read_stats``, ``parts``) and ``timings``; returns the trust
    estimate, if any."""
    plan = Plan(len(imgs), state["per_part"])
    if not state["partitioned"]:
        t0 = time.perf_counter()
        state["read_stats"] = _partition(reader, work, plan, say).files
        state["partitioned"] = True
        state["read_s"] = time.perf_counter() - t0
        work.save(state)
    timings["read_partition"] = state["read_s"]
    trust = None
    if opts.weights == "estimate":
        t0 = time.perf_counter()
        trust = _trust(reader, work, imgs, plan, opts, state, say)
        timings["estimate"] = time.perf_counter() - t0

    def ranges() -> list[dict[str, tuple[float, float]]]:
        return _score_ranges(reader, work, imgs, plan, opts, trust)

    bounds = bounds_stage(state, work.save, opts, ranges)
    t0 = time.perf_counter()
    bar = tqdm(total=plan.n_images, desc="aggregating", unit="img", disable=not say.on)
    shards = 0

    def settle(p: int, done: dict[str, Any]) -> None:
        """Record partition ``p`` as finished (in partition order)."""
        nonlocal shards
        if str(p) not in state["parts"]:
            state["parts"][str(p)] = done
            work.save(state)
        shards += len(done["targets"]) + 1  # target shards and the dataset part
        bar.set_postfix_str(f"{shards} shards written", refresh=False)
        lo, hi = plan.span(p)
        bar.update(hi - lo)

    # partition p + 1 is computed while a writer thread writes partition p's outputs
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rfengine-writer")
    pending: tuple[int, Future] | None = None
    try:
        for p in range(plan.count):
            lo, hi = plan.span(p)
            if str(p) in state["parts"]:
                settle(p, state["parts"][str(p)])
                continue
            result, rejected = _compute_part(reader, work, imgs, p, lo, hi, opts, bounds, trust)
            if pending is not None:
                settle(pending[0], pending[1].result())
            pending = (p, writer.submit(write_partition, work.dir, p, result, rejected, opts))
            del result, rejected
        if pending is not None:
            settle(pending[0], pending[1].result())
    except BaseException:
        # interrupted or failed while computing: the write in flight finishes, and is
        # recorded if it succeeded, so that --resume does not redo it
        writer.shutdown(wait=True)  # at most one write is queued: let it finish
        if pending is not None and str(pending[0]) not in state["parts"]:
            fut = pending[1]
            if fut.exception() is None:
                state["parts"][str(pending[0])] = fut.result()
                work.save(state)
        raise
    finally:
        writer.shutdown(wait=True)
    bar.close()
    timings["aggregate_write"] = time.perf_counter() - t0
    return trust


def _partition(reader: ResponseReader, work: WorkDir, plan: Plan, say: _Say) -> ReadStats:
    """The read, validate and partition stages: stream the responses into partition files.

    Returns the rows read and rejected per file."""
    folder = work.dir / "parts"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    rej_path = work.dir / "rejected-read.jsonl"
    rej_path.write_text("")
    writers: dict[int, pa.ipc.RecordBatchFileWriter] = {}
    bar = tqdm(desc="reading responses", unit=" rows", unit_scale=True, disable=not say.on)
    try:
        for chunk in reader.chunks(lambda rs: write_rejections(rs, rej_path, mode="a")):
            for p, rows in plan.split(chunk):
                w = writers.get(p)
                if w is None:
                    w = writers[p] = pa.ipc.new_file(str(folder / f"part-{p:05d}.arrow"), KEPT)
                w.write_table(rows)
            bar.update(chunk.num_rows)
    finally:
        for w in writers.values():
            w.close()
        bar.close()
    return reader.stats


def _partition_rows(work: WorkDir, p: int) -> pa.Table:
    path = work.dir / "parts" / f"part-{p:05d}.arrow"
    return pa.ipc.open_file(str(path)).read_all() if path.exists() else KEPT.empty_table()


def _score_ranges(
    reader: ResponseReader,
    work: WorkDir,
    imgs: Images,
    plan: Plan,
    options: AggregateOptions,
    trust: TrustEstimate | None = None,
) -> list[dict[str, tuple[float, float]]]:
    """Per partition, each criterion's ``(min, max)`` score."""
    ranges = []
    for p in range(plan.count):
        lo, hi = plan.span(p)
        resp, _ = partition_responses(reader, _partition_rows(work, p), lo, trust)
        ranges.append(score_ranges(imgs.subset(lo, hi), resp, options))
    return ranges


def _split_half(work: WorkDir, n_parts: int) -> dict[str, list[np.ndarray]]:
    """Every partition's per-image split-half reliabilities, per heatmap kind."""
    out: dict[str, list[np.ndarray]] = {}
    for p in range(n_parts):
        with np.load(work.dir / f"split-half-{p:05d}.npz", allow_pickle=False) as f:
            for kind in f.files:
                out.setdefault(kind, []).append(f[kind])
    return out


def _trust(
    reader: ResponseReader,
    work: WorkDir,
    imgs: Images,
    plan: Plan,
    options: AggregateOptions,
    state: dict[str, Any],
    say: _Say,
) -> TrustEstimate:
    """The estimate stage (``weights="estimate"``): every partition's evidence (compact,
    weight-free arrays: ``rfengine.aggregation.trust``), then the fixed point over all of them. Kept
    in the work folder as ``annotators.parquet`` for ``--resume``."""

    def gather() -> list:
        parts = []
        bar = tqdm(range(plan.count), desc="estimating trust", unit="part", disable=not say.on)
        for p in bar:
            lo, hi = plan.span(p)
            resp, _ = partition_responses(reader, _partition_rows(work, p), lo)
            parts.append(evidence(imgs.subset(lo, hi), resp, lo))
        return parts

    return trust_stage(work.dir, state, work.save, options.prior, gather)


def _compute_part(
    reader: ResponseReader,
    work: WorkDir,
    imgs: Images,
    p: int,
    lo: int,
    hi: int,
    options: AggregateOptions,
    norm_bounds: dict[str, tuple[float, float]] | None = None,
    trust: TrustEstimate | None = None,
) -> tuple[AggregationResult, list[Rejection]]:
    """The aggregate stage for partition ``p`` (images ``lo:hi``), from its rows on disk."""
    return aggregate_partition(
        reader,
        _partition_rows(work, p),
        imgs,
        lo,
        hi,
        options,
        norm_bounds=norm_bounds,
        trust=trust,
    )


class _Say:
    """Progress lines on stderr, unless quiet."""

    def __init__(self, on: bool):
        self.on = on

    def __call__(self, msg: str) -> None:
        if self.on:
            print(f"rfengine: {msg}", file=sys.stderr)


__all__ = [
    "Inputs",
    "aggregate",
    "aggregate_partition",
    "aggregate_to_disk",
    "check_budget",
    "min_memory_budget",
    "open_inputs",
    "plan_partitions",
]
