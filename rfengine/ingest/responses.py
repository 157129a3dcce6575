"""Reading and validating responses in the interchange format.

Each file is parsed chunk by chunk into Arrow tables of one fixed schema: JSONL in blocks
of whole lines by pyarrow's reader (falling back, for a block it cannot parse, to a
line-by-line parse that pins each problem to its line), CSV line by line, Parquet in
batches with a checked cast. Validation is vectorised over each chunk; only the rows that
fail are visited one by one, to word their reasons. Every row read ends up either in
``Responses`` or in the rejections.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
import pyarrow.parquet as pq

from rfengine.errors import InputError, Rejection, shorten
from rfengine.ingest.formats import (
    NOT_UTF8,
    as_float,
    check_readable,
    csv_header,
    json_error,
    parquet_where,
)
from rfengine.ingest.images import Images, image_index
from rfengine.schema import MAX_POINTS, MAX_WEIGHT, TASKS, Task

OnError = Literal["fail", "skip"]


SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("annotator_id", pa.string()),
        ("task", pa.string()),
        ("weight", pa.float64()),
        ("rating", pa.float64()),
        ("points", pa.list_(pa.list_(pa.float64()))),
        ("selected", pa.list_(pa.int64())),
    ]
)
REQUIRED = ("image_id", "annotator_id", "task")
#: integers in ``selected`` must fit int64 (an index beyond is out of range anyway)
_INT64 = 2**63

CHUNK_ROWS = 250_000  # rows per chunk for CSV and Parquet
CHUNK_BYTES = 32 << 20  # bytes per JSONL block (whole lines)


@dataclass
class Responses:
    """Validated responses as flat arrays (one entry per response unless noted), sorted by
    image, task and annotator id (``ResponseReader.finish`` guarantees it; the aggregation
    relies on the grouping by image).

    ``points[point_offsets[k]:point_offsets[k+1]]`` are response k's ``(x, y)`` fractions,
    and ``selected[selected_offsets[k]:selected_offsets[k+1]]`` its word indices.
    """

    image: np.ndarray  # int64 row in the images table
    task: np.ndarray  # int8 Task code
    annotator: np.ndarray  # int64 index into ``annotator_ids``
    annotator_ids: np.ndarray  # (A,) object: annotator ids in string order (not per response)
    weight: np.ndarray  # float64 trust weight >= 0
    rating: np.ndarray  # float64 rating 1..5, NaN for non-rating tasks
    point_offsets: np.ndarray
    points: np.ndarray  # (P, 2) float64
    selected_offsets: np.ndarray
    selected: np.ndarray  # (S,) int64

    def __len__(self) -> int:
        return int(self.image.shape[0])

    def take(self, keep: np.ndarray) -> Responses:
        """The responses where the boolean ``keep`` is set, in the same order."""
        n_pts = np.diff(self.point_offsets)[keep]
        n_sel = np.diff(self.selected_offsets)[keep]
        pt_rows = np.repeat(keep, np.diff(self.point_offsets))
        sel_rows = np.repeat(keep, np.diff(self.selected_offsets))
        return Responses(
            image=self.image[keep],
            task=self.task[keep],
            annotator=self.annotator[keep],
            annotator_ids=self.annotator_ids,
            weight=self.weight[keep],
            rating=self.rating[keep],
            point_offsets=np.concatenate([[0], np.cumsum(n_pts)]).astype(np.int64),
            points=self.points[pt_rows],
            selected_offsets=np.concatenate([[0], np.cumsum(n_sel)]).astype(np.int64),
            selected=self.selected[sel_rows],
        )


@dataclass
class ReadStats:
    """Row counts per input file: read = used + rejected."""

    files: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def of(
        cls, paths: Sequence[str | Path], used: Sequence[int] = (), rejected: Sequence[int] = ()
    ) -> ReadStats:
        """Counts for ``paths``: ``used[i]`` and ``rejected[i]`` rows of file ``i`` (else 0)."""
        u, r = list(used) or [0] * len(paths), list(rejected) or [0] * len(paths)
        return cls(
            [
                {"path": str(p), "read": 0, "used": int(nu), "rejected": int(nr)}
                for p, nu, nr in zip(paths, u, r, strict=True)
            ]
        )

    def merge(self, other: ReadStats) -> ReadStats:
        """Counts of both, file by file (the same files in the same order)."""
        return ReadStats(
            [
                {**a, **{k: a[k] + b[k] for k in ("read", "used", "rejected")}}
                for a, b in zip(self.files, other.files, strict=True)
            ]
        )

    @property
    def read(self) -> int:
        return sum(f["read"] for f in self.files)

    @property
    def used(self) -> int:
        return sum(f["used"] for f in self.files)

    @property
    def rejected(self) -> int:
        return sum(f["rejected"] for f in self.files)


@dataclass
class _Parsed:
    table: pa.Table  # SCHEMA
    locs: np.ndarray  # line (JSONL/CSV) or global row (Parquet) per table row
    where: Any  # locs value -> locator text
    rejected: list[Rejection]  # rows that could not be parsed at all
    n_read: int


# ---------------------------------------------------------------------------- parsing


def _line_where(n: int) -> str:
    return f"line {n}"


def _coerce(rec: Any, from_text: bool) -> tuple[dict[str, Any] | None, str, str]:
    """One record to the schema's Python types, or (None, field, reason)."""
    if not isinstance(rec, dict):
        return None, "", "expected a JSON object"
    out: dict[str, Any] = {}
    for f in REQUIRED:
        v = rec.get(f)
        if v is not None and not isinstance(v, str):
            return None, f, f"expected a string, got {shorten(v)}"
        out[f] = v  # empty strings are rejected as missing by the validation, like nulls
    for f in ("weight", "rating"):
        v = rec.get(f)
        if from_text and isinstance(v, str):
            try:
                v = float(v) if v.strip() else None
            except ValueError:
                return None, f, f"expected a number, got {shorten(v)}"
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            return None, f, f"expected a number, got {shorten(v)}"
        out[f] = None if v is None else as_float(v)
    for f in ("points", "selected"):
        v = rec.get(f)
        if from_text and isinstance(v, str):
            if not v.strip():
                v = None
            else:
                try:
                    v = json.loads(v)
                except (ValueError, RecursionError) as exc:
                    return None, f, f"malformed JSON cell: {json_error(exc)}"
        if v is None:
            out[f] = None
            continue
        if not isinstance(v, list):
            return None, f, f"expected a list, got {shorten(v)}"
        if f == "points":
            ok = all(
                isinstance(p, list)
                and all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in p)
                for p in v
            )
            if not ok:
                return None, f, f"expected a list of [x, y] number pairs, got {shorten(v)}"
            v = [[as_float(c) for c in p] for p in v]
        elif not all(isinstance(k, int) and not isinstance(k, bool) for k in v):
            return None, f, f"expected a list of integer word indices, got {shorten(v)}"
        elif any(not -_INT64 <= k < _INT64 for k in v):
            return None, f, f"word index out of range in {shorten(v)}"
        out[f] = v
    return out, "", ""


