"""The plan of a run: how many images go in a partition, and whether the memory budget can
hold the largest image at all. Every memory rule of a run is decided here (the splat's
batch size within a partition is ``aggregation.compute.splat_budget``'s, from the same
budget).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from rfengine.errors import InputError
from rfengine.ingest import Images
from rfengine.ingest.formats import table_format
from rfengine.options import AggregateOptions

#: bytes of memory one response row costs while a partition is aggregated (Arrow columns,
#: sort and numpy copies, annotator strings), measured with benchmarks/ingest.py
ROW_BYTES = 1000
#: copies of a partition's heatmaps alive at once, at most: the maps (the splat casts them
#: into one block per size, ``result.Heatmaps``), an Arrow slice and a shard where rows are
#: not consecutive in a block (else both are views), plus the previous partition's maps,
#: which the writer thread is still writing
HEAT_COPIES = 4
#: rough bytes per JSONL or CSV row, to estimate a file's rows from its size
TEXT_ROW_BYTES = 110


def estimate_rows(path: Path) -> int:
    """A responses file's rows: exact for Parquet, from its size for text."""
    if table_format(path) == "parquet":
        import pyarrow.parquet as pq

        try:
            return pq.ParquetFile(path).metadata.num_rows
        except (pa.ArrowException, OSError):
            return 0  # parse_file reports it properly
    return path.stat().st_size // TEXT_ROW_BYTES + 1


def min_memory_budget(images: Images, options: AggregateOptions) -> int:
    """The smallest memory budget that can aggregate ``images`` at ``options``' grid: one
    image of the largest grid's float32 splat output and its cast copy, which no batching
    can split."""
    if options.heatmap_size is not None:
        pixels = options.heatmap_size[0] * options.heatmap_size[1]
    else:
        pixels = int((images.width * images.height).max()) if len(images) else 0
    return pixels * (4 + options.itemsize)


def check_budget(images: Images, options: AggregateOptions) -> None:
    """Refuse up front a run whose largest image cannot fit the memory budget, rather than
    attempt it (an InputError naming the image and what would fit)."""
    need = min_memory_budget(images, options)
    if need > options.memory_budget:
        k = int(np.argmax(images.width * images.height))
        grid = options.heatmap_size or (int(images.height[k]), int(images.width[k]))
        raise InputError(
            f"image {images.ids[k]!r} needs {need / 2**20:.1f} MiB for one heatmap at "
            f"{grid[0]}x{grid[1]}, over the memory budget of "
            f"{options.memory_budget / 2**20:.1f} MiB: raise --memory-budget to at least "
            f"{math.ceil(need / 2**20)}MB or choose a smaller --heatmap-size"
        )


def plan_partitions(images: Images, rows: int, options: AggregateOptions) -> int:
    """Images per partition, so that a partition's rows and heatmaps fit the budget."""
    half = max(1, options.memory_budget // 2)
    n = len(images)
    if options.heatmap_size is None:
        pixels = int((images.width * images.height).max()) if n else 1
    else:
        pixels = options.heatmap_size[0] * options.heatmap_size[1]
    heat_per_image = 2 * pixels * options.itemsize  # both kinds, held until written
    by_heat = max(1, half // (HEAT_COPIES * heat_per_image))
    parts_by_rows = max(1, math.ceil(rows * ROW_BYTES / half))
    by_rows = max(1, math.ceil(n / parts_by_rows))
    return max(1, min(by_heat, by_rows, n))


@dataclass(frozen=True)
class Plan:
    """A run's partitions: contiguous ranges of ``per_part`` images-table rows (the last one
    shorter), in table order."""

    n_images: int
    per_part: int

    @property
    def count(self) -> int:
        return -(-self.n_images // self.per_part)

    def span(self, p: int) -> tuple[int, int]:
        """``(lo, hi)``: partition ``p``'s rows."""
        return p * self.per_part, min(self.n_images, (p + 1) * self.per_part)

    def split(self, chunk: pa.Table) -> Iterator[tuple[int, pa.Table]]:
        """``(p, rows)`` for each partition holding some of ``chunk``'s validated rows
        (schema ``KEPT``), their input order kept within each."""
        part = chunk["image"].to_numpy() // self.per_part
        order = np.argsort(part, kind="stable")
        chunk, part = chunk.take(pa.array(order)), part[order]
        bounds = np.searchsorted(part, np.arange(self.count + 1))
        for p in np.flatnonzero(np.diff(bounds)):
            yield int(p), chunk.slice(int(bounds[p]), int(bounds[p + 1] - bounds[p]))


__all__ = [
    "HEAT_COPIES",
    "ROW_BYTES",
    "Plan",
    "check_budget",
    "estimate_rows",
    "min_memory_budget",
    "plan_partitions",
]
