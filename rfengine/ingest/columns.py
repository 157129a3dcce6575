"""What a responses read produces: the interchange format's Arrow schema, the columns kept
after validation, the ``Responses`` of a range of images and the counts of a read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa

OnError = Literal["fail", "skip"]

#: one drawn region: a polygon (``[[x, y], ...]`` image fractions, closed implicitly) or a
#: mask at the image's size (``counts``: row-major run lengths, unmarked first)
REGION = pa.struct(
    [
        ("polygon", pa.list_(pa.list_(pa.float64()))),
        ("mask", pa.struct([("size", pa.list_(pa.int64())), ("counts", pa.list_(pa.int64()))])),
    ]
)

SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("annotator_id", pa.string()),
        ("task", pa.string()),
        ("weight", pa.float64()),
        ("rating", pa.float64()),
        ("points", pa.list_(pa.list_(pa.float64()))),
        ("selected", pa.list_(pa.int64())),
        ("regions", pa.list_(REGION)),
    ]
)

REQUIRED = ("image_id", "annotator_id", "task")

#: the columns of validated rows: the image's row and the task's code in place of their
#: names, the schema's other fields, and where the row came from (file index, line or row)
KEPT = pa.schema(
    [
        ("image", pa.int32()),
        SCHEMA.field("annotator_id"),
        ("task", pa.int8()),
        *(SCHEMA.field(name) for name in ("weight", "rating", "points", "selected", "regions")),
        ("_file", pa.int32()),
        ("_loc", pa.int64()),
    ]
)


@dataclass
class Responses:
    """Validated responses as flat arrays (one entry per response unless noted), sorted by
    image, task and annotator id (``ResponseReader.finish`` guarantees it; the aggregation
    relies on the grouping by image).

    ``points[point_offsets[k]:point_offsets[k+1]]`` are response k's ``(x, y)`` fractions,
    and ``selected[selected_offsets[k]:selected_offsets[k+1]]`` its word indices. Its
    regions are ``region_offsets[k]:region_offsets[k+1]``; region q is a polygon
    ``vertices[vertex_offsets[q]:vertex_offsets[q+1]]`` or a mask at its image's size whose
    row-major run lengths (unmarked first) are ``runs[run_offsets[q]:run_offsets[q+1]]``
    (one of the two ranges is empty).
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
    region_offsets: np.ndarray | None = None  # (n + 1,) int64; None: no regions at all
    vertex_offsets: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))
    vertices: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))  # (V, 2) float64
    run_offsets: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))
    runs: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # (U,) int64

    def __post_init__(self) -> None:
        if self.region_offsets is None:
            self.region_offsets = np.zeros(len(self) + 1, dtype=np.int64)

    def __len__(self) -> int:
        return int(self.image.shape[0])

    def take(self, keep: np.ndarray) -> Responses:
        """The responses where the boolean ``keep`` is set, in the same order."""
        n_pts = np.diff(self.point_offsets)[keep]
        n_sel = np.diff(self.selected_offsets)[keep]
        pt_rows = np.repeat(keep, np.diff(self.point_offsets))
        sel_rows = np.repeat(keep, np.diff(self.selected_offsets))
        assert self.region_offsets is not None
        reg_rows = np.repeat(keep, np.diff(self.region_offsets))
        n_vert = np.diff(self.vertex_offsets)[reg_rows]
        n_runs = np.diff(self.run_offsets)[reg_rows]
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
            region_offsets=offsets_of(np.diff(self.region_offsets)[keep]),
            vertex_offsets=offsets_of(n_vert),
            vertices=self.vertices[np.repeat(reg_rows, np.diff(self.vertex_offsets))],
            run_offsets=offsets_of(n_runs),
            runs=self.runs[np.repeat(reg_rows, np.diff(self.run_offsets))],
        )


def offsets_of(lengths: np.ndarray) -> np.ndarray:
    """``(n + 1,)`` int64 offsets of consecutive ranges of ``lengths``."""
    return np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)


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


def filled(arr: pa.Array | pa.ChunkedArray, fill: Any) -> np.ndarray:
    """An Arrow column as numpy, nulls replaced by ``fill``."""
    return arr.fill_null(fill).to_numpy(zero_copy_only=False)
