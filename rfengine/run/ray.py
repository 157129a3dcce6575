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

import os
import signal
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import torch
from tqdm.auto import tqdm

from rfengine.aggregation.compute import score_ranges
from rfengine.aggregation.trust import Evidence, TrustEstimate, evidence
from rfengine.errors import InputError
from rfengine.ingest import Images
from rfengine.ingest.columns import KEPT
from rfengine.ingest.responses import ResponseReader
from rfengine.options import AggregateOptions, Engine
from rfengine.run.plan import Plan
from rfengine.run.stages import (
    aggregate_partition,
    bounds_stage,
    partition_responses,
    trust_stage,
    write_partition,
)
from rfengine.run.state import PartRecord, Run
from rfengine.store import write_rejections
from rfengine.store.work import WorkFiles

#: retries of a task whose worker died (Ray's own mechanism)
MAX_RETRIES = 3


def require_ray() -> None:
    """An ``InputError`` saying how to install Ray, where it is missing (checked before a
    run writes anything)."""
    _ray()


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


#: command-line marks of the processes a local Ray runtime starts
_RAY_MARKS = ("raylet", "gcs_server", "ray::", "/ray/", "ray/_private", "ray/dashboard")


def _ray_group() -> dict[int, str]:
    """The running Ray processes (by their command lines) of this process's group, by pid
    (Linux ``/proc``; elsewhere none). A local runtime's raylet, GCS and agents stay in the
    group of the process that started them, even once re-parented."""
    found: dict[int, str] = {}
    try:
        group = os.getpgid(0)
    except OSError:
        return found
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if fields[0] == "Z" or int(fields[2]) != group:  # a zombie is already dead
                continue
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
        if any(m in cmd for m in _RAY_MARKS):
            found[int(entry.name)] = cmd
    return found


def _reap(existing: dict[int, str], wait_s: float = 2.0) -> None:
    """After ``ray.shutdown()``: the Ray processes of this group that were not there before
    the run started Ray get ``wait_s`` to exit, then are killed. Agents that a raylet
    interrupted inside ``ray.init`` had just started outlive it otherwise."""
    deadline = time.monotonic() + wait_s
    while True:
        new = {p: c for p, c in _ray_group().items() if existing.get(p) != c}
        if not new or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    for p in new:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass


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


@dataclass(frozen=True)
class ReaderSpec:
    """What a task needs to rebuild the driver's reader: the responses files, the images,
    the error policy and each file's position table from the read stage."""

    paths: list[Path]
    images: Images
    on_error: str
    wheres: list

    def reader(self) -> ResponseReader:
        reader = ResponseReader(self.paths, self.images, self.on_error)
        reader.where = list(self.wheres)
        return reader


@dataclass(frozen=True)
class PartTask:
    """One partition's aggregate task: where it writes, the run's norm bounds, whether it
    runs on a GPU, whether the run has region responses, and its images ``lo:hi``."""

    files: WorkFiles
    bounds: dict | None
    on_gpu: bool
    regions: bool
    p: int
    lo: int
    hi: int


def _partition_rows(pieces: tuple[pa.Table, ...]) -> pa.Table:
    return pa.concat_tables(pieces) if pieces else KEPT.empty_table()


def _evidence_task(spec: ReaderSpec, lo: int, hi: int, *pieces: pa.Table) -> Evidence:
    resp, _ = partition_responses(spec.reader(), _partition_rows(pieces), lo)
    return evidence(spec.images.subset(lo, hi), resp, lo)


def _bounds_task(
    spec: ReaderSpec,
    opts: AggregateOptions,
    trust: TrustEstimate | None,
    lo: int,
    hi: int,
    *pieces: pa.Table,
) -> dict[str, tuple[float, float]]:
    resp, _ = partition_responses(spec.reader(), _partition_rows(pieces), lo, trust)
    return score_ranges(spec.images.subset(lo, hi), resp, opts)


def aggregate_task(
    spec: ReaderSpec,
    opts: AggregateOptions,
    trust: TrustEstimate | None,
    task: PartTask,
    *pieces: pa.Table,
) -> PartRecord:
    """The aggregate and write stages of one partition, as a Ray task."""
    if task.on_gpu and torch.cuda.is_available():
        opts = replace(opts, device=torch.device("cuda"))
    result, rejected = aggregate_partition(
        spec.reader(),
        _partition_rows(pieces),
        spec.images,
        task.lo,
        task.hi,
        opts,
        norm_bounds=task.bounds,
        trust=trust,
        regions=task.regions,
    )
    return write_partition(task.files, task.p, result, rejected, opts)


