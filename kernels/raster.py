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

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F


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
    ys = (torch.arange(height + 1, device=device, dtype=dtype) + 0.5) / height
    # the centre rows each edge spans, [first(min(y0, y1)), first(max(y0, y1))), where
    # first(y) is the first row whose centre is >= y: estimated by ceil, then corrected by
    # the same float comparison as the rule (the estimate is off by at most one row), so
    # that the cost follows the crossings, not edges x rows
    lo = _first_row(torch.minimum(y0, y1), ys, height)
    hi = _first_row(torch.maximum(y0, y1), ys, height)
    span = hi - lo
    e = torch.repeat_interleave(torch.arange(y0.numel(), device=device), span)
    rows = (
        lo[e]
        + torch.arange(e.numel(), device=device)
        - torch.repeat_interleave(torch.cumsum(span, 0) - span, span)
    )
    x = x0[e] + (ys[rows] - y0[e]) / (y1[e] - y0[e]) * (x1[e] - x0[e])
    k = torch.ceil(x * width - 0.5).clamp(0, width).to(torch.int64)
    return region[e], rows, k


def _first_row(y: torch.Tensor, ys: torch.Tensor, height: int) -> torch.Tensor:
    """Per value, the first row ``i`` in ``[0, height]`` with ``ys[i] >= y`` (``ys``: the
    row centres, ``height + 1`` of them, the last one past the grid)."""
    i = torch.ceil(y * height - 0.5).to(torch.int64).clamp(0, height)
    for _ in range(2):  # rounding: step back while the row above still qualifies, then on
        i = i - ((i > 0) & (ys[(i - 1).clamp(min=0)] >= y)).long()
    for _ in range(2):
        i = i + ((i < height) & (ys[i] < y)).long()
    return i


class Spans(NamedTuple):
    """Inside spans of drawn regions on a grid: annotator ``annotator[s]`` marked the pixels
    ``lo[s] <= j < hi[s]`` of row ``row[s]`` (``(S,)`` int64 each; spans may overlap)."""

    annotator: torch.Tensor
    row: torch.Tensor
    lo: torch.Tensor
    hi: torch.Tensor

    @staticmethod
    def cat(parts: list[Spans]) -> Spans:
        return Spans(*(torch.cat([getattr(p, f) for p in parts]) for f in Spans._fields))


