"""Reading responses in the interchange format: the streaming reader.

Each file is parsed chunk by chunk (``parse``) and validated (``validate``); the kept rows
are sorted and de-duplicated per partition (``ResponseReader.finish``). Every row read
ends up either in ``Responses`` or in the rejections.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rfengine.errors import InputError, Rejection
from rfengine.ingest.columns import KEPT, OnError, ReadStats, Responses, filled, offsets_of
from rfengine.ingest.images import Images
from rfengine.ingest.parse import CHUNK_BYTES, CHUNK_ROWS, _line_where, parse_file
from rfengine.ingest.validate import validate_chunk
from rfengine.schema import REGION_TASKS, TASKS


@dataclass(frozen=True)
class Finished:
    """What ``ResponseReader.finish`` returns for one partition's rows."""

    responses: Responses
    rejected: list[Rejection]  # repeated (image, annotator, task) triples, in input order
    used: np.ndarray  # (files,) rows used per input file


class ResponseReader:
    """Streams, validates and finishes responses; every row read is used or rejected.

    ``chunks(sink)`` yields validated rows (schema ``KEPT``) file by file, chunk by chunk,
    passing each chunk's rejections to ``sink`` and counting rows read and rejected in
    ``stats`` (the reader's own record); ``finish(rows)`` rejects repeated (image,
    annotator, task) triples among rows that hold all of an image's responses, and returns
    them with the ``Responses`` (a pure step: the reader is left as it was). With
    ``on_error="fail"`` the first rejection raises an InputError instead.
    """

    def __init__(
        self,
        paths: Sequence[str | Path],
        images: Images,
        on_error: OnError = "fail",
        chunk_rows: int = CHUNK_ROWS,
        chunk_bytes: int = CHUNK_BYTES,
    ):
        if on_error not in ("fail", "skip"):
            raise ValueError(f"on_error must be 'fail' or 'skip', got {on_error!r}")
        if not paths:
            raise InputError("no responses files given")
        self.paths = [Path(p) for p in paths]
        self.images, self.on_error = images, on_error
        self.chunk_rows, self.chunk_bytes = chunk_rows, chunk_bytes
        self.stats = ReadStats.of(self.paths)
        self.where: list[Callable[[int], str]] = [_line_where] * len(self.paths)

    def _raise_first(self, rejections: list[Rejection]) -> None:
        if rejections and self.on_error == "fail":
            first = min(rejections, key=lambda r: r.order)
            raise InputError.from_rejection(first, more=len(rejections) - 1)

    def chunks(
        self, sink: Callable[[list[Rejection]], None], files: Sequence[int] | None = None
    ) -> Iterator[pa.Table]:
        """Validated rows, in input order (file by file, chunk by chunk); rejections to
        ``sink``. ``files``: only these files (indices into ``paths``; a distributed read
        gives each task one)."""
        for fi, path in enumerate(self.paths):
            if files is not None and fi not in files:
                continue
            for parsed in parse_file(path, self.chunk_rows, self.chunk_bytes):
                self.where[fi] = parsed.where
                keep, bad, img, task = validate_chunk(parsed, path, fi, self.images)
                # rows rejected while parsing did not know their file's index
                early = [replace(r, order=(fi, r.order[1])) for r in parsed.rejected]
                self.stats.files[fi]["read"] += parsed.n_read
                self._raise_first(early + bad)
                if early or bad:
                    self.stats.files[fi]["rejected"] += len(early) + len(bad)
                    sink(early + bad)
                t = parsed.table.filter(pa.array(keep))
                n_regions = int(np.isin(task[keep], REGION_TASKS).sum())
                if n_regions:  # the run then has region heatmaps (``Run.has_regions``)
                    stats = self.stats.files[fi]
                    stats["regions"] = stats.get("regions", 0) + n_regions
                yield pa.Table.from_arrays(
                    [
                        pa.array(img[keep], pa.int32()),
                        t["annotator_id"],
                        pa.array(task[keep], pa.int8()),
                        t["weight"].fill_null(1.0),
                        t["rating"],
                        t["points"],
                        t["selected"],
                        t["regions"],
                        pa.array(np.full(t.num_rows, fi), pa.int32()),
                        pa.array(parsed.locs[keep], pa.int64()),
                    ],
                    schema=KEPT,
                )

    def finish(self, rows: pa.Table) -> Finished:
        """Reject repeated (image, annotator, task) triples (the first in input order stays)
        and turn the rest into flat arrays, sorted by image, task and annotator. ``rows``
        must hold all rows of its images."""
        col = {name: rows[name].combine_chunks() for name in KEPT.names}
        img = col["image"].to_numpy().astype(np.int64)
        task = col["task"].to_numpy()
        # annotator ids as their rank in string order, so that one sort both groups repeats
        # and gives the canonical order (bit-identical sums whatever the input order)
        enc = pc.dictionary_encode(col["annotator_id"])
        rank = np.empty(len(enc.dictionary), dtype=np.int64)
        rank[pc.sort_indices(enc.dictionary).to_numpy()] = np.arange(len(enc.dictionary))
        ann = rank[filled(enc.indices, 0)]
        file_idx, loc = col["_file"].to_numpy(), col["_loc"].to_numpy()
        order = np.lexsort((loc, file_idx, ann, task, img))
        same = (
            (img[order[1:]] == img[order[:-1]])
            & (ann[order[1:]] == ann[order[:-1]])
            & (task[order[1:]] == task[order[:-1]])
        )
        rejections = []
        first = order.copy()
        for k in np.flatnonzero(same):  # repeats only; runs are short
            first[k + 1] = first[k]  # the run's first row, in input order
            row, orig = int(order[k + 1]), int(first[k + 1])
            fi, fo = int(file_idx[row]), int(file_idx[orig])
            who = col["annotator_id"][row].as_py()
            rejections.append(
                Rejection(
                    str(self.paths[fi]),
                    self.where[fi](int(loc[row])),
                    "annotator_id",
                    f"duplicate response of annotator {who!r} for image "
                    f"{self.images.ids[img[row]]!r}, task {TASKS[task[row]]!r} "
                    f"(first at {self.paths[fo]}: {self.where[fo](int(loc[orig]))})",
                    {
                        "image_id": self.images.ids[img[row]],
                        "annotator_id": who,
                        "task": TASKS[task[row]],
                    },
                    (fi, int(loc[row])),
                )
            )
        rejections.sort(key=lambda r: r.order)
        self._raise_first(rejections)
        first_of_run = np.ones(len(order), dtype=bool)
        first_of_run[1:] = ~same
        kept_rows = order[first_of_run]  # canonical order, repeats dropped
        used = np.bincount(file_idx[kept_rows], minlength=len(self.paths))
        kept = rows.take(pa.array(kept_rows))
        pts, sel = kept["points"].combine_chunks(), kept["selected"].combine_chunks()
        n_pts = filled(pc.list_value_length(pts), 0)
        n_sel = filled(pc.list_value_length(sel), 0)
        coords = filled(pts.flatten().flatten(), np.nan) if len(pts) else np.zeros(0)
        responses = Responses(
            image=img[kept_rows],
            task=task[kept_rows].astype(np.int8),
            annotator=ann[kept_rows],
            annotator_ids=np.asarray(
                enc.dictionary.take(pc.sort_indices(enc.dictionary)).to_pylist(), dtype=object
            ),
            weight=filled(kept["weight"].combine_chunks(), 1.0).astype(np.float64),
            rating=filled(kept["rating"].combine_chunks(), np.nan).astype(np.float64),
            point_offsets=np.concatenate([[0], np.cumsum(n_pts)]).astype(np.int64),
            points=coords.reshape(-1, 2).astype(np.float64),
            selected_offsets=np.concatenate([[0], np.cumsum(n_sel)]).astype(np.int64),
            selected=filled(sel.flatten(), 0).astype(np.int64)
            if len(sel)
            else np.zeros(0, np.int64),
            **region_arrays(kept["regions"].combine_chunks()),
        )
        return Finished(responses, rejections, used)

    def rejected_per_file(self, rejections: list[Rejection]) -> np.ndarray:
        """``(files,)`` number of ``rejections`` per input file."""
        files = np.array([r.order[0] for r in rejections], dtype=np.int64)
        return np.bincount(files, minlength=len(self.paths))


