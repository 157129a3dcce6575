"""What an aggregation produces: per-image scores, word scores and heatmaps.

Plain data: the aggregation stage builds these, the writers (``rfengine.store``) read them,
and neither imports the other through here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, overload

import numpy as np
import torch

from rfengine.errors import Rejection
from rfengine.ingest import Images, ReadStats
from rfengine.options import AggregateOptions
from rfengine.schema import CRITERIA

if TYPE_CHECKING:
    from rfengine.aggregation.trust import TrustEstimate

#: the rating scale: ``*_score_norm`` = (score - 1) / 4 by default
LIKERT_RANGE = (1.0, 5.0)


def _n_eff(w: np.ndarray, w2: np.ndarray | None) -> np.ndarray:
    if w2 is None:
        return np.full(w.shape, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(w2 > 0, w * w / w2, np.nan)


def _se(std: np.ndarray, w: np.ndarray, w2: np.ndarray | None) -> np.ndarray:
    if w2 is None:
        return np.full(w.shape, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(w > 0, std * np.sqrt(w2) / w, np.nan)


def _ci(
    value: np.ndarray, se: np.ndarray, n_eff: np.ndarray, level: float
) -> tuple[np.ndarray, np.ndarray]:
    """``value -+ t_q(n_eff - 1) se``, NaN where n_eff <= 1 or value is NaN."""
    from scipy.stats import t

    ok = (n_eff > 1) & ~np.isnan(value) & ~np.isnan(se)
    half = np.full(value.shape, np.nan)
    half[ok] = t.ppf(1 - (1 - level) / 2, n_eff[ok] - 1) * se[ok]
    return value - half, value + half


def merge_ranges(
    ranges: list[dict[str, tuple[float, float]]],
) -> dict[str, tuple[float, float]]:
    """The overall ``(min, max)`` per criterion of several ranges (NaN ones ignored)."""
    out = {}
    for c in CRITERIA:
        lo = [r[c][0] for r in ranges if not np.isnan(r[c][0])]
        hi = [r[c][1] for r in ranges if not np.isnan(r[c][1])]
        out[c] = (min(lo), max(hi)) if lo else (np.nan, np.nan)
    return out


@dataclass(frozen=True)
class Scores:
    """Per-image statistics of one rating criterion; NaN marks null (no usable rating).

    >>> s = Scores(np.array([3.0, np.nan]), np.zeros(2), np.array([2, 0]), np.array([1.5, 0]))
    >>> s.norm.tolist()
    [0.5, nan]
    """

    score: np.ndarray  # (N,) weighted mean, 1..5
    std: np.ndarray  # (N,) weighted standard deviation
    count: np.ndarray  # (N,) number of ratings (int64)
    weight: np.ndarray  # (N,) sum of weights
    weight_sq: np.ndarray | None = None  # (N,) sum of squared weights (None: unknown)

    @property
    def norm(self) -> np.ndarray:
        """``(score - 1) / 4`` in [0, 1]."""
        return self.normalised(LIKERT_RANGE)

    def normalised(self, bounds: tuple[float, float]) -> np.ndarray:
        """``(score - lo) / (hi - lo)`` for ``bounds = (lo, hi)`` (NaN where hi == lo)."""
        lo, hi = bounds
        with np.errstate(invalid="ignore", divide="ignore"):
            return (self.score - lo) / (hi - lo)

    @property
    def n_eff(self) -> np.ndarray:
        """Kish's effective sample size (sum w)^2 / sum w^2 (NaN without ratings)."""
        return _n_eff(self.weight, self.weight_sq)

    @property
    def se(self) -> np.ndarray:
        """Standard error of the weighted mean: std * sqrt(sum w^2) / sum w."""
        return _se(self.std, self.weight, self.weight_sq)

    def ci(self, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        """``score -+ t(1 - (1 - level) / 2, n_eff - 1) * se``; NaN where n_eff <= 1."""
        return _ci(self.score, self.se, self.n_eff, level)

    def range(self) -> tuple[float, float]:
        """``(min, max)`` of the non-null scores (NaN, NaN when there are none)."""
        ok = self.score[~np.isnan(self.score)]
        return (float(ok.min()), float(ok.max())) if ok.size else (np.nan, np.nan)


@dataclass(frozen=True)
class WordScores:
    """Per-word weight sums; image k's slots are ``values[offsets[k]:offsets[k+1]]``.

    The last slot of each image is "[No_Mistake]"; ``count`` is the number of word
    responses (0 means the image's word scores are null).
    """

    values: np.ndarray  # (T,) float64
    offsets: np.ndarray  # (N + 1,) int64
    total: np.ndarray  # (N,) total weight of the image's word responses
    count: np.ndarray  # (N,) number of word responses

    weight_sq: np.ndarray | None = None  # (N,) sum of squared weights of word responses

    @property
    def no_mistake_fraction(self) -> np.ndarray:
        """``(N,)`` weighted share of word responses that said "[No_Mistake]"."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.count > 0, self.no_mistake / self.total, np.nan)

    @property
    def n_eff(self) -> np.ndarray:
        """Kish's effective number of word responses per image."""
        return _n_eff(self.total, self.weight_sq)

    @property
    def no_mistake_se(self) -> np.ndarray:
        """Standard error of ``no_mistake_fraction`` (a weighted mean of 0/1 answers)."""
        p = self.no_mistake_fraction
        return _se(np.sqrt(p * (1 - p)), self.total, self.weight_sq)

    def no_mistake_ci(self, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        """Confidence interval of ``no_mistake_fraction``, as ``Scores.ci``."""
        return _ci(self.no_mistake_fraction, self.no_mistake_se, self.n_eff, level)

    def word_values(self, k: int) -> np.ndarray:
        """Image k's per-word weight sums (without the No_Mistake slot)."""
        return self.values[self.offsets[k] : self.offsets[k + 1] - 1]

    @property
    def no_mistake(self) -> np.ndarray:
        """``(N,)`` weight of "[No_Mistake]" per image."""
        return self.values[self.offsets[1:] - 1]


class Heatmaps(Sequence["np.ndarray | None"]):
    """One heatmap kind of ``n`` images: image k's ``(H, W)`` map, or None where it has none.

    The maps live in contiguous ``(count, H, W)`` blocks, one per output size as the splat
    fills them, so that a run of images of one size is a view of one block (``block``):
    both output formats write it without gathering per-image arrays.
    """

    def __init__(self, n: int) -> None:
        self.blocks: list[np.ndarray] = []
        self.block_of = np.full(n, -1, dtype=np.int64)  # -1: no map
        self.index = np.zeros(n, dtype=np.int64)

    def add(self, images: np.ndarray, maps: np.ndarray) -> None:
        """Make ``maps (len(images), H, W)`` (a new block, not copied) the maps of
        ``images``."""
        self.block_of[images] = len(self.blocks)
        self.index[images] = np.arange(len(images))
        self.blocks.append(maps)

    def __len__(self) -> int:
        return len(self.block_of)

    @overload
    def __getitem__(self, k: int) -> np.ndarray | None: ...
    @overload
    def __getitem__(self, k: slice) -> list[np.ndarray | None]: ...
    def __getitem__(self, k: int | slice) -> np.ndarray | None | list[np.ndarray | None]:
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(len(self)))]
        if not -len(self) <= k < len(self):
            raise IndexError(f"image {k} out of range for {len(self)} images")
        b = self.block_of[k]
        return None if b < 0 else self.blocks[b][self.index[k]]

    def present(self, rows: np.ndarray) -> np.ndarray:
        """``(len(rows),)`` which of ``rows`` have a map."""
        return self.block_of[rows] >= 0

    def block(self, rows: np.ndarray) -> np.ndarray | None:
        """``(len(rows), H, W)`` maps of ``rows`` as a view of one block, when every one has
        a map and they are consecutive in one block; else None."""
        if len(rows) == 0:
            return None
        b, i = self.block_of[rows], self.index[rows]
        if b[0] < 0 or (b != b[0]).any() or (np.diff(i) != 1).any():
            return None
        return self.blocks[b[0]][i[0] : i[-1] + 1]


