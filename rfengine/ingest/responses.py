"""Reading and validating responses in the interchange format.

Each file is parsed into an Arrow table of one fixed schema: JSONL by pyarrow's reader
(falling back, for a file it cannot parse, to a line-by-line parse that pins each problem
to its line), CSV line by line, Parquet by pyarrow with a checked cast. Validation is
vectorised over the whole table; only the rows that fail are visited one by one, to word
their reasons. Every row read ends up either in ``Responses`` or in the rejections.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from rfengine.errors import InputError, Rejection
from rfengine.ingest.formats import check_readable, parquet_where, read_parquet
from rfengine.ingest.images import Images, image_index

OnError = Literal["fail", "skip"]

TASKS = ("style", "coherence", "alignment", "coherence_points", "alignment_points", "words")
CRITERIA = TASKS[:3]
POINT_TASKS = TASKS[3:5]
WORDS = 5
MAX_POINTS = 3

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


@dataclass
class Responses:
    """Validated responses as flat arrays (one entry per response unless noted).

    ``points[point_offsets[k]:point_offsets[k+1]]`` are response k's ``(x, y)`` fractions,
    and ``selected[selected_offsets[k]:selected_offsets[k+1]]`` its word indices.
    """

    image: np.ndarray  # int64 row in the images table
    task: np.ndarray  # int8 index into TASKS
    weight: np.ndarray  # float64 trust weight >= 0
    rating: np.ndarray  # float64 rating 1..5, NaN for non-rating tasks
    point_offsets: np.ndarray
    points: np.ndarray  # (P, 2) float64
    selected_offsets: np.ndarray
    selected: np.ndarray  # (S,) int64

    def __len__(self) -> int:
        return int(self.image.shape[0])


@dataclass
class ReadStats:
    """Row counts per input file: read = used + rejected."""

    files: list[dict[str, Any]] = field(default_factory=list)

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
            return None, f, f"expected a string, got {v!r}"
        out[f] = v if v != "" else None
    for f in ("weight", "rating"):
        v = rec.get(f)
        if from_text and isinstance(v, str):
            try:
                v = float(v) if v.strip() else None
            except ValueError:
                return None, f, f"expected a number, got {v!r}"
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            return None, f, f"expected a number, got {v!r}"
        out[f] = None if v is None else float(v)
    for f in ("points", "selected"):
        v = rec.get(f)
        if from_text and isinstance(v, str):
            if not v.strip():
                v = None
            else:
                try:
                    v = json.loads(v)
                except json.JSONDecodeError as exc:
                    return None, f, f"malformed JSON cell: {exc.msg}"
        if v is None:
            out[f] = None
            continue
        if not isinstance(v, list):
            return None, f, f"expected a list, got {v!r}"
        if f == "points":
            ok = all(
                isinstance(p, list)
                and all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in p)
                for p in v
            )
            if not ok:
                return None, f, f"expected a list of [x, y] number pairs, got {v!r}"
        elif not all(isinstance(k, int) and not isinstance(k, bool) for k in v):
            return None, f, f"expected a list of integer word indices, got {v!r}"
        out[f] = v
    return out, "", ""


def _records_to_parsed(
    path: Path, records: list[tuple[int, Any, str]], from_text: bool, n_read: int
) -> _Parsed:
    """(line, record or raw text, parse error) triples -> _Parsed, rejecting bad records."""
    rows, locs, rejected = [], [], []
    for line, rec, err in records:
        if err:
            rejected.append(Rejection(str(path), _line_where(line), "", err, rec, (0, line)))
            continue
        out, fld, why = _coerce(rec, from_text)
        if out is None:
            rejected.append(Rejection(str(path), _line_where(line), fld, why, rec, (0, line)))
            continue
        rows.append(out)
        locs.append(line)
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    return _Parsed(table, np.array(locs, dtype=np.int64), _line_where, rejected, n_read)


def _parse_jsonl(path: Path) -> _Parsed:
    data = path.read_bytes()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if all(ln.strip() for ln in lines):
        try:
            opts = pj.ParseOptions(explicit_schema=SCHEMA, unexpected_field_behavior="ignore")
            table = pj.read_json(io.BytesIO(data), parse_options=opts)
            if table.num_rows == len(lines):
                locs = np.arange(1, table.num_rows + 1, dtype=np.int64)
                return _Parsed(table.select(SCHEMA.names), locs, _line_where, [], len(lines))
        except pa.ArrowInvalid:
            pass  # a bad line somewhere: the line-by-line parse below pins it down
    records = []
    for n, raw in enumerate(lines, 1):
        text = raw.decode("utf-8", errors="replace")
        if not text.strip():
            continue
        try:
            records.append((n, json.loads(text), ""))
        except json.JSONDecodeError as exc:
            last = n == len(lines) and not data.endswith(b"\n")
            why = "truncated JSON (file ends mid-record)" if last else f"malformed JSON: {exc.msg}"
            records.append((n, text[:1000], why))
    return _records_to_parsed(path, records, False, len(records))


def _parse_csv(path: Path) -> _Parsed:
    with path.open(newline="", encoding="utf-8", errors="replace") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise InputError(f"{path}: line 1: missing column(s) {', '.join(missing)}")
        records = []
        for rec in reader:
            if None in rec:  # more cells than header columns
                records.append((reader.line_num, rec.pop(None), "more cells than columns"))
            else:
                records.append((reader.line_num, rec, ""))
    return _records_to_parsed(path, records, True, len(records))


def _parse_parquet(path: Path) -> _Parsed:
    table, groups = read_parquet(path)
    missing = [c for c in REQUIRED if c not in table.column_names]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}")
    cols = []
    for f in SCHEMA:
        if f.name not in table.column_names:
            cols.append(pa.nulls(table.num_rows, f.type))
            continue
        col = table[f.name]
        try:
            cols.append(col.cast(f.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise InputError(
                f"{path}: column '{f.name}' has type {col.type}; expected {f.type}"
            ) from None
    table = pa.Table.from_arrays(cols, schema=SCHEMA)
    locs = np.arange(table.num_rows, dtype=np.int64)
    return _Parsed(table, locs, lambda r: parquet_where(int(r), groups), [], table.num_rows)


def parse_file(path: Path) -> _Parsed:
    """Parse one responses file into the fixed schema (no validation of values yet)."""
    fmt = check_readable(path)
    parsed = {"jsonl": _parse_jsonl, "csv": _parse_csv, "parquet": _parse_parquet}[fmt](path)
    if parsed.n_read == 0:
        raise InputError(f"{path}: no rows")
    return parsed


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


def _validate(parsed: _Parsed, path: Path, fi: int, images: Images) -> tuple[np.ndarray, list]:
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
    weight = _np(t["weight"], 1.0)
    check(
        ~np.isfinite(weight) | (weight < 0),
        "weight",
        lambda i: f"weight must be a finite number >= 0, got {weight[i]}",
    )
    img = image_index(images, t["image_id"])
    check(
        img < 0,
        "image_id",
        lambda i: f"unknown image_id {t['image_id'][i].as_py()!r} (not in the images table)",
    )

    is_rating = (task >= 0) & (task < 3)
    is_points = (task == 3) | (task == 4)
    is_words = task == WORDS
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
    return ~check.bad, check.rejected


# ------------------------------------------------------------------------------ reading


def read_responses(
    paths: Sequence[str | Path], images: Images, on_error: OnError = "fail"
) -> tuple[Responses, list[Rejection], ReadStats]:
    """Read, validate and combine response files (any order, any number of files).

    Returns the used responses, the rejected rows (sorted by file and line) and per-file
    counts. With ``on_error="fail"`` the first bad row raises an InputError naming its file,
    line and field; with ``"skip"`` bad rows are returned as rejections. A (image,
    annotator, task) seen twice keeps its first occurrence and rejects the later ones.
    """
    if on_error not in ("fail", "skip"):
        raise ValueError(f"on_error must be 'fail' or 'skip', got {on_error!r}")
    if not paths:
        raise InputError("no responses files given")
    tables, rejected, stats = [], [], ReadStats()
    for fi, p in enumerate(paths):
        path = Path(p)
        parsed = parse_file(path)
        keep, bad = _validate(parsed, path, fi, images)
        rej = [
            Rejection(r.file, r.where, r.field, r.reason, r.row, (fi, r.order[1]))
            for r in parsed.rejected
        ]
        rejected += rej + bad
        kept = (
            parsed.table.filter(pa.array(keep))
            .append_column("_loc", pa.array(parsed.locs[keep]))
            .append_column("_file", pa.array(np.full(int(keep.sum()), fi, dtype=np.int64)))
        )
        tables.append((kept, parsed.where))
        stats.files.append(
            {"path": str(path), "read": parsed.n_read, "used": 0, "rejected": len(rej) + len(bad)}
        )

    whole = pa.concat_tables([t for t, _ in tables]).combine_chunks()
    col = {name: whole[name].combine_chunks() for name in whole.column_names}
    img = image_index(images, col["image_id"])
    task = _np(pc.index_in(col["task"], value_set=pa.array(TASKS)), -1).astype(np.int8)
    ann = _np(pc.dictionary_encode(col["annotator_id"]).indices, -1)
    file_idx = col["_file"].to_numpy()
    loc = col["_loc"].to_numpy()
    # duplicates: sort by key then input order; every repeat of the previous key is rejected
    order = np.lexsort((loc, file_idx, task, ann, img))
    same = (
        (img[order[1:]] == img[order[:-1]])
        & (ann[order[1:]] == ann[order[:-1]])
        & (task[order[1:]] == task[order[:-1]])
    )
    dup = np.zeros(len(img), bool)
    first = order.copy()
    for k in np.flatnonzero(same):  # propagate each run's first row (runs are short)
        first[k + 1] = first[k]
    dup[order[1:][same]] = True
    for k in np.flatnonzero(same):
        row, orig = order[k + 1], first[k + 1]
        where_first = tables[file_idx[orig]][1](loc[orig])
        rejected.append(
            Rejection(
                str(paths[file_idx[row]]),
                tables[file_idx[row]][1](loc[row]),
                "annotator_id",
                f"duplicate response of annotator {col['annotator_id'][int(row)].as_py()!r} "
                f"for image {col['image_id'][int(row)].as_py()!r}, task {TASKS[task[row]]!r} "
                f"(first at {paths[file_idx[orig]]}: {where_first})",
                whole.slice(int(row), 1).select(SCHEMA.names).to_pylist()[0],
                (int(file_idx[row]), int(loc[row])),
            )
        )
        stats.files[file_idx[row]]["rejected"] += 1
    rejected.sort(key=lambda r: r.order)
    if rejected and on_error == "fail":
        raise InputError.from_rejection(rejected[0], more=len(rejected) - 1)

    keep = ~dup
    for fi in range(len(paths)):
        stats.files[fi]["used"] = int(np.count_nonzero(keep & (file_idx == fi)))
    whole = whole.filter(pa.array(keep))
    pts, sel = whole["points"].combine_chunks(), whole["selected"].combine_chunks()
    n_pts = _np(pc.list_value_length(pts), 0)
    n_sel = _np(pc.list_value_length(sel), 0)
    coords = _np(pts.flatten().flatten(), np.nan) if len(pts) else np.zeros(0)
    responses = Responses(
        image=img[keep],
        task=task[keep],
        weight=_np(whole["weight"], 1.0).astype(np.float64),
        rating=_np(whole["rating"], np.nan).astype(np.float64),
        point_offsets=np.concatenate([[0], np.cumsum(n_pts)]).astype(np.int64),
        points=coords.reshape(-1, 2).astype(np.float64),
        selected_offsets=np.concatenate([[0], np.cumsum(n_sel)]).astype(np.int64),
        selected=_np(sel.flatten(), 0).astype(np.int64) if len(sel) else np.zeros(0, np.int64),
    )
    return responses, rejected, stats
