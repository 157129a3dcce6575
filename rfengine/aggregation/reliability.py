"""How consistent the annotators are: Krippendorff's alpha of a criterion's ratings from
coincidence matrices, and each heatmap's split-half reliability.

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

import hashlib
from collections.abc import Sequence
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


#: the seed of the annotators' split into halves (``heatmap_split_half``)
SPLIT_SEED = b"rfengine-split-half"


def annotator_halves(ids: np.ndarray) -> np.ndarray:
    """0 or 1 per annotator id: the lowest bit of its keyed BLAKE2b hash (stable across
    runs, machines and partitions; one hash per distinct annotator, not per response)."""
    return np.array(
        [
            hashlib.blake2b(str(a).encode(), key=SPLIT_SEED, digest_size=8).digest()[0] & 1
            for a in ids
        ],
        dtype=np.int64,
    )


def split_half_reliability(
    half0: dict[str, Sequence[np.ndarray | None]],
    half1: dict[str, Sequence[np.ndarray | None]],
    n: int,
) -> dict[str, np.ndarray]:
    """Per heatmap kind, each of ``n`` images' split-half reliability from the maps of the
    two halves of its annotators: their Pearson correlation r over the pixels, corrected by
    Spearman-Brown to 2r / (1 + r). ``(n,)`` float64, NaN where a half has no map or either
    map is constant."""
    out = {}
    for kind in half0:
        rel = np.full(n, np.nan)
        h0, h1 = half0[kind], half1[kind]
        both = [k for k, (a, b) in enumerate(zip(h0, h1, strict=True))
                if a is not None and b is not None]  # fmt: skip
        shapes: dict[tuple[int, ...], list[int]] = {}
        for k in both:
            shapes.setdefault(h0[k].shape, []).append(k)  # type: ignore[union-attr]
        for ks in shapes.values():  # one vectorised step per output size
            a = np.stack([h0[k].ravel() for k in ks]).astype(np.float64)  # type: ignore[union-attr]
            b = np.stack([h1[k].ravel() for k in ks]).astype(np.float64)  # type: ignore[union-attr]
            a -= a.mean(axis=1, keepdims=True)
            b -= b.mean(axis=1, keepdims=True)
            with np.errstate(invalid="ignore", divide="ignore"):
                r = (a * b).sum(axis=1) / np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
                rel[ks] = np.where(np.isfinite(r) & (r > -1), 2 * r / (1 + r), np.nan)
        out[kind] = rel
    return out


__all__ = [
    "annotator_halves",
    "coincidences",
    "krippendorff_alpha",
    "merge_pair_counts",
    "pair_counts",
    "reliability",
    "split_half_reliability",
    "split_half_summary",
]
