"""Polygons rasterised on the output grid: which pixels' centres lie inside each region.

The rule (stated once, tested against a float64 reference): pixel ``(i, j)`` of an
``H x W`` grid belongs to a polygon iff its centre ``((j + 0.5) / W, (i + 0.5) / H)`` (image
fractions) is inside by the even-odd rule, with the half-open convention for centres exactly
on an edge: an edge counts for a centre row ``y`` when ``y0 <= y < y1`` (or ``y1 <= y < y0``),
and a crossing at ``x`` toggles the centres with ``px < x``. A centre on a left edge is
therefore inside and one on a right edge outside, so two polygons sharing an edge never
both claim a pixel, and a polygon's area in pixels converges to its true area.

Vectorised over every edge of every polygon of a batch (no Python loop over regions, edges
or pixels): the crossings of each edge with each centre row (``E x H``) are found at once.
``fill_polygons`` turns them into prefix toggles of a ``(R, H, W + 1)`` difference array
(masks, for checks and small grids); ``region_coverage``, the aggregation's kernel, pairs
each row's sorted crossings into inside spans, merges an annotator's spans by a sweep, and
writes only the span ends into one ``(N, H, W + 1)`` array, so its cost is the crossings
plus one pass over the output, not a mask per region.

The centre-versus-crossing comparison is made in the vertices' dtype: a centre within
rounding of an edge may fall either side (the tests use float64 and random vertices).
"""

from __future__ import annotations

import torch


def fill_polygons(
    vertices: torch.Tensor, offsets: torch.Tensor, height: int, width: int
) -> torch.Tensor:
    """Masks of ``R`` polygons on one ``height x width`` grid.

    Args:
        vertices: ``(V, 2)`` float ``(x, y)`` image fractions; polygon ``r`` is
            ``vertices[offsets[r]:offsets[r + 1]]``, closed implicitly (its last vertex joins
            its first); at least 3 vertices each.
        offsets: ``(R + 1,)`` int64, non-decreasing, ``offsets[0] == 0``, ``offsets[-1] == V``.
        height, width: the grid, in pixels.

    Returns:
        ``(R, height, width)`` bool, on ``vertices``' device.

    >>> sq = torch.tensor([[0.25, 0.25], [0.75, 0.25], [0.75, 0.75], [0.25, 0.75]])
    >>> fill_polygons(sq, torch.tensor([0, 4]), 4, 4)[0].int()
    tensor([[0, 0, 0, 0],
            [0, 1, 1, 0],
            [0, 1, 1, 0],
            [0, 0, 0, 0]], dtype=torch.int32)
    """
    n = offsets.numel() - 1
    if n <= 0:
        return torch.zeros((0, height, width), dtype=torch.bool, device=vertices.device)
    r, rows, k = _crossings(vertices, offsets, height, width)
    diff = torch.zeros((n, height, width + 1), dtype=torch.int32, device=vertices.device)
    ones = torch.ones_like(k, dtype=torch.int32)
    diff.index_put_((r, rows, torch.zeros_like(k)), ones, accumulate=True)
    diff.index_put_((r, rows, k), -ones, accumulate=True)
    return (diff[:, :, :width].cumsum(dim=2) % 2).bool()


def _crossings(vertices: torch.Tensor, offsets: torch.Tensor, height: int, width: int):
    """Every crossing of a polygon edge with a centre row: (region, row, k), where the
    crossing toggles the centres ``j < k`` of that row (the module docstring's rule)."""
    device, dtype = vertices.device, vertices.dtype
    n = offsets.numel() - 1
    counts = offsets[1:] - offsets[:-1]
    if bool((counts < 3).any()):
        raise ValueError("every polygon needs at least 3 vertices")
    region = torch.repeat_interleave(torch.arange(n, device=device), counts)
    nxt = torch.arange(vertices.shape[0], device=device) + 1
    nxt[offsets[1:] - 1] = offsets[:-1]  # each polygon's closing edge
    x0, y0 = vertices[:, 0], vertices[:, 1]
    x1, y1 = vertices[nxt, 0], vertices[nxt, 1]
    ys = (torch.arange(height, device=device, dtype=dtype) + 0.5) / height
    # the centre rows each edge may span, one row wider on each side than its extent, then
    # the exact half-open test: the cost follows the crossings, not edges x rows
    lo = torch.ceil(torch.minimum(y0, y1) * height - 0.5).to(torch.int64) - 1
    hi = torch.ceil(torch.maximum(y0, y1) * height - 0.5).to(torch.int64) + 1
    lo, hi = lo.clamp(0, height), hi.clamp(0, height)
    span = (hi - lo).clamp(min=0)
    e = torch.repeat_interleave(torch.arange(y0.numel(), device=device), span)
    rows = (
        lo[e]
        + torch.arange(e.numel(), device=device)
        - torch.repeat_interleave(torch.cumsum(span, 0) - span, span)
    )
    hit = (y0[e] <= ys[rows]) != (y1[e] <= ys[rows])
    e, rows = e[hit], rows[hit]
    x = x0[e] + (ys[rows] - y0[e]) / (y1[e] - y0[e]) * (x1[e] - x0[e])
    k = torch.ceil(x * width - 0.5).clamp(0, width).to(torch.int64)
    return region[e], rows, k