def _records_to_parsed(
    path: Path, records: list[tuple[int, Any, str]], from_text: bool, n_read: int
) -> _Parsed:
    """(line, record or raw text, parse error) triples -> _Parsed, rejecting bad records."""
    rows, locs, rejected = [], [], []
    for line, rec, err in records:
        if err:
            raw = shorten(rec, 1000) if not isinstance(rec, str) else rec[:1000]
            rejected.append(Rejection(str(path), _line_where(line), "", err, raw, (0, line)))
            continue
        out, fld, why = _coerce(rec, from_text)
        if out is None:
            rejected.append(Rejection(str(path), _line_where(line), fld, why, rec, (0, line)))
            continue
        rows.append(out)
        locs.append(line)
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    return _Parsed(table, np.array(locs, dtype=np.int64), _line_where, rejected, n_read)


def _jsonl_blocks(path: Path, chunk_bytes: int) -> Iterator[tuple[int, bytes, bool]]:
    """(first line number, whole lines, at end of file) blocks of about ``chunk_bytes``."""
    with path.open("rb") as fh:
        line, rest = 1, b""
        while True:
            block = fh.read(chunk_bytes)
            if not block:
                if rest:
                    yield line, rest, True
                return
            data = rest + block
            cut = data.rfind(b"\n")
            if cut < 0:
                rest = data
                continue
            head, rest = data[: cut + 1], data[cut + 1 :]
            yield line, head, False
            line += head.count(b"\n")


