"""Parsing responses files into Arrow chunks of one fixed schema (``columns.SCHEMA``).

JSONL in blocks of whole lines by pyarrow's reader (falling back, for a block it cannot
parse, to a line-by-line parse that pins each problem to its line), CSV line by line,
Parquet in batches with a checked cast. A row that cannot be parsed is a rejection with
its line or row, never an abort.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.json as pj
import pyarrow.parquet as pq

from rfengine.errors import InputError, Rejection, shorten
from rfengine.ingest.columns import REQUIRED, SCHEMA
from rfengine.ingest.formats import (
    NOT_UTF8,
    as_float,
    check_readable,
    csv_header,
    is_unicode,
    json_error,
    parquet_where,
)
from rfengine.ingest.regions import region_type_error

#: integers in ``selected`` must fit int64 (an index beyond is out of range anyway)
_INT64 = 2**63

CHUNK_ROWS = 250_000  # rows per chunk for CSV and Parquet

CHUNK_BYTES = 32 << 20  # bytes per JSONL block (whole lines)


@dataclass
class Parsed:
    table: pa.Table  # SCHEMA
    locs: np.ndarray  # line (JSONL/CSV) or global row (Parquet) per table row
    where: Any  # locs value -> locator text
    rejected: list[Rejection]  # rows that could not be parsed at all
    n_read: int


def _line_where(n: int) -> str:
    return f"line {n}"


class _Repeated(ValueError):
    """A JSON object that gives one key twice (``json.loads`` would keep the last)."""

    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def _no_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` that refuses a key given twice."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Repeated(key)
        out[key] = value
    return out


def _coerce(rec: Any, from_text: bool) -> tuple[dict[str, Any] | None, str, str]:
    """One record to the schema's Python types, or (None, field, reason)."""
    if not isinstance(rec, dict):
        return None, "", "expected a JSON object"
    out: dict[str, Any] = {}
    for f in REQUIRED:
        v = rec.get(f)
        if v is not None and not isinstance(v, str):
            return None, f, f"expected a string, got {shorten(v)}"
        if v is not None and not is_unicode(v):
            return None, f, "invalid Unicode (a lone surrogate, e.g. an escaped \\ud800)"
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
    v = rec.get("regions")
    if from_text and isinstance(v, str):
        try:
            v = json.loads(v) if v.strip() else None
        except (ValueError, RecursionError) as exc:
            return None, "regions", f"malformed JSON cell: {json_error(exc)}"
    why = region_type_error(v)
    if why:
        return None, "regions", why
    out["regions"] = v and [
        {
            "polygon": r.get("polygon") and [[as_float(c) for c in p] for p in r["polygon"]],
            "mask": r.get("mask") and {k: r["mask"].get(k) for k in ("size", "counts")},
        }
        for r in v
    ]
    return out, "", ""


def _records_to_parsed(
    path: Path, records: list[tuple[int, Any, Any]], from_text: bool, n_read: int
) -> Parsed:
    """(line, record or raw text, parse error) triples -> Parsed, rejecting bad records; an
    error is a reason, or a (field, reason) pair."""
    rows, locs, rejected = [], [], []
    for line, rec, err in records:
        if err:
            raw = shorten(rec, 1000) if not isinstance(rec, str) else rec[:1000]
            fld, why = err if isinstance(err, tuple) else ("", err)
            rejected.append(Rejection(str(path), _line_where(line), fld, why, raw, (0, line)))
            continue
        out, fld, why = _coerce(rec, from_text)
        if out is None:
            rejected.append(Rejection(str(path), _line_where(line), fld, why, rec, (0, line)))
            continue
        rows.append(out)
        locs.append(line)
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    return Parsed(table, np.array(locs, dtype=np.int64), _line_where, rejected, n_read)