def region_coverage(
    vertices: torch.Tensor,
    offsets: torch.Tensor,
    region_annotator: torch.Tensor,
    annotator_image: torch.Tensor,
    annotator_weight: torch.Tensor,
    shape: tuple[int, int, int],
) -> torch.Tensor:
    """The trust-weighted share of annotators whose regions cover each pixel.

    Each annotator's mask is the union of their polygons (each by the even-odd rule at pixel
    centres); an image's map is ``sum_a w_a mask_a / sum_a w_a`` over its annotators,
    including those who drew nothing. Computed on spans, not masks: a row's sorted
    crossings pair into inside spans, an annotator's spans are merged by a sweep, and the
    weighted span ends meet in one ``(N, H, W + 1)`` difference array, summed along rows.

    Args:
        vertices, offsets: the polygons, as in ``fill_polygons``.
        region_annotator: ``(R,)`` int64, each polygon's annotator (index into the next two).
        annotator_image: ``(A,)`` int64, each annotator's image in ``[0, N)``.
        annotator_weight: ``(A,)`` float, each annotator's weight (>= 0).
        shape: ``(N, H, W)``, every image's grid.

    Returns:
        ``(N, H, W)`` of ``annotator_weight``'s dtype; NaN where an image's weights sum to 0.
    """
    n_img, height, width = shape
    device, wdtype = vertices.device, annotator_weight.dtype
    total = torch.zeros(n_img, dtype=wdtype, device=device).index_add_(
        0, annotator_image, annotator_weight
    )
    diff = torch.zeros((n_img, height, width + 1), dtype=wdtype, device=device)
    if offsets.numel() > 1:
        r, rows, k = _crossings(vertices, offsets, height, width)
        # even-odd: a (region, row)'s crossings, sorted, pair into inside spans [k0, k1), ...
        key = (r * height + rows) * (width + 1) + k
        key, order = torch.sort(key)
        r, rows, k = r[order], rows[order], k[order]
        group = key // (width + 1)
        _, counts = torch.unique_consecutive(group, return_counts=True)
        first = torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
        rank = torch.arange(key.numel(), device=device) - first
        lo, hi = k[rank % 2 == 0], k[rank % 2 == 1]
        ann, row = region_annotator[r[rank % 2 == 0]], rows[rank % 2 == 0]
        keep = hi > lo
        ann, row, lo, hi = ann[keep], row[keep], lo[keep], hi[keep]
        # union per (annotator, row): a sweep over +1 at span starts and -1 at span ends
        pos = torch.cat([lo, hi])
        step = torch.cat([torch.ones_like(lo), -torch.ones_like(hi)])
        a2, row2 = torch.cat([ann, ann]), torch.cat([row, row])
        ekey = (a2 * height + row2) * (width + 1) + pos
        ekey, order = torch.sort(ekey, stable=True)
        step, a2, row2, pos = step[order], a2[order], row2[order], pos[order]
        depth = torch.cumsum(step, 0)  # each (annotator, row) sums to 0: a global cumsum
        opens = (step == 1) & (depth == 1)
        closes = (step == -1) & (depth == 0)
        edge = opens | closes
        sign = torch.where(opens[edge], 1.0, -1.0).to(wdtype)
        a_e = a2[edge]
        diff.index_put_(
            (annotator_image[a_e], row2[edge], pos[edge]),
            sign * annotator_weight[a_e],
            accumulate=True,
        )
    cover = diff[:, :, :width].cumsum(dim=2)
    return cover / total[:, None, None]
