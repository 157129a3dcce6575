"""The dataset as Hub-ready Parquet shards: ``data/train-0000N-of-0000M.parquet``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rfengine.errors import InputError

#: the default bound on a shard's file size (as ``datasets.push_to_hub``'s ``max_shard_size``)
MAX_SHARD_SIZE = "500MB"


def parse_size(text: str | int) -> int:
    """``"500MB"``, ``"200KB"``, ``"1GiB"`` or a number of bytes -> bytes (``datasets``' rule:
    KB = 10^3, KiB = 2^10)."""
    from datasets.utils.py_utils import convert_file_size_to_int

    try:
        size = convert_file_size_to_int(text)
    except (ValueError, TypeError):
        raise InputError(
            f"--max-shard-size: expected a size such as 500MB or 200KB, got {text!r}"
        ) from None
    if size <= 0:
        raise InputError(f"--max-shard-size: must be positive, got {text!r}")
    return int(size)


def _write(ds: Any, n: int, folder: Path) -> list[Path]:
    """``ds`` in ``n`` contiguous shards, external image files embedded as bytes (what
    ``push_to_hub`` does: ``embed_table_storage``), so the Parquet files stand alone."""
    from datasets.table import embed_table_storage

    paths = []
    for k in range(n):
        shard = ds.shard(num_shards=n, index=k, contiguous=True)
        shard = shard.with_format("arrow").map(
            embed_table_storage, batched=True, keep_in_memory=True, desc=None
        )
        path = folder / f"train-{k:05d}-of-{n:05d}.parquet"
        shard.with_format(None).to_parquet(str(path))
        paths.append(path)
    return paths


def write_shards(ds: Any, dest: Path, max_size: int) -> list[Path]:
    """Write ``ds`` under ``dest/data/`` in shards of at most ``max_size`` bytes each.

    The first guess is ``datasets``' own (estimated bytes / bound + 1 shards); a shard file
    over the bound (compression varies) doubles the count, until every file fits or a shard
    is one row (then one row is larger than the bound: an error naming it).
    """
    data = dest / "data"
    data.mkdir(parents=True, exist_ok=True)
    n = min(len(ds), int(ds._estimate_nbytes() / max_size) + 1) or 1
    while True:
        paths = _write(ds, n, data)
        big = [p for p in paths if p.stat().st_size > max_size]
        if not big:
            return paths
        if n >= len(ds):
            raise InputError(
                f"{big[0].name}: one row takes {big[0].stat().st_size} bytes, more than "
                f"--max-shard-size ({max_size} bytes)"
            )
        for p in paths:
            p.unlink()
        n = min(len(ds), 2 * n)
