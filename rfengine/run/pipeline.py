"""The public entry points: ``aggregate`` (in memory) and ``aggregate_to_disk`` (any size).

``aggregate_to_disk`` runs one ``Run`` (``state.py``) through three steps:

1. **Start** (``_start``): the inputs hashed; an unfinished earlier run with the same
   inputs and options taken up (``resume=True``) or discarded, saying why; the partitions
   planned from the memory budget (``plan.py``).
2. **Stages**, by one of two engines over the same stage functions (``stages.py``): this
   process (``local.py``) or Ray tasks (``ray.py``): read and partition, estimate trust,
   norm bounds, aggregate and write each partition, recording progress after each.
3. **Finish** (``_finish``): the dataset parts concatenated (memory-mapped), shards
   renumbered, rejections joined, the manifest written and the output published by one
   rename (``store.save.publish``, as ``save_output`` does).

Peak memory is set by ``memory_budget`` (partition size, splat buffers), not by the input
size. Everything happens in a work folder beside OUT (``store.work``).
"""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from typing_extensions import Unpack

from rfengine.aggregation.reliability import merge_pair_counts, reliability, split_half_summary
from rfengine.aggregation.result import AggregationResult
from rfengine.aggregation.trust import TrustEstimate
from rfengine.errors import InputError, Rejection
from rfengine.ingest import Images, ReadStats, read_images
from rfengine.ingest.formats import check_readable
from rfengine.ingest.responses import ResponseReader
from rfengine.options import AggregateOptions, Engine, OptionArgs
from rfengine.run.local import run_local
from rfengine.run.plan import Plan, check_budget, estimate_rows, plan_partitions
from rfengine.run.stages import aggregate_partition
from rfengine.run.state import FORMAT, Run, RunState, Say
from rfengine.schema import CRITERIA
from rfengine.store import (
    WorkDir,
    check_target,
    finalize_dataset,
    finalize_targets,
    keep_for_resume,
)
from rfengine.store.manifest import build_manifest, describe_input, run_fingerprint
from rfengine.store.save import publish

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
    seen: dict[Path, Path] = {}
    for p in paths:
        check_readable(p)
        same = seen.setdefault(p.resolve(), p)
        if same is not p:
            raise InputError(f"{p}: given twice as a responses file (also as {same})")
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
    part, dupes = aggregate_partition(
        reader, rows, inp.images, 0, len(inp.images), opts, progress=progress
    )
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
    # every check that needs no responses comes before anything is written
    check_target(out, overwrite)
    if eng.name == "ray":
        from rfengine.run.ray import require_ray, run_on_ray

        require_ray()
    inp = open_inputs(images, responses, allow_outside_paths)
    check_budget(inp.images, opts)
    with WorkDir(out) as work, keep_for_resume(work):
        run = _start(work, inp, opts, resume=resume, say=Say(progress))
        trust = run_on_ray(run, eng) if eng.name == "ray" else run_local(run)
        return _finish(run, inp, trust, engine=eng, overwrite=overwrite)


def _start(work: WorkDir, inp: Inputs, opts: AggregateOptions, *, resume: bool, say: Say) -> Run:
    """Hash the inputs and take up an unfinished earlier run with the same ones (``resume``)
    or start over, saying why; plan the partitions."""
    t0 = time.perf_counter()
    key = {
        "format": FORMAT,
        "inputs": [describe_input(p) for p in inp.paths],
        "image_files": image_files_fingerprint(inp.images),
        "config": opts.to_json(),
    }
    state = RunState.load(work)
    if resume and state is not None and state.key == key:
        say(f"resuming from {work.dir}")
    else:
        if state is not None or work.dir.exists():
            if not resume:
                why = "pass --resume to reuse it"
            elif state is None:
                why = "it recorded no progress"
            else:
                changed = [
                    k for k in ("inputs", "image_files", "config") if state.key.get(k) != key[k]
                ]
                names = {"inputs": "input tables", "image_files": "image files"}
                why = f"its {', '.join(names.get(k, k) for k in changed) or 'format'} changed"
            say(f"discarding an unfinished earlier run in {work.dir} ({why})")
        work.fresh()
        state = RunState(key=key)
        state.save(work)
    if not state.partitioned:
        rows_est = sum(estimate_rows(p) for p in inp.responses)
        state.per_part = plan_partitions(inp.images, rows_est, opts)
    reader = ResponseReader(inp.responses, inp.images, opts.on_error)
    plan = Plan(len(inp.images), state.per_part)
    run = Run(work, reader, inp.images, opts, plan, state, say)
    run.timings["hash"] = time.perf_counter() - t0
    return run


def _finish(
    run: Run, inp: Inputs, trust: TrustEstimate | None, *, engine: Engine, overwrite: bool
) -> dict[str, Any]:
    """The finalise stage: every partition's parts joined into the output, its manifest
    written, and the output published."""
    work, files, plan, opts, timings = run.work, run.work.files, run.plan, run.options, run.timings
    stats = ReadStats(run.state.read_stats)
    pairs: dict[str, list] = {c: [] for c in CRITERIA}
    timings["reduce"] = timings["splat"] = 0.0
    for p in range(plan.count):
        done = run.state.parts[p]
        timings["reduce"] += done["timings"]["reduce"]
        timings["splat"] += done["timings"]["splat"]
        for c in CRITERIA:
            pairs[c].append({int(m): v for m, v in done["rating_pairs"][c].items()})
        stats = stats.merge(ReadStats(done["stats"]))

    t0 = time.perf_counter()
    ready = files.ready
    shutil.rmtree(ready, ignore_errors=True)
    ready.mkdir()
    run.say("writing the dataset")
    inputs = run.state.key["inputs"]
    n_rows = n_shards = None
    if "dataset" in opts.outputs:
        parts = [files.dataset_part(p) for p in range(plan.count)]
        n_rows = finalize_dataset(parts, ready / "dataset", run_fingerprint(inputs, opts))
    if "targets" in opts.outputs:
        entries = [e for p in range(plan.count) for e in run.state.parts[p]["targets"]]
        n_shards = len(finalize_targets(entries, files.shards, ready / "targets"))
    rejected_files = [files.rejected_read] + [files.rejected_part(p) for p in range(plan.count)]
    if trust is not None:
        shutil.copyfile(files.annotators, ready / "annotators.parquet")
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
        n_images=len(run.images),
        n_rows=n_rows,
        n_shards=n_shards,
        reliability={
            **reliability({c: merge_pair_counts(p) for c, p in pairs.items()}),
            **split_half_summary(_split_half(run) if opts.reliability else {}),
        },
        trust=None if trust is None else trust.summary(),
    )
    manifest["partitions"] = {"count": plan.count, "images_per_partition": plan.per_part}
    manifest["run"]["engine"] = engine.name
    publish(work, manifest, overwrite)
    return manifest


def _split_half(run: Run) -> dict[str, list[np.ndarray]]:
    """Every partition's per-image split-half reliabilities, per heatmap kind."""
    out: dict[str, list[np.ndarray]] = {}
    for p in range(run.plan.count):
        with np.load(run.work.files.split_half(p), allow_pickle=False) as f:
            for kind in f.files:
                out.setdefault(kind, []).append(f[kind])
    return out


__all__ = ["Inputs", "aggregate", "aggregate_to_disk", "open_inputs"]