def _parse_jsonl(path: Path, chunk_bytes: int) -> Iterator[_Parsed]:
    opts = pj.ParseOptions(explicit_schema=SCHEMA, unexpected_field_behavior="ignore")
    for first, block, at_end in _jsonl_blocks(path, chunk_bytes):
        n_lines = block.count(b"\n") + (0 if block.endswith(b"\n") else 1)
        # pyarrow skips blank lines: then it returns fewer rows than lines, and the block
        # takes the line-by-line path; with as many rows as lines, row k is line first + k
        body = block[:-1] if block.endswith(b"\n") else block
        # pyarrow does not check UTF-8: a block with invalid bytes goes line by line, where
        # each such line is rejected (ids are compared as the exact text given); nor does
        # it refuse a line 'null' (an empty row; first in a block, pyarrow 26 crashes)
        if (
            b"\n\n" not in body
            and not body.startswith(b"\n")
            and _lines_open_objects(body)
            and _is_utf8(block)
        ):
            try:
                table = pj.read_json(io.BytesIO(block), parse_options=opts)
                if table.num_rows == n_lines:
                    locs = np.arange(first, first + n_lines, dtype=np.int64)
                    yield _Parsed(table.select(SCHEMA.names), locs, _line_where, [], n_lines)
                    continue
            except pa.ArrowInvalid:
                pass  # a bad line in this block: the line-by-line parse below pins it down
        lines = block.split(b"\n")
        if lines[-1] == b"":
            lines.pop()
        records = []
        for n, raw in enumerate(lines, first):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                why = f"invalid UTF-8 at byte {exc.start} of the line"
                records.append((n, raw[:1000].decode("utf-8", errors="replace"), why))
                continue
            if not text.strip():
                continue
            try:
                records.append((n, json.loads(text), ""))
            except (ValueError, RecursionError) as exc:
                last = at_end and n == first + len(lines) - 1
                why = (
                    "truncated JSON (file ends mid-record)"
                    if last and isinstance(exc, json.JSONDecodeError)
                    else f"malformed JSON: {json_error(exc)}"
                )
                records.append((n, text[:1000], why))
        yield _records_to_parsed(path, records, False, len(records))


def _lines_open_objects(body: bytes) -> bool:
    """Whether every line of ``body`` starts with ``{`` (vectorised over the block)."""
    data = np.frombuffer(body, dtype=np.uint8)
    starts = np.concatenate([[0], np.flatnonzero(data == ord("\n")) + 1])
    return bool(data.size) and bool((data[starts[starts < data.size]] == ord("{")).all())


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _csv_rows(reader: Any) -> Iterator[tuple[int, Any, str]]:
    """(line, record, parse error) per CSV row; a row the csv module cannot read, or with
    bytes that are not UTF-8, is an error of its own line."""
    while True:
        try:
            rec = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield reader.line_num, "", f"unreadable CSV row: {exc}"
            continue
        if None in rec:  # more cells than header columns
            yield reader.line_num, rec.pop(None), "more cells than columns"
        elif any(isinstance(v, str) and NOT_UTF8.search(v) for v in rec.values()):
            field = next(k for k, v in rec.items() if isinstance(v, str) and NOT_UTF8.search(v))
            yield reader.line_num, "", f"field '{field}': invalid UTF-8"
        else:
            yield reader.line_num, rec, ""


def _parse_csv(path: Path, chunk_rows: int) -> Iterator[_Parsed]:
    with path.open(newline="", encoding="utf-8-sig", errors="surrogateescape") as fh:
        reader, header = csv_header(path, fh)
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise InputError(f"{path}: line 1: missing column(s) {', '.join(missing)}")
        records: list[tuple[int, Any, str]] = []
        for record in _csv_rows(reader):
            records.append(record)
            if len(records) >= chunk_rows:
                yield _records_to_parsed(path, records, True, len(records))
                records = []
        if records:
            yield _records_to_parsed(path, records, True, len(records))