# ------------------------------------------------------------------------------ driver


def run_on_ray(run: Run, engine: Engine) -> TrustEstimate | None:
    """The read, estimate and aggregate stages as Ray tasks (see the module docstring).
    Fills the run's state (``read_stats``, ``parts``) as the local engine does; returns the
    trust estimate, if any."""
    ray = _ray()
    connected = ray.is_initialized()  # by the caller: theirs to stop
    pending: list = []
    existing = {} if connected else _ray_group()  # Ray processes already here: not ours
    try:
        start(engine)
        return _drive(ray, run, engine, pending)
    except BaseException as exc:
        for ref in pending:  # interrupted or failed: stop what is still running
            ray.cancel(ref, force=True)
        raise _unwrap(ray, exc) from None
    finally:
        if not connected:  # even when interrupted inside ray.init: stop what it started
            ray.shutdown()
            _reap(existing)


def _drive(ray: Any, run: Run, engine: Engine, pending: list) -> TrustEstimate | None:
    plan, state, opts, files = run.plan, run.state, run.options, run.work.files
    n_parts = plan.count
    paths, n_files = list(run.reader.paths), len(run.reader.paths)
    images = ray.put(run.images)
    t0 = time.perf_counter()
    read = ray.remote(_read_file).options(num_returns=n_parts + 3, max_retries=MAX_RETRIES)
    outs = [read.remote(paths, images, opts.on_error, fi, plan) for fi in range(n_files)]
    pending += [o[0] for o in outs]
    files.rejected_read.write_text("")
    stats, wheres = [], []
    bar = tqdm(range(n_files), desc="reading responses", unit="file", disable=not run.say.on)
    for fi in bar:
        st, where, rejected = ray.get(outs[fi][:3])  # file order: the first error as locally
        write_rejections(rejected, files.rejected_read, mode="a")
        stats.append(st)
        wheres.append(where)
    state.read_stats = stats
    run.save()
    pieces = [[outs[fi][3 + p] for fi in range(n_files)] for p in range(n_parts)]
    run.timings["read_partition"] = time.perf_counter() - t0
    spec = ray.put(ReaderSpec(paths, run.images, opts.on_error, wheres))  # once, shared

    def each_part(fn: Any, *args: Any) -> list:
        """``fn`` as one Ray task per partition (images ``lo:hi`` and its row pieces)."""
        task = ray.remote(fn).options(max_retries=MAX_RETRIES)
        refs = [task.remote(spec, *args, *plan.span(p), *pieces[p]) for p in range(n_parts)]
        pending.extend(refs)
        return ray.get(refs)

    trust = None
    if opts.weights == "estimate":
        t0 = time.perf_counter()
        trust = trust_stage(run, lambda: each_part(_evidence_task))
        run.timings["estimate"] = time.perf_counter() - t0
    trust_ref = ray.put(trust)
    bounds = bounds_stage(run, lambda: each_part(_bounds_task, opts, trust_ref))
    t0 = time.perf_counter()

    task = ray.remote(aggregate_task).options(
        max_retries=MAX_RETRIES, num_gpus=engine.gpus_per_task
    )
    todo = {}
    for p in range(n_parts):
        if p not in state.parts:
            part = PartTask(
                files, bounds, engine.gpus_per_task > 0, run.has_regions, p, *plan.span(p)
            )
            todo[task.remote(spec, opts, trust_ref, part, *pieces[p])] = p
    pending += list(todo)
    span = plan.span
    bar = tqdm(total=plan.n_images, desc="aggregating", unit="img", disable=not run.say.on)
    bar.update(sum(span(p)[1] - span(p)[0] for p in range(n_parts) if p in state.parts))
    waiting = list(todo)
    while waiting:
        done, waiting = ray.wait(waiting, num_returns=1)
        p = todo[done[0]]
        state.parts[p] = ray.get(done[0])
        run.save()
        bar.update(span(p)[1] - span(p)[0])
    bar.close()
    run.timings["aggregate_write"] = time.perf_counter() - t0
    return trust


__all__ = [
    "MAX_RETRIES",
    "PartTask",
    "ReaderSpec",
    "aggregate_task",
    "require_ray",
    "run_on_ray",
    "start",
]
