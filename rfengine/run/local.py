"""The local engine: the run's stages in this process (``engine="local"``, the default).

1. **Read and partition** (``read_partitions``): every responses file is streamed in chunks
   and validated; valid rows go to Arrow IPC files, one per contiguous range of
   images-table rows, so a partition holds every response of its images.
2. **Estimate** (``weights="estimate"``) and **norm bounds** (``rapidata-2025``): one pass
   over the partitions for their compact evidence or score ranges.
3. **Aggregate** (``compute_part``): partition by partition, in images-table order; a
   writer thread writes partition ``p``'s dataset part and target shards while ``p + 1``
   is computed. Each finished partition is recorded in the progress file at once.

The Ray engine (``ray.py``) drives the same stages (``stages.py``) as tasks.
"""

from __future__ import annotations

import shutil
import time
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial

import pyarrow as pa
from tqdm.auto import tqdm

from rfengine.aggregation.compute import score_ranges
from rfengine.aggregation.result import AggregationResult, BlockPool
from rfengine.aggregation.trust import TrustEstimate, evidence
from rfengine.errors import Rejection
from rfengine.ingest import ReadStats
from rfengine.ingest.columns import KEPT
from rfengine.run.stages import (
    aggregate_partition,
    bounds_stage,
    partition_responses,
    trust_stage,
    write_partition,
)
from rfengine.run.state import PartRecord, Run
from rfengine.store import write_rejections


def run_local(run: Run) -> TrustEstimate | None:
    """The read, estimate and aggregate stages on this machine. Fills the run's state
    (``read_stats``, ``parts``) and timings; returns the trust estimate, if any."""
    state, plan = run.state, run.plan
    if not state.partitioned:
        t0 = time.perf_counter()
        state.read_stats = read_partitions(run).files
        state.partitioned = True
        state.read_s = time.perf_counter() - t0
        run.save()
    run.timings["read_partition"] = state.read_s
    trust = None
    if run.options.weights == "estimate":
        t0 = time.perf_counter()
        trust = trust_stage(run, lambda: _evidence(run))
        run.timings["estimate"] = time.perf_counter() - t0
    bounds = bounds_stage(run, lambda: _score_ranges(run, trust))
    t0 = time.perf_counter()
    bar = tqdm(total=plan.n_images, desc="aggregating", unit="img", disable=not run.say.on)
    shards = 0

    def settle(p: int, done: PartRecord) -> None:
        """Record partition ``p`` as finished (in partition order)."""
        nonlocal shards
        if p not in state.parts:
            state.parts[p] = done
            run.save()
        shards += len(done["targets"]) + 1  # target shards and the dataset part
        bar.set_postfix_str(f"{shards} shards written", refresh=False)
        lo, hi = plan.span(p)
        bar.update(hi - lo)

    # partition p + 1 is computed while a writer thread writes partition p's outputs, into
    # the blocks partition p - 1's write gave back
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rfengine-writer")
    pool = BlockPool()
    pending: tuple[int, Future] | None = None
    files = run.work.files
    try:
        for p in range(plan.count):
            if p in state.parts:
                settle(p, state.parts[p])
                continue
            result, rejected = compute_part(run, p, bounds, trust, pool)
            if pending is not None:
                settle(pending[0], pending[1].result())
            write = partial(write_partition, pool=pool)
            pending = (p, writer.submit(write, files, p, result, rejected, run.options))
            del result, rejected
        if pending is not None:
            settle(pending[0], pending[1].result())
    except BaseException:
        # interrupted or failed while computing: the write in flight finishes, and is
        # recorded if it succeeded, so that --resume does not redo it
        writer.shutdown(wait=True)  # at most one write is queued: let it finish
        if pending is not None and pending[0] not in state.parts:
            fut = pending[1]
            if fut.exception() is None:
                state.parts[pending[0]] = fut.result()
                run.save()
        raise
    finally:
        writer.shutdown(wait=True)
    bar.close()
    run.timings["aggregate_write"] = time.perf_counter() - t0
    return trust


def read_partitions(run: Run) -> ReadStats:
    """The read, validate and partition stages: stream the responses into partition files
    (``WorkFiles.rows_file``), rejections into ``WorkFiles.rejected_read``. Returns the
    rows read and rejected per file."""
    files = run.work.files
    folder = files.rows_file(0).parent
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    files.rejected_read.write_text("")
    writers: dict[int, pa.ipc.RecordBatchFileWriter] = {}
    bar = tqdm(desc="reading responses", unit=" rows", disable=not run.say.on)
    try:
        for chunk in run.reader.chunks(
            lambda rs: write_rejections(rs, files.rejected_read, mode="a")
        ):
            for p, rows in run.plan.split(chunk):
                w = writers.get(p)
                if w is None:
                    w = writers[p] = pa.ipc.new_file(str(files.rows_file(p)), KEPT)
                w.write_table(rows)
            bar.update(chunk.num_rows)
    finally:
        for w in writers.values():
            w.close()
        bar.close()
    return run.reader.stats


def partition_rows(run: Run, p: int) -> pa.Table:
    """Partition ``p``'s validated rows, as the read stage wrote them."""
    path = run.work.files.rows_file(p)
    return pa.ipc.open_file(str(path)).read_all() if path.exists() else KEPT.empty_table()


def compute_part(
    run: Run,
    p: int,
    norm_bounds: dict[str, tuple[float, float]] | None = None,
    trust: TrustEstimate | None = None,
    pool: BlockPool | None = None,
) -> tuple[AggregationResult, list[Rejection]]:
    """The aggregate stage for partition ``p``, from its rows on disk (output blocks from
    ``pool`` when given)."""
    lo, hi = run.plan.span(p)
    return aggregate_partition(
        run.reader,
        partition_rows(run, p),
        run.images,
        lo,
        hi,
        run.options,
        norm_bounds=norm_bounds,
        trust=trust,
        regions=run.has_regions,
        pool=pool,
    )


def _score_ranges(run: Run, trust: TrustEstimate | None) -> list[dict[str, tuple[float, float]]]:
    """Per partition, each criterion's ``(min, max)`` score."""
    ranges = []
    for p in range(run.plan.count):
        lo, hi = run.plan.span(p)
        resp, _ = partition_responses(run.reader, partition_rows(run, p), lo, trust)
        ranges.append(score_ranges(run.images.subset(lo, hi), resp, run.options))
    return ranges


def _evidence(run: Run) -> list:
    """Every partition's trust evidence (compact, weight-free arrays:
    ``aggregation.trust``)."""
    parts = []
    bar = tqdm(range(run.plan.count), desc="estimating trust", unit="part", disable=not run.say.on)
    for p in bar:
        lo, hi = run.plan.span(p)
        resp, _ = partition_responses(run.reader, partition_rows(run, p), lo)
        parts.append(evidence(run.images.subset(lo, hi), resp, lo))
    return parts


__all__ = ["compute_part", "partition_rows", "read_partitions", "run_local"]
