"""The streaming aggregation on a Ray cluster (``engine="ray"``, ``--engine ray``).

The same stages and code as the local engine, scheduled by Ray instead of a loop:

1. **Read**: one task per responses file parses and validates it with the local reader
   (so line numbers, fields and messages are the local ones) and splits its valid rows by
   image-range partition; each partition's piece is a separate return value, held in Ray's
   object store, so rows reach their partition through Ray's own data movement (no shared
   temporary folder). With ``on_error="fail"`` the first bad row of the first file that has
   one is raised, as locally.
2. **Estimate** (``weights="estimate"``) and **norm bounds** (``rapidata-2025``): one task
   per partition returns its compact evidence or its score ranges; the driver combines them.
3. **Aggregate**: one task per partition (requesting ``gpus_per_task`` GPUs) gathers its
   pieces, aggregates and writes its dataset part and target shards into the work folder,
   which every node must see (a shared filesystem path), and returns its record.
4. The driver records each finished partition in ``progress.json`` as it completes (so
   ``--resume`` skips it), then finalises and publishes ``OUT`` exactly as locally.

Tasks that die (a lost node, a killed worker) are retried by Ray (``MAX_RETRIES``); bad
input is not retried. Ctrl-C cancels the outstanding tasks and publishes nothing. A resumed
run reads the inputs again (the object store does not outlive the driver) and recomputes
only the partitions not recorded as finished.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import torch
from tqdm.auto import tqdm

from rfengine.aggregation.compute import score_ranges
from rfengine.aggregation.trust import TrustEstimate, evidence
from rfengine.errors import InputError
from rfengine.ingest import Images
from rfengine.ingest.columns import KEPT
from rfengine.ingest.responses import ResponseReader
from rfengine.options import AggregateOptions, Engine
from rfengine.run.stages import (
    Plan,
    aggregate_partition,
    bounds_stage,
    partition_responses,
    trust_stage,
    write_partition,
)
from rfengine.store import write_rejections

if TYPE_CHECKING:
    from rfengine.store import WorkDir

#: retries of a task whose worker died (Ray's own mechanism)
MAX_RETRIES = 3


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise InputError(
            "--engine ray needs Ray: pip install 'rfengine[ray]' (or pip install 'ray[data]')"
        ) from None
    return ray


def start(engine: Engine) -> bool:
    """Connect to ``engine.address`` or start a local Ray runtime, unless this process is
    already connected. Returns whether this call started it (and should stop it)."""
    ray = _ray()
    if ray.is_initialized():
        return False
    ray.init(
        address=engine.address,
        include_dashboard=False,
        logging_level="WARNING",
        log_to_driver=True,
    )
    return True


def _unwrap(ray: Any, exc: BaseException) -> BaseException:
    """A task's own InputError or OSError, as raised on this machine, instead of Ray's
    wrapper (so that the CLI prints its one line)."""
    cause = getattr(exc, "cause", None)
    if isinstance(exc, ray.exceptions.RayTaskError) and isinstance(cause, (InputError, OSError)):
        return cause
    return exc


# ------------------------------------------------------------------------------ tasks


def _read_file(paths: list[Path], images: Images, on_error: str, fi: int, plan: Plan) -> tuple:
    """Read, validate and split file ``fi``: ``(stats, where, rejections, *pieces)``, one
    Arrow table (schema ``KEPT``) per partition."""
    reader = ResponseReader(paths, images, on_error)
    rejected: list = []
    pieces: list[list[pa.Table]] = [[] for _ in range(plan.count)]
    for chunk in reader.chunks(rejected.extend, files=[fi]):
        for p, rows in plan.split(chunk):
            pieces[p].append(rows)
    tables = [pa.concat_tables(x) if x else KEPT.empty_table() for x in pieces]
    return (reader.stats.files[fi], reader.where[fi], rejected, *tables)


def _reader(paths: list[Path], images: Images, on_error: str, wheres: list) -> ResponseReader:
    reader = ResponseReader(paths, images, on_error)
    reader.where = list(wheres)
    return reader


def _partition_rows(pieces: tuple[pa.Table, ...]) -> pa.Table:
    return pa.concat_tables(pieces) if pieces else KEPT.empty_table()


def _evidence_task(
    paths: list[Path], images: Images, on_error: str, wheres: list, lo: int, hi: int, *pieces
):
    reader = _reader(paths, images, on_error, wheres)
    resp, _ = partition_responses(reader, _partition_rows(pieces), lo)
    return evidence(images.subset(lo, hi), resp, lo)


def _bounds_task(
    paths: list[Path],
    images: Images,
    opts: AggregateOptions,
    wheres: list,
    trust: TrustEstimate | None,
    lo: int,
    hi: int,
    *pieces,
):
    reader = _reader(paths, images, opts.on_error, wheres)
    resp, _ = partition_responses(reader, _partition_rows(pieces), lo, trust)
    return score_ranges(images.subset(lo, hi), resp, opts)


def _aggregate_task(
    paths: list[Path],
    images: Images,
    opts: AggregateOptions,
    wheres: list,
    folder: Path,
    bounds: dict | None,
    trust: TrustEstimate | None,
    on_gpu: bool,
    p: int,
    lo: int,
    hi: int,
    *pieces,
) -> dict[str, Any]:
    if on_gpu and torch.cuda.is_available():
        opts = replace(opts, device=torch.device("cuda"))
    reader = _reader(paths, images, opts.on_error, wheres)
    result, rejected = aggregate_partition(
        reader, _partition_rows(pieces), images, lo, hi, opts, norm_bounds=bounds, trust=trust
    )
    return write_partition(folder, p, result, rejected, opts)


# ------------------------------------------------------------------------------ driver


def run_on_ray(
    reader: ResponseReader,
    work: WorkDir,
    imgs: Images,
    opts: AggregateOptions,
    state: dict[str, Any],
    say: Any,
    timings: dict[str, float],
    engine: Engine,
) -> TrustEstimate | None:
    """The read, estimate and aggregate stages as Ray tasks (see the module docstring).
    Fills ``state`` (``read_stats``, ``parts``) as the local engine does; returns the trust
    estimate, if any."""
    ray = _ray()
    started = start(engine)
    pending: list = []
    try:
        return _run(ray, reader, work, imgs, opts, state, say, timings, engine, pending)
    except BaseException as exc:
        for ref in pending:  # interrupted or failed: stop what is still running
            ray.cancel(ref, force=True)
        raise _unwrap(ray, exc) from None
    finally:
        if started:
            ray.shutdown()


def _run(ray, reader, work, imgs, opts, state, say, timings, engine, pending) -> Any:
    plan = Plan(len(imgs), state["per_part"])
    n_parts = plan.count
    paths, n_files = list(reader.paths), len(reader.paths)
    images = ray.put(imgs)
    t0 = time.perf_counter()
    read = ray.remote(_read_file).options(num_returns=n_parts + 3, max_retries=MAX_RETRIES)
    outs = [read.remote(paths, images, opts.on_error, fi, plan) for fi in range(n_files)]
    pending += [o[0] for o in outs]
    (work.dir / "rejected-read.jsonl").write_text("")
    stats, wheres = [], []
    for fi in tqdm(range(n_files), desc="reading responses", unit="file", disable=not say.on):
        st, where, rejected = ray.get(outs[fi][:3])  # file order: the first error as locally
        write_rejections(rejected, work.dir / "rejected-read.jsonl", mode="a")
        stats.append(st)
        wheres.append(where)
    state["read_stats"] = stats
    work.save(state)
    pieces = [[outs[fi][3 + p] for fi in range(n_files)] for p in range(n_parts)]
    timings["read_partition"] = time.perf_counter() - t0
    span = plan.span

    trust = None
    if opts.weights == "estimate":
        t0 = time.perf_counter()

        def gather() -> list:
            task = ray.remote(_evidence_task).options(max_retries=MAX_RETRIES)
            refs = [
                task.remote(paths, images, opts.on_error, wheres, *span(p), *pieces[p])
                for p in range(n_parts)
            ]
            pending.extend(refs)
            return ray.get(refs)

        trust = trust_stage(work.dir, state, work.save, opts.prior, gather)
        timings["estimate"] = time.perf_counter() - t0
    trust_ref = ray.put(trust)

    def ranges() -> list:
        task = ray.remote(_bounds_task).options(max_retries=MAX_RETRIES)
        refs = [
            task.remote(paths, images, opts, wheres, trust_ref, *span(p), *pieces[p])
            for p in range(n_parts)
        ]
        pending.extend(refs)
        return ray.get(refs)

    bounds = bounds_stage(state, work.save, opts, ranges)
    t0 = time.perf_counter()

    task = ray.remote(_aggregate_task).options(
        max_retries=MAX_RETRIES, num_gpus=engine.gpus_per_task
    )
    todo = {}
    for p in range(n_parts):
        if str(p) not in state["parts"]:
            ref = task.remote(
                paths, images, opts, wheres, work.dir, bounds, trust_ref,
                engine.gpus_per_task > 0, p, *span(p), *pieces[p],
            )  # fmt: skip
            todo[ref] = p
    pending += list(todo)
    bar = tqdm(total=plan.n_images, desc="aggregating", unit="img", disable=not say.on)
    bar.update(sum(span(p)[1] - span(p)[0] for p in range(n_parts) if str(p) in state["parts"]))
    waiting = list(todo)
    while waiting:
        done, waiting = ray.wait(waiting, num_returns=1)
        p = todo[done[0]]
        state["parts"][str(p)] = ray.get(done[0])
        work.save(state)
        bar.update(span(p)[1] - span(p)[0])
    bar.close()
    timings["aggregate_write"] = time.perf_counter() - t0
    return trust


__all__ = ["MAX_RETRIES", "run_on_ray", "start"]