def polygon_spans(
    vertices: torch.Tensor,
    offsets: torch.Tensor,
    region_annotator: torch.Tensor,
    height: int,
    width: int,
) -> Spans:
    """The polygons' inside spans (the module docstring's rule): each (polygon, row)'s
    sorted crossings pair into spans ``[k0, k1), [k2, k3), ...``; ``region_annotator``
    ``(R,)`` gives each polygon's annotator."""
    device = vertices.device
    if offsets.numel() <= 1:
        e = torch.zeros(0, dtype=torch.int64, device=device)
        return Spans(e, e, e, e)
    r, rows, k = _crossings(vertices, offsets, height, width)
    key, _ = torch.sort((r * height + rows) * (width + 1) + k)
    # a closed polygon crosses each centre row an even number of times: after the sort,
    # each (polygon, row)'s crossings pair up as consecutive elements
    pairs = key.view(-1, 2)
    group = pairs[:, 0] // (width + 1)
    lo, hi = pairs[:, 0] - group * (width + 1), pairs[:, 1] - group * (width + 1)
    keep = hi > lo
    g = group[keep]
    return Spans(region_annotator[g // height], g % height, lo[keep], hi[keep])


def _ceil_div(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return -torch.div(-a, b, rounding_mode="floor")


def mask_spans(
    runs: torch.Tensor,
    run_offsets: torch.Tensor,
    mask_size: torch.Tensor,
    region_annotator: torch.Tensor,
    height: int,
    width: int,
) -> Spans:
    """Run-length masks as inside spans of the ``height x width`` grid.

    Mask ``q`` is ``mask_size[q] = (h, w)`` pixels, its row-major run lengths
    ``runs[run_offsets[q]:run_offsets[q + 1]]`` alternating unmarked and marked (unmarked
    first). Output pixel ``(i, j)`` takes the mask pixel under its centre,
    ``(floor((i + 0.5) h / height), floor((j + 0.5) w / width))``: exact integer arithmetic,
    the identity at the mask's own size.
    """
    device = runs.device
    n = run_offsets.numel() - 1
    counts = run_offsets[1:] - run_offsets[:-1]
    region = torch.repeat_interleave(torch.arange(n, device=device), counts)
    ends = torch.cumsum(runs, 0)
    base = torch.repeat_interleave(torch.cat([ends.new_zeros(1), ends])[run_offsets[:-1]], counts)
    end = ends - base
    start = end - runs
    nth = torch.arange(runs.numel(), device=device) - run_offsets[:-1][region]
    marked = (nth % 2 == 1) & (runs > 0)
    q, s, e = region[marked], start[marked], end[marked]
    h, w = mask_size[q, 0], mask_size[q, 1]
    r0, r1 = torch.div(s, w, rounding_mode="floor"), torch.div(e - 1, w, rounding_mode="floor")
    pieces = r1 - r0 + 1
    p = torch.repeat_interleave(torch.arange(q.numel(), device=device), pieces)
    mr = (
        r0[p]
        + torch.arange(p.numel(), device=device)
        - torch.repeat_interleave(torch.cumsum(pieces, 0) - pieces, pieces)
    )
    q, h, w, s, e = q[p], h[p], w[p], s[p], e[p]
    lo = torch.clamp(s - mr * w, min=0)
    hi = torch.minimum(e - mr * w, w)
    # output rows i with floor((i + 0.5) h / height) == mr, and likewise the columns
    i_lo = _ceil_div(2 * mr * height - h, 2 * h).clamp(0, height)
    i_hi = _ceil_div(2 * (mr + 1) * height - h, 2 * h).clamp(0, height)
    j_lo = _ceil_div(2 * lo * width - w, 2 * w).clamp(0, width)
    j_hi = _ceil_div(2 * hi * width - w, 2 * w).clamp(0, width)
    reps = (i_hi - i_lo).clamp(min=0) * (j_hi > j_lo)
    p = torch.repeat_interleave(torch.arange(q.numel(), device=device), reps)
    row = (
        i_lo[p]
        + torch.arange(p.numel(), device=device)
        - torch.repeat_interleave(torch.cumsum(reps, 0) - reps, reps)
    )
    return Spans(region_annotator[q[p]], row, j_lo[p], j_hi[p])


def region_coverage(
    spans: Spans,
    annotator_image: torch.Tensor,
    annotator_weight: torch.Tensor,
    shape: tuple[int, int, int],
) -> torch.Tensor:
    """The trust-weighted share of annotators whose regions cover each pixel.

    Each annotator's mask is the union of their spans (``polygon_spans``, ``mask_spans``);
    an image's map is ``sum_a w_a mask_a / sum_a w_a`` over its annotators, including
    those who drew nothing. An annotator's spans are merged by a sweep per (annotator,
    row), and the weighted ends of the merged spans meet in one ``(N, H, W + 1)``
    difference array, summed along rows: the cost is the spans plus one pass over the
    output, not a mask per region.

    Args:
        spans: every annotator's inside spans on the ``H x W`` grid.
        annotator_image: ``(A,)`` int64, each annotator's image in ``[0, N)``.
        annotator_weight: ``(A,)`` float, each annotator's weight (>= 0).
        shape: ``(N, H, W)``, every image's grid.

    Returns:
        ``(N, H, W)`` of ``annotator_weight``'s dtype (a view of the difference array, rows
        ``W + 1`` apart); NaN where an image's weights sum to 0.
    """
    n_img, height, width = shape
    device, wdtype = annotator_weight.device, annotator_weight.dtype
    total = torch.zeros(n_img, dtype=wdtype, device=device).index_add_(
        0, annotator_image, annotator_weight
    )
    diff = torch.zeros((n_img, height, width + 1), dtype=wdtype, device=device)
    if spans.lo.numel():
        ann, row, lo, hi = spans
        # union per (annotator, row): a sweep over +1 at span starts and -1 at span ends
        # (at one position the starts sort before the ends: touching spans merge)
        pos = torch.cat([lo, hi])
        a2, row2 = torch.cat([ann, ann]), torch.cat([row, row])
        is_end = torch.cat([torch.zeros_like(lo), torch.ones_like(hi)])
        ekey = ((a2 * height + row2) * (width + 1) + pos) * 2 + is_end
        ekey, order = torch.sort(ekey)
        step = 1 - 2 * is_end[order]
        depth = torch.cumsum(step, 0)  # each (annotator, row) sums to 0: a global cumsum
        edge = ((step == 1) & (depth == 1)) | ((step == -1) & (depth == 0))
        ekey = ekey[edge]
        sign = torch.where(step[edge] == 1, 1.0, -1.0).to(wdtype)
        cell = ekey // 2
        pos_e = cell % (width + 1)
        ar = cell // (width + 1)
        a_e = ar // height
        diff.index_put_(
            (annotator_image[a_e], ar % height, pos_e),
            sign * annotator_weight[a_e],
            accumulate=True,
        )
    diff.cumsum_(dim=2)
    return diff[:, :, :width].div_(total[:, None, None])


def soften(maps: torch.Tensor, sigma_px: float) -> torch.Tensor:
    """``(N, H, W)`` maps blurred by a separable Gaussian of ``sigma_px`` pixels (truncated
    at 3 sigma, normalised, edges replicated): a constant map stays constant and values
    stay within the input's range. ``sigma_px <= 0`` returns ``maps`` itself."""
    if sigma_px <= 0:
        return maps
    radius = max(1, math.ceil(3 * sigma_px))
    x = torch.arange(-radius, radius + 1, device=maps.device, dtype=maps.dtype)
    g = torch.exp(-0.5 * (x / sigma_px) ** 2)
    g = (g / g.sum()).view(1, 1, -1)
    n, h, w = maps.shape
    rows = F.pad(maps.reshape(n * h, 1, w), (radius, radius), mode="replicate")
    out = F.conv1d(rows, g).reshape(n, h, w).transpose(1, 2).reshape(n * w, 1, h)
    out = F.conv1d(F.pad(out, (radius, radius), mode="replicate"), g)
    return out.reshape(n, w, h).transpose(1, 2).contiguous()
