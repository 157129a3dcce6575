"""A run's progress, typed: what ``progress.json`` in the work folder records after each
stage, so that ``--resume`` reuses what an interrupted run finished. Both engines fill the
same ``RunState``; the JSON it saves is the work format ``FORMAT``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, TypedDict

from rfengine.ingest import Images
from rfengine.ingest.responses import ResponseReader
from rfengine.options import AggregateOptions
from rfengine.run.plan import Plan
from rfengine.store import WorkDir

#: the work folder's format: a run resumes only a work folder of the same format
FORMAT = "rfengine-work/2"


class PartRecord(TypedDict):
    """A finished partition: its target shards, per-file counts, stage timings (s) and
    rating pair counts (JSON-ready)."""

    targets: list[dict[str, Any]]
    stats: list[list[int]]
    timings: dict[str, float]
    rating_pairs: dict[str, dict[str, list[int]]]


@dataclass
class RunState:
    """The progress of one run into one OUT.

    ``key`` identifies the run (inputs' hashes, image files, options): a resume needs the
    same. ``per_part``: images per partition, fixed once the read stage has split the
    rows. ``read_stats``: rows read and rejected per file by the read stage, and
    ``read_s`` its seconds. ``parts``: each finished partition's record. ``trust``: the
    estimate's summary (``weights="estimate"``; the table is ``annotators.parquet``).
    ``norm_bounds``: the run's score ranges (``rapidata-2025``).
    """

    key: dict[str, Any]
    per_part: int | None = None
    partitioned: bool = False
    read_stats: list[list[int]] | None = None
    read_s: float | None = None
    parts: dict[int, PartRecord] = field(default_factory=dict)
    trust: dict[str, Any] | None = None
    norm_bounds: dict[str, list[float]] | None = None

    def to_json(self) -> dict[str, Any]:
        """The progress file's content (fields not yet set are left out)."""
        doc: dict[str, Any] = {"key": self.key, "partitioned": self.partitioned}
        doc["parts"] = {str(p): rec for p, rec in sorted(self.parts.items())}
        for name in ("per_part", "read_stats", "read_s", "trust", "norm_bounds"):
            if getattr(self, name) is not None:
                doc[name] = getattr(self, name)
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any] | None) -> RunState | None:
        """The state a progress file recorded; None for anything not written by ``to_json``
        (a resume then starts over)."""
        if not isinstance(doc, dict) or not isinstance(doc.get("key"), dict):
            return None
        try:
            parts = {int(p): rec for p, rec in doc.get("parts", {}).items()}
        except (AttributeError, TypeError, ValueError):
            return None
        names = ("per_part", "read_stats", "read_s", "trust", "norm_bounds")
        return cls(
            key=doc["key"],
            partitioned=bool(doc.get("partitioned")),
            parts=parts,
            **{name: doc.get(name) for name in names},
        )

    @classmethod
    def load(cls, work: WorkDir) -> RunState | None:
        """The progress of an earlier, unfinished run in ``work``, if any."""
        return cls.from_json(work.load())

    def save(self, work: WorkDir) -> None:
        """Record this progress in ``work`` (atomically)."""
        work.save(self.to_json())


class Say:
    """Progress lines on stderr, unless quiet (``on`` also switches the progress bars)."""

    def __init__(self, on: bool):
        self.on = on

    def __call__(self, msg: str) -> None:
        if self.on:
            print(f"rfengine: {msg}", file=sys.stderr)


@dataclass
class Run:
    """What both engines drive through the same stages: the work folder, the reader of the
    responses, the images, the options, the partition plan, the progress (saved after each
    stage) and each stage's timing in seconds."""

    work: WorkDir
    reader: ResponseReader
    images: Images
    options: AggregateOptions
    plan: Plan
    state: RunState
    say: Say
    timings: dict[str, float] = field(default_factory=dict)

    def save(self) -> None:
        """Record the progress (after a stage, or a partition)."""
        self.state.save(self.work)

    @property
    def has_regions(self) -> bool:
        """Whether the read stage kept any region response (then every partition writes
        the region heatmap kinds, nulls where an image has none)."""
        return any(f.get("regions", 0) for f in self.state.read_stats or [])


__all__ = ["FORMAT", "PartRecord", "Run", "RunState", "Say"]
