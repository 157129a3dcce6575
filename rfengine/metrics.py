"""Metrics: rank correlation, heatmap peaks, and how well an aggregation recovers a known
truth (a simulated campaign's planted defects)."""

from __future__ import annotations

from typing import Any

import datasets
import numpy as np

from rfengine.output import as_heatmap, as_word_scores
from rfengine.schema import CRITERIA, HEATMAP_KINDS


def peak_position(heat: np.ndarray) -> tuple[float, float]:
    """(x, y) image fractions of the centre of the heatmap's hottest pixel."""
    h, w = heat.shape
    i, j = np.unravel_index(int(np.argmax(heat)), heat.shape)
    return (j + 0.5) / w, (i + 0.5) / h


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho with average ranks for ties, over pairs where both are finite.

    NaN with fewer than 3 such pairs or a constant side (as ``scipy.stats.spearmanr``).

    >>> round(rank_correlation(np.array([1.0, 2, 3, 4]), np.array([10.0, 20, 30, 25])), 6)
    0.8
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        return float("nan")

    def ranks(x: np.ndarray) -> np.ndarray:
        order = np.argsort(x, kind="stable")
        r = np.empty(len(x))
        r[order] = np.arange(len(x), dtype=np.float64)
        _, inv, counts = np.unique(x, return_inverse=True, return_counts=True)
        sums = np.bincount(inv, weights=r)
        return sums[inv] / counts[inv]

    ra, rb = ranks(a[ok]), ranks(b[ok])
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = np.sqrt((ra**2).sum() * (rb**2).sum())
    return float((ra * rb).sum() / denom) if denom > 0 else float("nan")


def _column(ds: datasets.Dataset, name: str) -> list:
    """One column's values row by row, without decoding the others (the images)."""
    return [row[name] for row in ds.select_columns([name])]


def recovery(ds: datasets.Dataset, truth: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Recovery figures of one aggregation against the truth.

    * ``{kind}_peak_distance``: mean distance, in units of the image's smaller side, from
      each heatmap's hottest pixel to the nearest planted defect (images whose defect has a
      place and whose heatmap exists); lower is better.
    * ``{criterion}_spearman``: rank correlation of scores with the true scores.
    * ``top_word_accuracy``: share of misaligned images whose top-scoring word is the
      planted wrong word.
    """
    ids = list(ds["image_id"])
    out: dict[str, float] = {}
    planted_key = {"coherence": "incoherence", "alignment": "misalignment"}
    for kind in HEATMAP_KINDS:
        key = planted_key[kind]
        dists = []
        for k, cell in enumerate(_column(ds, f"{kind}_heatmap")):
            planted = (truth[ids[k]].get(key) or {}).get("points") or []
            heat = as_heatmap(cell)
            if heat is None or not planted:
                continue
            h, w = heat.shape
            px, py = peak_position(heat)
            d = [np.hypot((px - x) * w, (py - y) * h) / min(w, h) for x, y in planted]
            dists.append(min(d))
        out[f"{kind}_peak_distance"] = float(np.mean(dists)) if dists else float("nan")
        out[f"{kind}_peak_images"] = len(dists)
    for c in CRITERIA:
        scores = np.array([np.nan if v is None else v for v in ds[f"{c}_score"]], dtype=np.float64)
        out[f"{c}_spearman"] = rank_correlation(scores, np.array([truth[i][c] for i in ids]))
    hits, n = 0, 0
    for k, text in enumerate(ds["word_scores"]):
        mis = truth[ids[k]].get("misalignment")
        vals = as_word_scores(text)
        if mis is None or vals is None:
            continue
        n += 1
        hits += int(np.argmax(vals) == mis["word_index"])
    out["top_word_accuracy"] = hits / n if n else float("nan")
    out["top_word_images"] = n
    return out


__all__ = ["peak_position", "rank_correlation", "recovery"]
