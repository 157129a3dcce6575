"""The vocabulary of rich feedback, defined once: tasks, criteria, heatmap kinds, limits.

Everything else imports these names; none of them is restated elsewhere.

Pixel-centre convention: output pixel ``k`` of a side of ``n`` pixels covers the fractions
``[k / n, (k + 1) / n)`` of the image side, and its centre is at ``(k + 0.5) / n``. Click
coordinates are fractions of the image side in [0, 1], origin top-left.

>>> Task.from_name("coherence_points")
<Task.COHERENCE_POINTS: 3>
>>> Task.COHERENCE_POINTS.is_points, Task.COHERENCE_POINTS.heatmap_kind
(True, 'coherence')
>>> [t.label for t in Task if t.is_rating]
['style', 'coherence', 'alignment']
>>> Task.ALIGNMENT_REGIONS.heatmap_kind
'alignment_region'
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class Task(IntEnum):
    """The annotation tasks; the value is the code stored in validated responses."""

    STYLE = 0
    COHERENCE = 1
    ALIGNMENT = 2
    COHERENCE_POINTS = 3
    ALIGNMENT_POINTS = 4
    WORDS = 5
    COHERENCE_REGIONS = 6
    ALIGNMENT_REGIONS = 7

    @property
    def label(self) -> str:
        """The task's name in the interchange format (``"coherence_points"``)."""
        return self.name.lower()

    @property
    def is_rating(self) -> bool:
        """A Likert rating (1..5) of one criterion."""
        return self <= Task.ALIGNMENT

    @property
    def is_points(self) -> bool:
        """Up to ``MAX_POINTS`` clicks on the image."""
        return self in (Task.COHERENCE_POINTS, Task.ALIGNMENT_POINTS)

    @property
    def is_regions(self) -> bool:
        """Drawn regions (polygons or masks) on the image, for one of the two criteria."""
        return self in (Task.COHERENCE_REGIONS, Task.ALIGNMENT_REGIONS)

    @property
    def heatmap_kind(self) -> str:
        """The heatmap a points or regions task feeds (``"coherence"``, ``"alignment"``,
        ``"coherence_region"``, ``"alignment_region"``)."""
        if self.is_points:
            return self.label.removesuffix("_points")
        if self.is_regions:
            return self.label.removesuffix("s")
        raise ValueError(f"task {self.label!r} has no heatmap")

    @classmethod
    def from_name(cls, name: str) -> Task:
        """The task named ``name`` in the interchange format."""
        try:
            return cls[name.upper()]
        except KeyError:
            raise ValueError(f"unknown task {name!r}; expected one of {TASKS}") from None


#: task names in code order, as written in the interchange format
TASKS: tuple[str, ...] = tuple(t.label for t in Task)
#: the rated criteria, in the published dataset's order of codes (style, coherence, alignment)
CRITERIA: tuple[str, ...] = tuple(t.label for t in Task if t.is_rating)
#: the points tasks, and the heatmap kind each one feeds
POINT_TASKS: tuple[Task, ...] = tuple(t for t in Task if t.is_points)
HEATMAP_KINDS: tuple[str, ...] = tuple(t.heatmap_kind for t in POINT_TASKS)
#: the regions tasks, and their heatmap kinds (columns only where a run has region responses)
REGION_TASKS: tuple[Task, ...] = tuple(t for t in Task if t.is_regions)
REGION_KINDS: tuple[str, ...] = tuple(t.heatmap_kind for t in REGION_TASKS)
#: at most this many regions per annotator, image and regions task
MAX_REGIONS = 16
#: a polygon has 3 to this many vertices
MAX_VERTICES = 1000
#: at most this many clicks per annotator, image and points task (the seed: "up to three")
MAX_POINTS = 3
#: the last word slot of every prompt: "the image has no mistake"
NO_MISTAKE = "[No_Mistake]"
#: trust weights are finite and at most this (a larger one is a rejected row): sums of a
#: campaign's weights then stay far from float overflow
MAX_WEIGHT = 1e6
#: a positive trust weight is at least this (a smaller one is a rejected row): a weight, its
#: square and their sums then stay normal numbers in float32 outputs, where 1e-300 became
#: a total of 0 beside word scores of 3e-300 (an infinite share)
MIN_WEIGHT = 1e-12
#: widths and heights of images, in pixels, at most this
MAX_SIDE = 16384


def size_key(height: np.ndarray, width: np.ndarray) -> np.ndarray:
    """One int64 per ``(height, width)`` pair, to group images by size (inverse: ``split``)."""
    return np.asarray(height, dtype=np.int64) * (1 << 32) + np.asarray(width, dtype=np.int64)


def split_size_key(key: int) -> tuple[int, int]:
    """``(height, width)`` of a ``size_key``."""
    return int(key >> 32), int(key & 0xFFFFFFFF)


__all__ = [
    "CRITERIA",
    "HEATMAP_KINDS",
    "MAX_POINTS",
    "MAX_SIDE",
    "MAX_WEIGHT",
    "MIN_WEIGHT",
    "NO_MISTAKE",
    "POINT_TASKS",
    "REGION_KINDS",
    "REGION_TASKS",
    "MAX_REGIONS",
    "MAX_VERTICES",
    "TASKS",
    "Task",
    "size_key",
    "split_size_key",
]
