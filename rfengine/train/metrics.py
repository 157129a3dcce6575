"""Metrics: rank correlation, heatmap peaks, and how well an aggregation recovers a known
truth (a simulated campaign's planted defects)."""

from __future__ import annotations

from typing import Any

import datasets
import numpy as np
import torch

from rfengine.schema import CRITERIA, HEATMAP_KINDS
from rfengine.store.load import as_heatmap, as_word_scores


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
    return out | region_recovery(ds, truth)


def region_recovery(ds: datasets.Dataset, truth: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Where the truth has the planted objects' outlines (``simulate --regions``) and the
    output has region heatmaps: per criterion, the mean Pearson correlation over pixels of
    the point heatmap (``{criterion}_mask_cc``) and of the region heatmap
    (``{criterion}_region_mask_cc``) with the planted objects' mask (pixel centres inside an
    outline), on the same images: those with an outline and both maps."""
    from rfengine.kernels import fill_polygons

    ids = list(ds["image_id"])
    out: dict[str, float] = {}
    for crit in HEATMAP_KINDS:
        region = f"{crit}_region"
        if f"{region}_heatmap" not in ds.column_names:
            continue
        ccs: dict[str, list[float]] = {crit: [], region: []}
        points, regions = _column(ds, f"{crit}_heatmap"), _column(ds, f"{region}_heatmap")
        for k, (p_cell, r_cell) in enumerate(zip(points, regions, strict=True)):
            outlines = (truth[ids[k]].get("regions") or {}).get(f"{crit}_regions") or []
            maps = {crit: as_heatmap(p_cell), region: as_heatmap(r_cell)}
            if not outlines or any(m is None for m in maps.values()):
                continue
            h, w = maps[crit].shape  # type: ignore[union-attr]
            v = torch.tensor([xy for poly in outlines for xy in poly], dtype=torch.float64)
            off = torch.tensor(np.cumsum([0] + [len(p) for p in outlines]))
            mask = fill_polygons(v, off, h, w).any(0).double()
            for kind, m in maps.items():
                t = torch.from_numpy(np.asarray(m, dtype=np.float64))
                ccs[kind].append(float(map_cc(t[None], mask[None])[0]))
        for kind, vals in ccs.items():
            out[f"{kind}_mask_cc"] = float(np.mean(vals)) if vals else float("nan")
        out[f"{crit}_mask_images"] = len(ccs[crit])
    return out


# --------------------------------------------------------- the field's evaluation metrics
#
# As RAHF ("Rich Human Feedback for Text-to-Image Generation", CVPR 2024) is evaluated, in
# the definitions of its public re-implementation's metrics.py (youweiliang/RichHF): maps
# are (N, H, W) tensors, one value per image; eps = 1e-8 as there.


def _sum(x: torch.Tensor) -> torch.Tensor:
    return x.sum(dim=(1, 2), keepdim=True)


def map_mse(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Mean squared error per image, ``(N,)``."""
    return ((pred - gt) ** 2).mean(dim=(1, 2))


def map_cc(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Pearson correlation over pixels per image (CC), ``(N,)``."""
    p = pred - pred.mean(dim=(1, 2), keepdim=True)
    g = gt - gt.mean(dim=(1, 2), keepdim=True)
    den = torch.sqrt((p**2).sum(dim=(1, 2))) * torch.sqrt((g**2).sum(dim=(1, 2)))
    return (p * g).sum(dim=(1, 2)) / (den + 1e-8)


def map_kld(pred: torch.Tensor, gt: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """KL divergence of the target from the prediction, both normalised to sum 1 (KLD)."""
    p = pred / (_sum(pred) + eps)
    g = gt / (_sum(gt) + eps)
    return (g * torch.log(g / (p + eps) + eps)).sum(dim=(1, 2))


def map_sim(pred: torch.Tensor, gt: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Histogram intersection of the two maps normalised to sum 1 (SIM)."""
    return torch.minimum(pred / (_sum(pred) + eps), gt / (_sum(gt) + eps)).sum(dim=(1, 2))


def map_nss(pred: torch.Tensor, fixations: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Normalised scanpath saliency: the prediction standardised (unbiased std), averaged
    over the fixation pixels (NSS); NaN without fixations."""
    mean = pred.mean(dim=(1, 2), keepdim=True)
    std = pred.flatten(1).std(dim=1, unbiased=True)[:, None, None]
    z = ((pred - mean) / (std + eps)).masked_fill(~fixations, 0)
    return z.sum(dim=(1, 2)) / fixations.sum(dim=(1, 2))


def map_auc_judd(pred: torch.Tensor, fixations: torch.Tensor) -> torch.Tensor:
    """AUC-Judd per image, without the random jitter (deterministic): thresholds at the
    prediction's values on fixations, true positives the fixations above, false positives
    the other pixels above; NaN without fixations or for a constant prediction."""
    out = torch.full((pred.shape[0],), float("nan"), dtype=torch.float64)
    for i in range(pred.shape[0]):
        s = pred[i].flatten().double()
        f = fixations[i].flatten()
        n_fix, n_pix = int(f.sum()), s.numel()
        if n_fix == 0 or n_fix == n_pix or bool(s.max() == s.min()):
            continue
        thresh = torch.sort(s[f], descending=True).values
        above = n_pix - torch.searchsorted(torch.sort(s).values, thresh, side="left")
        k = torch.arange(n_fix, dtype=torch.float64, device=s.device)
        tp = torch.cat([s.new_zeros(1), (k + 1) / n_fix, s.new_ones(1)])
        fp = torch.cat([s.new_zeros(1), (above - k) / (n_pix - n_fix), s.new_ones(1)])
        out[i] = torch.trapezoid(tp, fp).cpu()
    return out


def click_fixations(
    clicks: torch.Tensor, offsets: torch.Tensor, size: tuple[int, int]
) -> torch.Tensor:
    """``(N, H, W)`` bool: the output pixels holding at least one click of each image
    (clicks as ``(x, y)`` fractions, image k's ``clicks[offsets[k]:offsets[k+1]]``)."""
    h, w = size
    n = offsets.numel() - 1
    fix = torch.zeros((n, h, w), dtype=torch.bool, device=clicks.device)
    img = torch.repeat_interleave(torch.arange(n, device=clicks.device), offsets.diff())
    row = (clicks[:, 1] * h).floor().long().clamp_(0, h - 1)
    col = (clicks[:, 0] * w).floor().long().clamp_(0, w - 1)
    fix[img, row, col] = True
    return fix


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson's r over pairs where both are finite (PLCC); NaN with fewer than 3 pairs."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        return float("nan")
    x, y = a[ok] - a[ok].mean(), b[ok] - b[ok].mean()
    den = np.sqrt((x**2).sum() * (y**2).sum())
    return float((x * y).sum() / den) if den > 0 else float("nan")


def token_prf(pred: np.ndarray, label: np.ndarray) -> dict[str, float]:
    """Precision, recall and F1 of the misaligned class (1) over tokens (micro average)."""
    tp = int(((pred == 1) & (label == 1)).sum())
    fp = int(((pred == 1) & (label == 0)).sum())
    fn = int(((pred == 0) & (label == 1)).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "tokens": int(label.size)}


__all__ = [
    "click_fixations",
    "map_auc_judd",
    "map_cc",
    "map_kld",
    "map_mse",
    "map_nss",
    "map_sim",
    "peak_position",
    "pearson",
    "rank_correlation",
    "recovery",
    "token_prf",
]
