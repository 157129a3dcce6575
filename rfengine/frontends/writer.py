"""The importers' two ends: reading a service's results file, writing a responses file.

A responses file is JSON Lines or Parquet (by its extension), written atomically. A Parquet
file carries rfengine's mark in its schema metadata, so that ``--overwrite`` can tell it
from a user's; JSON Lines has no room for a mark, so an existing ``.jsonl`` is never
replaced (``rfengine.store.owned``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from rfengine.errors import InputError
from rfengine.ingest.formats import json_error
from rfengine.store.owned import check_file, write_atomic

#: how the coherence question was asked: as error severity (the seed: 5 = most errors, flipped
#: to 6 - N) or on the coherence scale (5 = coherent)
CoherenceScale = Literal["severity", "coherence"]
#: the Parquet schema metadata that marks a responses file as written by rfengine
MARK = {b"generator": b"rfengine responses"}


def _is_own(path: Path) -> bool:
    if path.suffix.lower() != ".parquet":
        return False
    import pyarrow.parquet as pq

    try:
        meta = pq.read_schema(path).metadata or {}
    except Exception:  # any unreadable file is not ours
        return False
    return meta.get(b"generator") == MARK[b"generator"]


def check_responses_target(out: Path, overwrite: bool) -> None:
    """Refuse ``out`` unless it ends in .jsonl or .parquet and is free, or ``overwrite``
    and a Parquet responses file rfengine wrote."""
    if out.suffix.lower() not in (".jsonl", ".parquet"):
        raise InputError(f"{out}: the responses file must end in .jsonl or .parquet")
    what = (
        "an rfengine responses file (only .parquet ones carry rfengine's mark: remove a "
        ".jsonl yourself)"
    )
    check_file(out, overwrite, _is_own, what)


def write_responses(rows: list[dict[str, Any]], out: Path) -> None:
    """Write responses rows (the interchange format's fields) to ``out`` atomically."""
    if out.suffix.lower() == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        from rfengine.ingest.columns import SCHEMA

        tmp = out.with_name(f".{out.name}.partial")
        try:
            pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA.with_metadata(MARK)), tmp)
            tmp.replace(out)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    else:
        write_atomic(out, "".join(json.dumps(r, allow_nan=False) + "\n" for r in rows))


def load_json(path: Path) -> Any:
    """A results file's JSON; anything unreadable is one InputError naming the file."""
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: invalid UTF-8 at byte {exc.start}") from None
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        line = f"line {exc.lineno}: " if isinstance(exc, json.JSONDecodeError) else ""
        raise InputError(f"{path}: {line}malformed JSON: {json_error(exc)}") from None


__all__ = ["CoherenceScale", "check_responses_target", "load_json", "write_responses"]