class BlockPool:
    """Output blocks a run hands back after writing them, for its next partition to fill:
    a fresh block's first touch (the kernel zeroing every page) costs more than the splat
    that fills it on a few-core CPU (float32 at 512x512: ~2 ms per map against ~0.5), and a
    run's partitions are mostly of one shape. Thread-safe (the writer thread gives, the
    compute loop takes); holds at most ``limit`` blocks."""

    def __init__(self, limit: int = 4) -> None:
        import threading

        self.limit = limit
        self._free: list[np.ndarray] = []
        self._lock = threading.Lock()

    def take(self, shape: tuple[int, ...], dtype: torch.dtype) -> np.ndarray:
        """A block of ``shape`` and ``dtype`` (contents undefined): a given-back one if it
        fits exactly, else a new one from torch's allocator."""
        want = torch.empty(0, dtype=dtype).numpy().dtype
        with self._lock:
            for k, b in enumerate(self._free):
                if b.shape == shape and b.dtype == want:
                    return self._free.pop(k)
        return new_block(shape, dtype)

    def give(self, heatmaps: dict[str, Heatmaps]) -> None:
        """Take back the blocks of ``heatmaps`` (a result's; the caller is done with them)."""
        with self._lock:
            for maps in heatmaps.values():
                self._free.extend(maps.blocks)
            del self._free[: max(0, len(self._free) - self.limit)]


