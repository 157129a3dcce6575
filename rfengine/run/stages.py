"""One partition's stages, shared by both engines: aggregate images ``lo:hi`` from rows
that hold all their responses, and write its dataset part and target shards into a work
folder (by the local engine's writer thread, or by a Ray task)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rfengine.aggregation.compute import compute, score_ranges
from rfengine.aggregation.result import AggregationResult, BlockPool, merge_ranges
from rfengine.aggregation.trust import (
    Evidence,
    TrustEstimate,
    concat,
    estimate_trust,
    evidence,
    with_weights,
)
from rfengine.errors import Rejection
from rfengine.ingest import Images, ReadStats, Responses
from rfengine.ingest.responses import Finished, ResponseReader
from rfengine.options import AggregateOptions
from rfengine.run.state import PartRecord, Run
from rfengine.store import write_annotators, write_dataset_part, write_rejections, write_targets
from rfengine.store.work import WorkFiles


def bounds_stage(
    run: Run, gather: Callable[[], list[dict[str, tuple[float, float]]]]
) -> dict[str, tuple[float, float]] | None:
    """The ``rapidata-2025`` preset's min-max norms over the whole run, for both engines:
    recorded in the run's state (``--resume``), else merged from every partition's score
    ranges (``gather()``; cheap: no maps) and recorded. None for the other presets."""
    if run.options.preset == "rapidata-2025" and run.state.norm_bounds is None:
        run.state.norm_bounds = {c: list(v) for c, v in merge_ranges(gather()).items()}
        run.save()
    return {c: tuple(v) for c, v in (run.state.norm_bounds or {}).items()} or None


def partition_responses(
    reader: ResponseReader, rows: pa.Table, lo: int, trust: TrustEstimate | None = None
) -> tuple[Responses, Finished]:
    """A partition's responses, finished (repeats rejected), with images counted from its
    first image ``lo``, and weighing their annotators' estimated trust when given."""
    done = reader.finish(rows)
    resp = replace(done.responses, image=done.responses.image - lo)
    return (resp if trust is None else with_weights(resp, trust)), done


def trust_stage(run: Run, gather: Callable[[], list[Evidence]]) -> TrustEstimate:
    """The estimate stage's bookkeeping, for both engines: the estimate recorded in the
    run's state and kept as the work folder's ``annotators.parquet`` (``--resume``), else
    the fixed point over the partitions' evidence from ``gather()``, written there and
    recorded."""
    path = run.work.files.annotators
    if run.state.trust is not None and path.exists():
        rec = run.state.trust
        return TrustEstimate.from_table(pq.read_table(path), rec["rounds"], rec["converged"])
    trust = estimate_trust(concat(gather()), run.options.prior)
    write_annotators(trust, path)
    run.state.trust = trust.summary()
    run.save()
    return trust


def aggregate_partition(
    reader: ResponseReader,
    rows: pa.Table,
    images: Images,
    lo: int,
    hi: int,
    options: AggregateOptions,
    *,
    progress: bool = False,
    norm_bounds: dict[str, tuple[float, float]] | None = None,
    trust: TrustEstimate | None = None,
    regions: bool | None = None,
    pool: BlockPool | None = None,
) -> tuple[AggregationResult, list[Rejection]]:
    """The aggregate stage on images ``lo:hi``: ``rows`` (validated, schema ``KEPT``) hold
    all their responses. Returns the partition's result, whose ``stats`` count the rows
    it used and the repeats it rejected, and those rejections. ``norm_bounds``: the whole
    run's score ranges, for the ``rapidata-2025`` preset's min-max norms (None: this
    partition is the whole run). ``trust``: the run's estimate (``weights="estimate"``;
    None: estimate it from this partition). ``regions``: whether the run has region
    responses (None: whether these rows have)."""
    resp, done = partition_responses(reader, rows, lo)
    if options.weights == "estimate":
        if trust is None:
            trust = estimate_trust(
                concat([evidence(images.subset(lo, hi), resp, lo)]), options.prior
            )
        resp = with_weights(resp, trust)
    stats = ReadStats.of(reader.paths, done.used, reader.rejected_per_file(done.rejected))
    sub = images.subset(lo, hi)
    if options.preset == "rapidata-2025" and norm_bounds is None:
        norm_bounds = score_ranges(sub, resp, options)
    result = compute(
        sub,
        resp,
        options,
        stats,
        row_offset=lo,
        norm_bounds=norm_bounds,
        progress=progress,
        regions=regions,
        pool=pool,
    )
    return replace(result, trust=trust), done.rejected


def write_partition(
    files: WorkFiles,
    p: int,
    result: AggregationResult,
    rejected: list[Rejection],
    options: AggregateOptions,
    pool: BlockPool | None = None,
) -> PartRecord:
    """The write stage for partition ``p`` into the work folder (in the writer thread, or a
    Ray task); returns its record in the progress file. With ``pool``, the result's output
    blocks go back to it once written (the caller must not use the result after)."""
    targets: list[dict] = []
    if "dataset" in options.outputs:
        files.dataset_part(p).parent.mkdir(exist_ok=True)
        write_dataset_part(result, files.dataset_part(p))
    if "targets" in options.outputs:
        targets = write_targets(result, files.shards, tag=f"-p{p:05d}")
    write_rejections(rejected, files.rejected_part(p))
    if result.heatmap_reliability:
        np.savez(files.split_half(p), **result.heatmap_reliability)
    if pool is not None:
        pool.give(result.heatmaps)
    return {
        "targets": targets,
        "stats": result.stats.files,
        "timings": result.timings,
        "rating_pairs": {
            c: {m: v.tolist() for m, v in p.items()} for c, p in result.rating_pairs.items()
        },
    }


__all__ = [
    "aggregate_partition",
    "bounds_stage",
    "partition_responses",
    "trust_stage",
    "write_partition",
]