def _parse_parquet(path: Path, chunk_rows: int) -> Iterator[_Parsed]:
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{path}: unreadable Parquet file: {exc}") from None
    groups = [pf.metadata.row_group(i).num_rows for i in range(pf.metadata.num_row_groups)]
    names = pf.schema_arrow.names
    missing = [c for c in REQUIRED if c not in names]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}")
    for f in SCHEMA:
        if f.name in names and not _castable(pf.schema_arrow.field(f.name).type, f.type):
            typ = pf.schema_arrow.field(f.name).type
            raise InputError(f"{path}: column '{f.name}' has type {typ}; expected {f.type}")
    start = 0
    try:
        for batch in pf.iter_batches(
            batch_size=chunk_rows, columns=[n for n in SCHEMA.names if n in names]
        ):
            n = batch.num_rows
            cols = [
                batch.column(f.name).cast(f.type) if f.name in names else pa.nulls(n, f.type)
                for f in SCHEMA
            ]
            table = pa.Table.from_arrays(cols, schema=SCHEMA)
            locs = np.arange(start, start + n, dtype=np.int64)
            yield _Parsed(table, locs, lambda r: parquet_where(int(r), groups), [], n)
            start += n
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{path}: unreadable Parquet data after row {start}: {exc}") from None


def _castable(src: pa.DataType, dst: pa.DataType) -> bool:
    """Whether a Parquet column of type ``src`` can be read as ``dst`` without loss of meaning."""
    if pa.types.is_null(src) or src == dst:
        return True
    if pa.types.is_string(dst):
        return (
            pa.types.is_string(src) or pa.types.is_large_string(src) or pa.types.is_dictionary(src)
        )
    if pa.types.is_floating(dst):
        return pa.types.is_integer(src) or pa.types.is_floating(src)
    if pa.types.is_list(dst) or pa.types.is_large_list(dst):
        return (pa.types.is_list(src) or pa.types.is_large_list(src)) and _castable(
            src.value_type, dst.value_type
        )
    return pa.types.is_integer(dst) and pa.types.is_integer(src)


def parse_file(
    path: Path, chunk_rows: int = CHUNK_ROWS, chunk_bytes: int = CHUNK_BYTES
) -> Iterator[_Parsed]:
    """Parse one responses file, chunk by chunk, into the fixed schema (values unchecked)."""
    fmt = check_readable(path)
    if fmt == "jsonl":
        chunks = _parse_jsonl(path, chunk_bytes)
    elif fmt == "csv":
        chunks = _parse_csv(path, chunk_rows)
    else:
        chunks = _parse_parquet(path, chunk_rows)
    n = 0
    for chunk in chunks:
        n += chunk.n_read
        yield chunk
    if n == 0:
        raise InputError(f"{path}: no rows")


# ------------------------------------------------------------------------- validation


class _Checks:
    """Accumulates the first failing check of each row."""

    def __init__(self, parsed: _Parsed, path: Path, file_index: int):
        self.p, self.path, self.fi = parsed, path, file_index
        self.bad = np.zeros(parsed.table.num_rows, dtype=bool)
        self.rejected: list[Rejection] = []

    def __call__(self, mask: np.ndarray, fld: str, reason: Any) -> None:
        new = np.asarray(mask, dtype=bool) & ~self.bad
        for i in np.flatnonzero(new):
            loc = self.p.locs[i]
            row = self.p.table.slice(int(i), 1).to_pylist()[0]
            why = reason(int(i)) if callable(reason) else reason
            self.rejected.append(
                Rejection(str(self.path), self.p.where(loc), fld, why, row, (self.fi, int(loc)))
            )
        self.bad |= new


def _np(arr: pa.Array | pa.ChunkedArray, fill: Any) -> np.ndarray:
    return arr.fill_null(fill).to_numpy(zero_copy_only=False)