def new_block(shape: tuple[int, ...], dtype: torch.dtype, pool: BlockPool | None = None):  # noqa: ANN201
    """An output block: from ``pool`` when given; else from torch's allocator (numpy advises
    transparent huge pages for large arrays, and with the kernel's "madvise" defrag policy
    their first touch can stall on memory compaction: benchmarks/results/README.md, 2.4-2.9x
    the splat stage's time)."""
    if pool is not None:
        return pool.take(shape, dtype)
    return torch.empty(shape, dtype=dtype).numpy()


@dataclass
class AggregationResult:
    """Everything one aggregation (or one partition of it) produced.

    ``heatmaps[kind][k]`` is image k's ``(H, W)`` array (``options.dtype``) or None where the
    image has no responses (or only zero weights) for that kind. Write it with
    ``rfengine.save_output(result, out)``.
    """

    images: Images
    scores: dict[str, Scores]
    words: WordScores
    heatmaps: dict[str, Heatmaps]
    options: AggregateOptions
    stats: ReadStats
    rejected: list[Rejection] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    inputs: list[Path] = field(default_factory=list)
    row_offset: int = 0  # row of images[0] in the whole images table (a partition's start)
    #: per heatmap kind, the clicks: ``(offsets (N + 1,), points (P, 2))``, image k's
    #: ``(x, y)`` fractions being ``points[offsets[k]:offsets[k + 1]]``
    clicks: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    #: per criterion, the pair counts of its ratings (``aggregation.reliability.pair_counts``)
    rating_pairs: dict[str, dict[int, np.ndarray]] = field(default_factory=dict)
    #: per criterion, the (lo, hi) that ``*_score_norm`` maps to [0, 1]: the Likert range
    #: (1, 5) unless set (the ``rapidata-2025`` preset: the run's min and max)
    norm_bounds: dict[str, tuple[float, float]] = field(default_factory=dict)
    #: per heatmap kind, each image's split-half reliability (``reliability=True``), else {}
    heatmap_reliability: dict[str, np.ndarray] = field(default_factory=dict)
    #: per heatmap kind (``reliability=True``), each image's number of responses of its
    #: task, whose split-half ``heatmap_reliability`` is (what a plan scales), else {}
    heatmap_annotators: dict[str, np.ndarray] = field(default_factory=dict)
    #: per region heatmap kind (where the run has region responses), each image's Kish
    #: effective number of region responses: a pixel's standard error is
    #: ``sqrt(p (1 - p) / n_eff)`` (``rfengine.aggregation.regions``)
    region_n_eff: dict[str, np.ndarray] = field(default_factory=dict)
    #: the estimated annotator trust (``weights="estimate"``), else None
    trust: TrustEstimate | None = None

    def score_norm(self, criterion: str) -> np.ndarray:
        """``(N,)`` normalised scores of ``criterion`` (see ``norm_bounds``)."""
        bounds = self.norm_bounds.get(criterion, LIKERT_RANGE)
        return self.scores[criterion].normalised(bounds)


__all__ = [
    "AggregationResult",
    "BlockPool",
    "Heatmaps",
    "Scores",
    "WordScores",
    "merge_ranges",
    "new_block",
]
