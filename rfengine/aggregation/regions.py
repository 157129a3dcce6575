"""Region heatmaps: each image's trusted share of annotators whose drawn regions cover
each pixel, beside the point heatmaps.

Per annotator, the union of their regions (polygons by the pixel-centre rule of
``kernels.raster``, masks by the mask pixel under each output pixel's centre); per image,
``sum_a w_a mask_a / sum_a w_a`` over every annotator who answered the regions task,
including those who drew nothing. Its uncertainty is a binomial share's: a pixel's standard
error is ``sqrt(p (1 - p) / n_eff)`` with Kish's ``n_eff = (sum w)^2 / sum w^2`` of the
image's region responses (``region_n_eff``). ``region_sigma`` optionally softens the edges
with a Gaussian (off by default, so that a value keeps its meaning as a share).
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from rfengine.aggregation.result import BlockPool, Heatmaps, new_block
from rfengine.ingest import Images, Responses
from rfengine.kernels import (
    Spans,
    concat_ranges,
    mask_spans,
    polygon_spans,
    region_coverage,
    soften,
)
from rfengine.schema import Task, size_key, split_size_key


def region_n_eff(n: int, r: Responses, task: Task) -> np.ndarray:
    """``(n,)`` Kish's effective number of ``task``'s responses per image (NaN: none)."""
    m = r.task == task
    w = np.bincount(r.image[m], weights=r.weight[m], minlength=n)
    w2 = np.bincount(r.image[m], weights=r.weight[m] ** 2, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(w2 > 0, w * w / w2, np.nan)


def _chunk_spans(
    images: Images, r: Responses, c_resp: np.ndarray, hw: tuple[int, int], device: torch.device
) -> Spans:
    """The inside spans of the regions of responses ``c_resp`` on an ``hw`` grid; span
    annotators are positions in ``c_resp``."""
    assert r.region_offsets is not None
    n_reg = r.region_offsets[c_resp + 1] - r.region_offsets[c_resp]
    q = concat_ranges(r.region_offsets[c_resp], n_reg)
    owner = np.repeat(np.arange(len(c_resp)), n_reg)
    nv = r.vertex_offsets[q + 1] - r.vertex_offsets[q]
    nr = r.run_offsets[q + 1] - r.run_offsets[q]
    poly, mask = nv > 0, nr > 0

    def t(a: np.ndarray, dt: torch.dtype = torch.int64) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).to(device=device, dtype=dt)

    verts = r.vertices[concat_ranges(r.vertex_offsets[q[poly]], nv[poly])]
    runs = r.runs[concat_ranges(r.run_offsets[q[mask]], nr[mask])]
    img = r.image[c_resp][owner[mask]]
    return Spans.cat(
        [
            polygon_spans(
                t(verts, torch.float64),
                t(np.concatenate([[0], np.cumsum(nv[poly])])),
                t(owner[poly]),
                *hw,
            ),
            mask_spans(
                t(runs),
                t(np.concatenate([[0], np.cumsum(nr[mask])])),
                t(np.stack([images.height[img], images.width[img]], axis=1).reshape(-1, 2)),
                t(owner[mask]),
                *hw,
            ),
        ]
    )


def aggregate_regions(
    images: Images,
    r: Responses,
    task: Task,
    *,
    size: tuple[int, int] | None,
    device: torch.device,
    dtype: torch.dtype,
    budget: int,
    sigma: float = 0.0,
    progress: bool = False,
    pool: BlockPool | None = None,
) -> Heatmaps:
    """One region heatmap kind for every image (None where no region response has weight),
    each output size's maps in one block; ``budget``: bytes of one chunk's work arrays."""
    n = len(images)
    resp = np.flatnonzero(r.task == task)
    denom = np.bincount(r.image[resp], weights=r.weight[resp], minlength=n)
    present = denom > 0
    bounds = np.searchsorted(r.image[resp], np.arange(n + 1))
    out = Heatmaps(n)
    bar = tqdm(
        total=int(present.sum()), desc=f"{task.heatmap_kind} heatmaps", unit="img",
        disable=not progress,
    )  # fmt: skip
    oh = images.height if size is None else np.full(n, size[0])
    ow = images.width if size is None else np.full(n, size[1])
    idx = np.flatnonzero(present)
    keys = size_key(oh[idx], ow[idx])
    for key in np.unique(keys):
        h, w = split_size_key(key)
        group = idx[keys == key]
        block = new_block((len(group), h, w), dtype, pool)
        step = max(1, budget // (h * (w + 1) * 8))  # the difference array and the map
        for s in range(0, len(group), step):
            members = group[s : s + step]
            c_resp = resp[concat_ranges(bounds[members], bounds[members + 1] - bounds[members])]
            spans = _chunk_spans(images, r, c_resp, (h, w), device)
            ann_img = torch.from_numpy(np.searchsorted(members, r.image[c_resp])).to(device)
            weight = torch.from_numpy(r.weight[c_resp].astype(np.float32)).to(device)
            maps = region_coverage(spans, ann_img, weight, (len(members), h, w))
            if sigma > 0:
                maps = soften(maps, sigma * min(h, w))
            torch.from_numpy(block[s : s + step]).copy_(maps)
            bar.update(len(members))
        out.add(group, block)
    bar.close()
    return out


__all__ = ["aggregate_regions", "region_n_eff"]