def region_arrays(regs: pa.ListArray) -> dict[str, np.ndarray]:
    """``Responses``' region fields from validated ``regions`` lists (one per response)."""
    n_reg = filled(pc.list_value_length(regs), 0)
    flat = pc.list_flatten(regs)
    poly = pc.struct_field(flat, "polygon")
    counts = pc.struct_field(pc.struct_field(flat, "mask"), "counts")
    n_vert = filled(pc.list_value_length(poly), 0)
    n_runs = filled(pc.list_value_length(counts), 0)
    coords = filled(pc.list_flatten(pc.list_flatten(poly)), np.nan) if len(flat) else np.zeros(0)
    return {
        "region_offsets": offsets_of(n_reg),
        "vertex_offsets": offsets_of(n_vert),
        "vertices": coords.reshape(-1, 2).astype(np.float64),
        "run_offsets": offsets_of(n_runs),
        "runs": filled(pc.list_flatten(counts), 0).astype(np.int64)
        if len(flat)
        else np.zeros(0, np.int64),
    }


def read_responses(
    paths: Sequence[str | Path], images: Images, on_error: OnError = "fail"
) -> tuple[Responses, list[Rejection], ReadStats]:
    """Read, validate and combine response files (any order, any number of files), in memory.

    Returns the used responses, the rejected rows (sorted by file and line) and per-file
    counts. With ``on_error="fail"`` the first bad row found raises an InputError naming its
    file, line and field; with ``"skip"`` bad rows are returned as rejections. A (image,
    annotator, task) seen twice keeps its first occurrence and rejects the later ones.
    For inputs larger than memory, ``rfengine.run.pipeline`` streams the same steps.
    """
    reader = ResponseReader(paths, images, on_error)
    rejected: list[Rejection] = []
    rows = pa.concat_tables(list(reader.chunks(rejected.extend)))
    done = reader.finish(rows)
    rejected = sorted(rejected + done.rejected, key=lambda r: r.order)
    dupes = ReadStats.of(reader.paths, done.used, reader.rejected_per_file(done.rejected))
    return done.responses, rejected, reader.stats.merge(dupes)