def _jsonl_blocks(path: Path, chunk_bytes: int) -> Iterator[tuple[int, bytes, bool]]:
    """(first line number, whole lines, at end of file) blocks of about ``chunk_bytes``."""
    with path.open("rb") as fh:
        line, rest = 1, b""
        if fh.read(3) != b"\xef\xbb\xbf":  # a UTF-8 byte-order mark is skipped, as in tables
            fh.seek(0)
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


def _parse_jsonl(path: Path, chunk_bytes: int) -> Iterator[Parsed]:
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
                # (pyarrow refuses a field given twice in a line: that block, too, goes line
                # by line, where _no_repeats names the field)
                if table.num_rows == n_lines:
                    locs = np.arange(first, first + n_lines, dtype=np.int64)
                    yield Parsed(table.select(SCHEMA.names), locs, _line_where, [], n_lines)
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
                records.append((n, json.loads(text, object_pairs_hook=_no_repeats), ""))
            except _Repeated as exc:
                records.append((n, text[:1000], (exc.key, "given twice")))
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


def _parse_csv(path: Path, chunk_rows: int) -> Iterator[Parsed]:
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


def _parse_parquet(path: Path, chunk_rows: int) -> Iterator[Parsed]:
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
            keep = np.ones(n, dtype=bool)
            rejected: list[Rejection] = []
            cols = []
            for f in SCHEMA:
                if f.name not in names:
                    cols.append(pa.nulls(n, f.type))
                    continue
                col, bad = _cast_rows(batch.column(f.name), f.type)
                cols.append(col)
                for k in np.flatnonzero(bad & keep):
                    where = parquet_where(start + int(k), groups)
                    value = shorten(batch.column(f.name)[int(k)].as_py())
                    why = f"value out of range for {f.type}: {value}"
                    rejected.append(Rejection(str(path), where, f.name, why, None, (0, start + k)))
                keep &= ~bad
            table = pa.Table.from_arrays(cols, schema=SCHEMA)
            locs = np.arange(start, start + n, dtype=np.int64)
            if not keep.all():
                table, locs = table.filter(pa.array(keep)), locs[keep]
            yield Parsed(table, locs, lambda r: parquet_where(int(r), groups), rejected, n)
            start += n
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{path}: unreadable Parquet data after row {start}: {exc}") from None


def _cast_rows(arr: pa.Array, typ: pa.DataType) -> tuple[pa.Array, np.ndarray]:
    """``arr`` cast to ``typ``, and which rows could not be (a value out of the type's
    range, e.g. 2**64 - 1 for int64): those become nulls and are flagged, so that one bad
    row is rejected instead of the whole file. The bad rows are found by halving, so a
    batch with a few of them costs a few dozen casts."""
    try:
        return arr.cast(typ), np.zeros(len(arr), dtype=bool)
    except pa.ArrowInvalid:
        if len(arr) == 1:
            return pa.nulls(1, typ), np.ones(1, dtype=bool)
    # halves by ``take``, not slices: a sliced list array's cast sees its whole child array
    half = len(arr) // 2
    lo, hi = (arr.take(pa.array(np.arange(a, b))) for a, b in ((0, half), (half, len(arr))))
    (a, bad_a), (b, bad_b) = _cast_rows(lo, typ), _cast_rows(hi, typ)
    return pa.concat_arrays([a, b]), np.concatenate([bad_a, bad_b])


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
    if pa.types.is_struct(dst):
        return pa.types.is_struct(src) and all(
            src.get_field_index(f.name) < 0 or _castable(src.field(f.name).type, f.type)
            for f in dst
        )
    if pa.types.is_list(dst) or pa.types.is_large_list(dst):
        return (pa.types.is_list(src) or pa.types.is_large_list(src)) and _castable(
            src.value_type, dst.value_type
        )
    return pa.types.is_integer(dst) and pa.types.is_integer(src)


def parse_file(
    path: Path, chunk_rows: int = CHUNK_ROWS, chunk_bytes: int = CHUNK_BYTES
) -> Iterator[Parsed]:
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
