"""Opening tables by extension: JSONL, CSV and Parquet, with one-line errors for broken files."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from rfengine.errors import InputError

Format = Literal["jsonl", "csv", "parquet"]

_EXTENSIONS: dict[str, Format] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}


def is_unicode(text: str) -> bool:
    """Whether ``text`` can be written as UTF-8 (JSON's ``\\ud800`` escape decodes to a
    lone surrogate, which cannot)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def table_format(path: Path) -> Format:
    """The format named by the file's extension; an InputError for anything else."""
    fmt = _EXTENSIONS.get(path.suffix.lower())
    if fmt is None:
        known = ", ".join(sorted(_EXTENSIONS))
        raise InputError(
            f"{path}: unknown table extension {path.suffix!r}; expected one of {known}"
        )
    return fmt


def not_a_file(path: Path) -> str:
    """Why ``path`` is not a regular file: it does not exist, or what it is instead."""
    if not path.exists():
        return "no such file"
    if path.is_dir():
        return "a folder, not a file"
    return "not a regular file (a FIFO, socket or device)"


def check_readable(path: Path) -> Format:
    """Check that ``path`` exists, is non-empty and looks like its extension says."""
    fmt = table_format(path)
    if not path.is_file():
        raise InputError(f"{path}: {not_a_file(path)}")
    size = path.stat().st_size
    if size == 0:
        raise InputError(f"{path}: empty file")
    with path.open("rb") as fh:
        head = fh.read(4)
        if fmt == "parquet":
            fh.seek(max(size - 4, 0))
            tail = fh.read(4)
    if fmt == "parquet" and head != b"PAR1":
        raise InputError(f"{path}: not a Parquet file (no PAR1 magic bytes)")
    if fmt == "parquet" and tail != b"PAR1":
        raise InputError(f"{path}: truncated Parquet file (no footer)")
    if fmt != "parquet" and head == b"PAR1":
        raise InputError(f"{path}: this is a Parquet file, but its extension says {fmt}")
    if fmt != "parquet" and b"\x00" in head:
        raise InputError(f"{path}: binary data in a {fmt} file")
    return fmt


#: a CSV cell may be this long (Python's csv module stops at 128 KiB by default)
CSV_CELL_BYTES = 16 << 20
#: a cell read with errors="surrogateescape" holds these where the file's bytes were not UTF-8
NOT_UTF8 = re.compile("[\udc80-\udcff]")


def csv_header(path: Path, fh: Any) -> tuple[Any, list[str]]:
    """A ``csv.DictReader`` over ``fh`` (opened with ``utf-8-sig``, so a BOM is accepted)
    and its header, refusing a header that names a column twice or not at all."""
    csv.field_size_limit(CSV_CELL_BYTES)
    reader = csv.DictReader(fh)
    try:
        header = reader.fieldnames or []
    except csv.Error as exc:
        raise InputError(f"{path}: line 1: unreadable CSV header: {exc}") from None
    if any(NOT_UTF8.search(h) for h in header):
        raise InputError(f"{path}: line 1: the header is not valid UTF-8")
    stripped = [h.strip() for h in header]
    dup = sorted({h for h in stripped if stripped.count(h) > 1})
    if dup:
        raise InputError(f"{path}: line 1: column(s) named more than once: {', '.join(dup)}")
    if "" in stripped:
        raise InputError(f"{path}: line 1: a column has no name")
    return reader, header


def read_parquet(path: Path) -> tuple[pa.Table, list[int]]:
    """The whole Parquet table and its row-group sizes."""
    try:
        pf = pq.ParquetFile(path)
        sizes = [pf.metadata.row_group(i).num_rows for i in range(pf.metadata.num_row_groups)]
        return pf.read(), sizes
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{path}: unreadable Parquet file: {exc}") from None


def parquet_where(row: int, group_sizes: list[int]) -> str:
    """``"row group G, row R"`` for a 0-based global row index."""
    for g, n in enumerate(group_sizes):
        if row < n:
            return f"row group {g}, row {row}"
        row -= n
    return f"row {row}"


def as_float(v: int | float) -> float:
    """``float(v)``, an integer beyond float range as +-inf (as pyarrow's reader reads it,
    so that a row's verdict does not depend on which reader parsed its block)."""
    try:
        return float(v)
    except OverflowError:
        return math.inf if v > 0 else -math.inf


def json_error(exc: Exception) -> str:
    """What is wrong with a JSON text, in a few words."""
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    if isinstance(exc, json.JSONDecodeError):
        return exc.msg
    return str(exc)  # e.g. an integer of more than 4300 digits
