"""How consistently a criterion was rated: Krippendorff's alpha from coincidence matrices.

Units are images, coders annotators, values the Likert ratings 1..5, unweighted. The
coincidence matrix is a sum over images, each image with m >= 2 ratings adding
``(n_c n_k - [c = k] n_c) / (m - 1)``. ``pair_counts`` keeps the integer numerators summed
per m, so partitions add up exactly (and in any order) in O(responses); ``coincidences``
divides once.

>>> o = coincidences(pair_counts(np.array([0, 0, 1, 1]), np.array([3, 3, 1, 5]), 2))
>>> round(krippendorff_alpha(o, "interval"), 6)
-0.5
"""

from __future__ import annotations

from typing import Literal

import numpy as np

LIKERT = 5  # ratings 1..5


PairCounts = dict[int, np.ndarray]


def pair_counts(image: np.ndarray, rating: np.ndarray, n_images: int) -> PairCounts:
    """Per number of ratings m >= 2 of an image, the ``(5, 5)`` int64 sum over such images
    of ``n_c n_k - [c = k] n_c`` (ratings ``rating`` 1..5 of images ``image``)."""
    r = np.asarray(rating).astype(np.int64) - 1
    counts = np.bincount(
        np.asarray(image, dtype=np.int64) * LIKERT + r, minlength=n_images * LIKERT
    ).reshape(n_images, LIKERT)
    m = counts.sum(1)
    out: PairCounts = {}
    for k in np.unique(m[m >= 2]):  # a handful of distinct ratings-per-image counts
        c = counts[m == k]
        out[int(k)] = c.T @ c - np.diag(c.sum(0))
    return out


def merge_pair_counts(parts: list[PairCounts]) -> PairCounts:
    """The pair counts of several partitions together (exact: integers)."""
    out: PairCounts = {}
    for part in parts:
        for m, c in part.items():
            out[int(m)] = out.get(int(m), 0) + np.asarray(c, dtype=np.int64)
    return out


def coincidences(counts: PairCounts) -> np.ndarray:
    """The ``(5, 5)`` coincidence matrix of pair counts."""
    o = np.zeros((LIKERT, LIKERT))
    for m in sorted(counts):
        o += np.asarray(counts[m], dtype=np.float64) / (m - 1)
    return o


def _delta2(n_c: np.ndarray, metric: Literal["ordinal", "interval"]) -> np.ndarray:
    v = np.arange(1, LIKERT + 1, dtype=np.float64)
    if metric == "interval":
        return (v[:, None] - v[None, :]) ** 2
    cum = np.concatenate([[0.0], np.cumsum(n_c)])
    lo = np.minimum.outer(np.arange(LIKERT), np.arange(LIKERT))
    hi = np.maximum.outer(np.arange(LIKERT), np.arange(LIKERT))
    between = cum[hi + 1] - cum[lo]  # sum of n_g for g from min(c, k) to max(c, k)
    return (between - (n_c[:, None] + n_c[None, :]) / 2) ** 2


def krippendorff_alpha(o: np.ndarray, metric: Literal["ordinal", "interval"]) -> float:
    """Krippendorff's alpha of a coincidence matrix: 1 - (n - 1) sum(o d2) / sum(n_c n_k d2);
    NaN with no pairable ratings or no variation."""
    n_c = o.sum(1)
    n = n_c.sum()
    d2 = _delta2(n_c, metric)
    expected = (n_c[:, None] * n_c[None, :] * d2).sum()
    if n <= 1 or expected <= 0:
        return float("nan")
    return float(1.0 - (n - 1) * (o * d2).sum() / expected)


def reliability(pairs: dict[str, PairCounts]) -> dict[str, dict[str, float | int | None]]:
    """The manifest's ``reliability``: per criterion, both alphas (None where undefined) and
    the number of pairable ratings."""
    o = {c: coincidences(p) for c, p in pairs.items()}

    def value(x: float) -> float | None:
        return None if np.isnan(x) else x

    return {
        c: {
            "krippendorff_alpha_ordinal": value(krippendorff_alpha(m, "ordinal")),
            "krippendorff_alpha_interval": value(krippendorff_alpha(m, "interval")),
            "pairable_ratings": round(float(m.sum())),
        }
        for c, m in o.items()
    }


def split_half_summary(values: dict[str, list[np.ndarray]]) -> dict[str, dict[str, float]]:
    """The manifest's record of each heatmap kind's per-image split-half reliabilities
    (given in pieces): their median over the images that have one, and how many."""
    out = {}
    for kind, parts in values.items():
        v = np.concatenate(parts) if parts else np.zeros(0)
        v = v[~np.isnan(v)]
        out[f"{kind}_heatmap"] = {
            "split_half_median": round(float(np.median(v)), 6) if v.size else None,
            "images": int(v.size),
        }
    return out


__all__ = [
    "coincidences",
    "krippendorff_alpha",
    "merge_pair_counts",
    "pair_counts",
    "reliability",
    "split_half_summary",
]
