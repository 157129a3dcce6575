"""Writing a responses file (what the importers of the annotation front-ends produce).

A responses file is JSON Lines or Parquet (by its extension), written atomically. A Parquet
file carries rfengine's mark in its schema metadata, so that ``--overwrite`` can tell it
from a user's; JSON Lines has no room for a mark, so an existing ``.jsonl`` is never
replaced (``rfengine.store.owned``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rfengine.errors import InputError
from rfengine.store.owned import check_file, write_atomic

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


__all__ = ["check_responses_target", "write_responses"]
