"""Plain float64 references for every number the engine computes.

Written for clarity, not speed: loops over annotators and clicks, full-grid Gaussians,
scipy's gaussian_filter for the published method. The engine is tested against these.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import gaussian_filter


def ref_scores(ratings: list[tuple[float, float]]) -> dict | None:
    """(rating, weight) pairs -> mean, norm, std, count, weight; None when no ratings."""
    if not ratings:
        return None
    r = np.array([x for x, _ in ratings], dtype=np.float64)
    w = np.array([y for _, y in ratings], dtype=np.float64)
    total = w.sum()
    if total == 0:
        return {"mean": None, "norm": None, "std": None, "count": len(r), "weight": 0.0}
    mean = float((w * r).sum() / total)
    std = math.sqrt(float((w * (r - mean) ** 2).sum() / total))
    return {"mean": mean, "norm": (mean - 1) / 4, "std": std, "count": len(r), "weight": total}


def ref_word_scores(n_tokens: int, selections: list[tuple[list[int], float]]) -> np.ndarray:
    """(selected indices, weight) pairs -> (n_tokens + 1,) weight sums; last is No_Mistake."""
    out = np.zeros(n_tokens + 1, dtype=np.float64)
    for sel, w in selections:
        for k in sel:
            out[k] += w
    return out


def ref_default_map(points: list[tuple[float, float]], W: int, H: int, out_hw=None) -> np.ndarray:
    """One annotator's max-normalised map under preset 'default', full-grid float64."""
    Ho, Wo = out_hw or (H, W)
    sigma = 0.05 * min(W, H)
    ys = (np.arange(Ho) + 0.5) / Ho * H
    xs = (np.arange(Wo) + 0.5) / Wo * W
    m = np.zeros((Ho, Wo))
    for x, y in points:
        d2 = (xs[None, :] - x * W) ** 2 + (ys[:, None] - y * H) ** 2
        m += np.exp(-d2 / (2 * sigma**2))
    peak = m.max()
    return m / peak if peak > 0 else m


def ref_default_heatmap(annotators: list[tuple[list, float]], W: int, H: int, out_hw=None):
    """Weighted mean of 'default' maps over (points, weight) annotators; None if none."""
    if not annotators:
        return None
    total = sum(w for _, w in annotators)
    if total == 0:
        return None
    Ho, Wo = out_hw or (H, W)
    acc = np.zeros((Ho, Wo))
    for pts, w in annotators:
        if pts:
            acc += w * ref_default_map(pts, W, H, out_hw)
    return acc / total


def ref_published_filter(annotators: list[list[tuple[float, float]]], W: int, H: int):
    """What the kernel's ``rapidata-2025`` preset computes from fraction clicks: each
    snapped to its native pixel, one ``gaussian_filter`` per annotator, max-normalised, the
    mean over annotators (one without clicks adds a zero map). The aggregation adds the
    script's percent quirks and NaN maps around it (``ref_rapidata_heatmap``)."""
    if not annotators:
        return None
    sigma = min(W, H) / 20
    acc = np.zeros((H, W))
    for pts in annotators:
        if not pts:
            continue
        m = np.zeros((H, W))
        for x, y in pts:
            m[min(int(y * H), H - 1), min(int(x * W), W - 1)] += 1
        m = gaussian_filter(m, sigma=sigma, truncate=3)
        acc += m / m.max()
    return acc / len(annotators)


def ref_rapidata_heatmap(annotators: list[list[dict[str, float]]], W: int, H: int):
    """Rapidata's 2025 script (``create_rich_annot_heatmaps.py`` at 6dcf33c), transcribed:
    clicks in percent, y cut by ``int()``, snapped in float64, one ``gaussian_filter`` per
    annotator, max-normalised, plain mean; an annotator without clicks gives 0/0 = NaN."""
    if not annotators:
        return None
    sigma = min(W, H) / 20
    heatmaps = []
    for location in annotators:
        points = [(p["x"], int(p["y"])) for p in location]
        heatmap = np.zeros((H, W))
        for x, y in points:
            x, y = min(int(x / 100 * W), W - 1), min(int(y / 100 * H), H - 1)
            heatmap[y, x] += 1
        heatmap = gaussian_filter(heatmap, sigma=sigma, truncate=3)
        with np.errstate(invalid="ignore"):
            heatmap /= heatmap.max()
        heatmaps.append(heatmap)
    return np.array(heatmaps).mean(axis=0)


def as_percent(points: list[tuple[float, float]]) -> list[dict[str, float]]:
    """Interchange-format fractions as the ``location`` percent the script read."""
    return [{"x": x * 100, "y": y * 100} for x, y in points]


def ref_polygon_mask(poly, H: int, W: int) -> np.ndarray:
    """Pixel centres inside a polygon (even-odd, half-open rows: ``kernels.raster``'s rule),
    one centre and one edge at a time."""
    out = np.zeros((H, W), bool)
    n = len(poly)
    for i in range(H):
        py = (i + 0.5) / H
        for j in range(W):
            px = (j + 0.5) / W
            inside = False
            for a in range(n):
                (x0, y0), (x1, y1) = poly[a], poly[(a + 1) % n]
                if (y0 <= py) != (y1 <= py) and px < x0 + (py - y0) / (y1 - y0) * (x1 - x0):
                    inside = not inside
            out[i, j] = inside
    return out


def ref_counts_mask(counts: list[int], h: int, w: int) -> np.ndarray:
    """The responses format's run lengths (row-major, unmarked first) as an ``(h, w)`` mask."""
    flat, marked = [], False
    for n in counts:
        flat += [marked] * n
        marked = not marked
    return np.array(flat, dtype=bool).reshape(h, w)


def ref_resampled(mask: np.ndarray, H: int, W: int) -> np.ndarray:
    """The mask pixel under each output pixel's centre."""
    h, w = mask.shape
    out = np.zeros((H, W), bool)
    for i in range(H):
        for j in range(W):
            out[i, j] = mask[int(np.floor((i + 0.5) / H * h)), int(np.floor((j + 0.5) / W * w))]
    return out


def ref_region_heatmap(annotators: list[tuple[list[dict], float]], h: int, w: int, H: int, W: int):
    """Weighted share of (regions, weight) annotators whose union of regions covers each
    pixel of an ``H x W`` grid (masks at the image's ``h x w``); None without weight."""
    total = sum(wt for _, wt in annotators)
    if not annotators or total == 0:
        return None
    acc = np.zeros((H, W))
    for regions, wt in annotators:
        union = np.zeros((H, W), bool)
        for reg in regions:
            if "polygon" in reg:
                union |= ref_polygon_mask(reg["polygon"], H, W)
            else:
                union |= ref_resampled(ref_counts_mask(reg["mask"]["counts"], h, w), H, W)
        acc += wt * union
    return acc / total