def _row_any(flags: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
    """Per-row OR of per-element flags, elements mapped to rows by ``rows``."""
    return np.bincount(rows[flags], minlength=n).astype(bool) if flags.size else np.zeros(n, bool)


def _validate(
    parsed: _Parsed, path: Path, fi: int, images: Images
) -> tuple[np.ndarray, list[Rejection], np.ndarray, np.ndarray]:
    """Check every row; returns (rows kept, rejections, image row, task code) per row."""
    t = {name: parsed.table[name].combine_chunks() for name in SCHEMA.names}
    n = parsed.table.num_rows
    check = _Checks(parsed, path, fi)
    for f in REQUIRED:
        check(_np(pc.is_null(t[f]), True), f, "missing")
    task_s = t["task"]
    task = _np(pc.index_in(task_s, value_set=pa.array(TASKS)), -1)
    check(
        task < 0,
        "task",
        lambda i: f"unknown task {task_s[i].as_py()!r}; expected one of {', '.join(TASKS)}",
    )
    for f in REQUIRED:  # an empty string is no value either
        check(_np(pc.equal(t[f], ""), False), f, "missing (empty)")
    weight = _np(t["weight"], 1.0)
    check(
        ~np.isfinite(weight) | (weight < 0) | (weight > MAX_WEIGHT),
        "weight",
        lambda i: f"weight must be a finite number in [0, {MAX_WEIGHT:g}], got {weight[i]}",
    )
    img = image_index(images, t["image_id"])
    check(
        img < 0,
        "image_id",
        lambda i: f"unknown image_id {t['image_id'][i].as_py()!r} (not in the images table)",
    )

    is_rating = np.isin(task, [t for t in Task if t.is_rating])
    is_points = np.isin(task, [t for t in Task if t.is_points])
    is_words = task == Task.WORDS
    rating = _np(t["rating"], np.nan)
    has_rating = ~np.isnan(rating)
    task_name = lambda i: TASKS[task[i]]  # noqa: E731
    check(
        is_rating & ~has_rating,
        "rating",
        lambda i: f"missing (task {task_name(i)!r} needs a rating)",
    )
    bad_r = is_rating & has_rating & ((rating != np.round(rating)) | (rating < 1) | (rating > 5))
    check(bad_r, "rating", lambda i: f"rating must be an integer 1-5, got {rating[i]:g}")
    check(~is_rating & has_rating, "rating", lambda i: f"not used by task {task_name(i)!r}")

    pts = t["points"]
    n_pts = _np(pc.list_value_length(pts), -1)
    check(
        is_points & (n_pts < 0),
        "points",
        lambda i: f"missing (task {task_name(i)!r} needs a list of points)",
    )
    check(
        is_points & (n_pts > MAX_POINTS),
        "points",
        lambda i: f"at most {MAX_POINTS} points, got {n_pts[i]}",
    )
    check(~is_points & (n_pts > 0), "points", lambda i: f"not used by task {task_name(i)!r}")
    inner = pts.flatten()
    inner_row = _np(pc.list_parent_indices(pts), 0)
    pair_len = _np(pc.list_value_length(inner), -1)
    check(
        _row_any(pair_len != 2, inner_row, n),
        "points",
        lambda i: f"each point must be an [x, y] pair, got {pts[i].as_py()}",
    )
    coords = _np(inner.flatten(), np.nan)
    coord_row = inner_row[_np(pc.list_parent_indices(inner), 0)] if coords.size else inner_row[:0]
    out_of_range = ~((coords >= 0) & (coords <= 1))
    check(
        _row_any(out_of_range, coord_row, n),
        "points",
        lambda i: f"point outside [0, 1] (image fractions, origin top-left): {pts[i].as_py()}",
    )

    sel = t["selected"]
    n_sel = _np(pc.list_value_length(sel), -1)
    check(is_words & (n_sel < 0), "selected", "missing (task 'words' needs a list of word indices)")
    check(~is_words & (n_sel > 0), "selected", lambda i: f"not used by task {task_name(i)!r}")
    idx = _np(sel.flatten(), -1)
    idx_row = _np(pc.list_parent_indices(sel), 0)
    limit = images.n_tokens[np.maximum(img, 0)]
    oob = (idx < 0) | (idx > limit[idx_row]) if idx.size else np.zeros(0, bool)
    check(
        _row_any(oob, idx_row, n),
        "selected",
        lambda i: (
            f"word index out of range 0..{limit[i]} in {sel[i].as_py()} "
            f"(the prompt has {limit[i]} words; {limit[i]} is [No_Mistake])"
        ),
    )
    no_mistake = idx == limit[idx_row] if idx.size else np.zeros(0, bool)
    check(
        _row_any(no_mistake, idx_row, n) & (n_sel > 1),
        "selected",
        lambda i: f"[No_Mistake] ({limit[i]}) selected together with words in {sel[i].as_py()}",
    )
    if idx.size:
        order = np.lexsort((idx, idx_row))
        dup = np.zeros(idx.size, bool)
        dup[order[1:]] = (idx_row[order[1:]] == idx_row[order[:-1]]) & (
            idx[order[1:]] == idx[order[:-1]]
        )
        check(
            _row_any(dup, idx_row, n),
            "selected",
            lambda i: f"a word index is selected twice in {sel[i].as_py()}",
        )
    return ~check.bad, check.rejected, img, task


# ------------------------------------------------------------------------------ reading

#: the columns of validated rows: the image's row and the task's code in place of their
#: names, the schema's other fields, and where the row came from (file index, line or row)
KEPT = pa.schema(
    [
        ("image", pa.int32()),
        SCHEMA.field("annotator_id"),
        ("task", pa.int8()),
        *(SCHEMA.field(name) for name in ("weight", "rating", "points", "selected")),
        ("_file", pa.int32()),
        ("_loc", pa.int64()),
    ]
)


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
                keep, bad, img, task = _validate(parsed, path, fi, self.images)
                # rows rejected while parsing did not know their file's index
                early = [replace(r, order=(fi, r.order[1])) for r in parsed.rejected]
                self.stats.files[fi]["read"] += parsed.n_read
                self._raise_first(early + bad)
                if early or bad:
                    self.stats.files[fi]["rejected"] += len(early) + len(bad)
                    sink(early + bad)
                t = parsed.table.filter(pa.array(keep))
                yield pa.Table.from_arrays(
                    [
                        pa.array(img[keep], pa.int32()),
                        t["annotator_id"],
                        pa.array(task[keep], pa.int8()),
                        t["weight"].fill_null(1.0),
                        t["rating"],
                        t["points"],
                        t["selected"],
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
        ann = rank[_np(enc.indices, 0)]
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
        n_pts = _np(pc.list_value_length(pts), 0)
        n_sel = _np(pc.list_value_length(sel), 0)
        coords = _np(pts.flatten().flatten(), np.nan) if len(pts) else np.zeros(0)
        responses = Responses(
            image=img[kept_rows],
            task=task[kept_rows].astype(np.int8),
            annotator=ann[kept_rows],
            annotator_ids=np.asarray(
                enc.dictionary.take(pc.sort_indices(enc.dictionary)).to_pylist(), dtype=object
            ),
            weight=_np(kept["weight"].combine_chunks(), 1.0).astype(np.float64),
            rating=_np(kept["rating"].combine_chunks(), np.nan).astype(np.float64),
            point_offsets=np.concatenate([[0], np.cumsum(n_pts)]).astype(np.int64),
            points=coords.reshape(-1, 2).astype(np.float64),
            selected_offsets=np.concatenate([[0], np.cumsum(n_sel)]).astype(np.int64),
            selected=_np(sel.flatten(), 0).astype(np.int64) if len(sel) else np.zeros(0, np.int64),
        )
        return Finished(responses, rejections, used)

    def rejected_per_file(self, rejections: list[Rejection]) -> np.ndarray:
        """``(files,)`` number of ``rejections`` per input file."""
        files = np.array([r.order[0] for r in rejections], dtype=np.int64)
        return np.bincount(files, minlength=len(self.paths))


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
