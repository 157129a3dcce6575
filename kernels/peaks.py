"""Each annotator's maximum over the output grid, without forming its map.

An annotator's map (the sum of its <=3 clicks' separable Gaussians) is max-normalised, so
its exact grid maximum is needed: in closed form for one click, by a hill climb on the
grid where the clicks are apart, and by a branch and bound over tiles where they interact
(``tile_candidates``, then every pixel of the kept tiles, ``tile_maxima``). Pure functions
of the factor tensors (``kernels.profiles``), on their device.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from .profiles import MIN_EXPONENT

#: points per annotator that the kernels' slots hold: the interchange format's cap
#: (``rfengine.schema.MAX_POINTS``; ``tests/test_layout.py`` checks that they agree)
MAX_POINTS = 3


class AnnotatorMaps(NamedTuple):
    """Annotator maps as factors, never formed: the map of annotator (row) ``r`` is
    ``sum_t s_t gy[b, :, c_t] (x) gx[b, c_t, :]`` over its columns ``c_t = first + t``,
    ``t < count``, each scaled by ``s_t = column_scale[b, c_t]`` (1 if None), ``b = batch``.

    Attributes:
        gy: ``(B, H, n)`` column profiles; gx: ``(B, n, W)`` row profiles.
        batch: ``(R,)`` image of each annotator; first: ``(R,)`` its first column;
        count: ``(R,)`` its number of points (1..MAX_POINTS).
        column_scale: ``(B, n)`` each column's factor in its annotator's map, or None.
    """

    gy: Tensor
    gx: Tensor
    batch: Tensor
    first: Tensor
    count: Tensor
    column_scale: Tensor | None = None

    def rows(self, index: Tensor) -> AnnotatorMaps:
        """The maps of the annotators ``index`` (same factors)."""
        return self._replace(
            batch=self.batch[index], first=self.first[index], count=self.count[index]
        )


#: half-width of the window of the peak search's steps after the first
_WINDOW = 2


def _columns(
    batch: Tensor, first: Tensor, count: Tensor, n: int, scale: Tensor | None
) -> tuple[Tensor, Tensor]:
    """Each annotator's factor columns ``first + t`` for ``t < MAX_POINTS`` (clamped inside
    the ``n`` columns) and their weights in its map, ``(R, MAX_POINTS)`` each: the
    column's ``scale[batch, column]`` (1 if None) for its points, 0 for the others."""
    t = torch.arange(MAX_POINTS, device=first.device)
    cols = (first[:, None] + t).clamp_(max=n - 1)
    weight = (t < count[:, None]).to(torch.float64 if scale is None else scale.dtype)
    return cols, weight if scale is None else weight.mul_(scale[batch[:, None], cols])


def _window_factors(
    gy: Tensor,
    gx: Tensor,
    rows: tuple[Tensor, Tensor, Tensor],
    corner: tuple[Tensor, Tensor],
    size: tuple[int, int],
) -> tuple[Tensor, Tensor]:
    """The factors of annotator maps on ``size = (si, sj)`` windows of their images (top-left
    pixels ``corner = (i0, j0)``, ``(R,)`` each, inside the grid), whose batched product is
    those maps: for ``rows = (batch, cols, weight)``, the rows' column profiles
    ``(R, si, K)``, times the ``weight (R, K)`` of each column of ``cols (R, K)``
    (``_columns``), and the columns' row profiles ``(R, K, sj)``. Each is one indexing of a
    sliding-window view of the factor (no index tensor per value)."""
    (batch, cols, weight), (i0, j0), (si, sj) = rows, corner, size
    ys = gy.unfold(1, si, 1)[batch[:, None], i0[:, None], cols]  # (R, K, si)
    xs = gx.unfold(2, sj, 1)[batch[:, None], cols, j0[:, None]]  # (R, K, sj)
    return ys.mul_(weight.to(gy.dtype)[:, :, None]).transpose(1, 2), xs


def annotator_peaks(
    maps: AnnotatorMaps,
    start_i: Tensor,
    start_j: Tensor,
    starts: Tensor | None = None,
    climb: Tensor | None = None,
) -> Tensor:
    """Maximum over the output grid of each annotator's map, without forming the map.

    The maps are ``AnnotatorMaps`` (factors and each annotator's columns). One click's map
    is separable, so its maximum is exactly
    ``max(gy column) * max(gx row)``. For 2-3 clicks, a vectorised hill climb from each
    start pixel (the annotator's click pixels) moves to the best of the 8 neighbours
    first, then to the best of a 5x5 window (fewer steps for the rare start far from its
    maximum), until no move improves: a discrete local maximum. The largest value reached
    is returned: the grid maximum where the annotator's Gaussians are apart (each bump has
    one discrete local maximum, next to its click), else a lower bound that
    ``tile_candidates`` and ``tile_maxima`` then prove or beat.

    Args:
        maps: the ``A`` annotators' maps.
        start_i, start_j: ``(A, S)`` start rows and columns; starts: ``(A, S)`` which of
            them to use (default all).
        climb: ``(A,)`` which annotators to climb (default all); the others get the largest
            value of the 3x3 windows around their starts (a lower bound for
            ``tile_candidates``).

    Returns:
        ``(A,)`` grid maxima, in ``gy``'s dtype.
    """
    gy, gx, batch, first, count, column_scale = maps
    _, H, n = gy.shape
    W = gx.shape[2]
    dev = gy.device
    # one click: the separable maximum, exactly (the value the search would reach)
    peaks = torch.zeros(count.shape, dtype=gy.dtype, device=dev)  # no clicks: 0
    one = (count == 1).nonzero().squeeze(1)
    b1, c1 = batch[one], first[one]
    peaks[one] = gy[b1, :, c1].amax(1) * gx[b1, c1, :].amax(1)
    if column_scale is not None:
        peaks[one] *= column_scale[b1, c1]
    multi = (count > 1).nonzero().squeeze(1)
    if multi.numel() == 0:
        return peaks
    batch, first, count = batch[multi], first[multi], count[multi]
    cols, weight = _columns(batch, first, count, n, column_scale)  # (A, MAX_POINTS) each
    # one row per (annotator, start) climbed; rows that stopped moving leave the loop
    use = torch.ones_like(start_i, dtype=torch.bool) if starts is None else starts
    row_a, slot = use[multi].nonzero().unbind(1)
    ci, cj = start_i[multi[row_a], slot], start_j[multi[row_a], slot]
    row_b, row_c, row_w = batch[row_a], cols[row_a], weight[row_a]
    value = torch.empty(row_a.shape, dtype=gy.dtype, device=dev)
    active = torch.arange(row_a.numel(), device=dev)
    for step in range(H + W):
        # the first step looks at the 8 neighbours, the later ones at a 5x5 window, moved
        # inside the grid where it would cross an edge (it then holds more than those)
        r = 1 if step == 0 else _WINDOW
        si, sj = min(2 * r + 1, H), min(2 * r + 1, W)
        i0 = (ci[active] - r).clamp_(0, H - si)
        j0 = (cj[active] - r).clamp_(0, W - sj)
        rows = (row_b[active], row_c[active], row_w[active])
        vals = torch.bmm(*_window_factors(gy, gx, rows, (i0, j0), (si, sj))).flatten(1)
        # move to the window's largest value (the first in row-major order) only where it
        # beats the current pixel's, read from the same product: a tie stops the climb
        here = vals.gather(1, ((ci[active] - i0) * sj + cj[active] - j0)[:, None]).squeeze(1)
        top, best = vals.max(1)
        value[active] = top  # a value on the grid, and where the row stops, its maximum
        go = top > here
        if step == 0 and climb is not None:
            go &= climb[multi[row_a]]
        moved = go.nonzero().squeeze(1)
        active, best = active[moved], best[moved]
        ci[active] = i0[moved] + torch.div(best, sj, rounding_mode="floor")
        cj[active] = j0[moved] + best % sj
        if active.numel() == 0:
            break
    best = torch.zeros(multi.shape, dtype=gy.dtype, device=dev)
    best.scatter_reduce_(0, row_a, value, reduce="amax")
    return peaks.index_copy(0, multi, best)


#: a tile is dropped when its upper bound, raised by this relative margin (far above the
#: bound's rounding error in float32), is below the best value found
_BOUND_MARGIN = 1e-4
#: side of the tiles whose every pixel is evaluated once the bound no longer drops them
_DENSE_TILE = 32
#: map values per chunk of ``tile_maxima`` on the CPU (1 MiB in float32, cache-sized)
_TILE_CHUNK = 1 << 18


def _axis_maxima(c: Tensor, lo: Tensor, hi: Tensor, inv_sigma: Tensor, reach: Tensor | None):
    """``(R, K)`` upper bound over the pixels ``lo..hi`` of each point's 1-D profile, the sum
    over its images ``c (R, K, M)`` of ``exp(-((k - c) * inv_sigma)^2 / 2)`` (0 beyond
    ``reach``): each image's own maximum, at the pixel of the range nearest its centre."""
    d = c.round().clamp_(lo[:, None, None], hi[:, None, None]).sub_(c)
    e = (d * inv_sigma[:, None, None]).square_().mul_(-0.5).clamp_(min=MIN_EXPONENT).exp_()
    if reach is not None:
        e.masked_fill_(d.abs_() > reach[:, None, None], 0)
    return e.sum(2)


def _centre_box(c: Tensor, valid: Tensor, reach: Tensor | None, size: int) -> tuple[Tensor, Tensor]:
    """``(lo, hi)``, each ``(A,)``: the pixels from the floor of the smallest centre of
    ``c (A, K, M)`` to the ceiling of the largest, inside ``[0, size)``, over the images of
    valid points whose kernel reaches the grid (within ``reach`` of it; all if None)."""
    ok = valid[:, :, None].expand_as(c)
    if reach is not None:
        r = reach[:, None, None]
        ok = ok & (c >= -r) & (c <= (size - 1) + r)
    lo = torch.where(ok, c, torch.inf).amin((1, 2)).floor_().clamp_(0, size - 1)
    hi = torch.where(ok, c, -torch.inf).amax((1, 2)).ceil_().clamp_(0, size - 1)
    return lo.long(), hi.long()


def tile_candidates(
    cx: Tensor,
    cy: Tensor,
    valid: Tensor,
    weight: Tensor,
    sx: Tensor,
    sy: Tensor,
    *,
    reach: Tensor | None,
    size: tuple[int, int],
    lower: Tensor,
    tile: int = _DENSE_TILE,
) -> tuple[Tensor, Tensor, Tensor, int]:
    """Tiles of the grid that can hold a pixel above ``lower`` in an annotator's map.

    The map is ``weight * sum_k X_k(j) Y_k(i)`` over the annotator's points ``k``, each
    profile a sum over the point's images (a point and, for the published method's reflect
    boundaries, its mirror images) of ``exp(-((j - cx) / sx)^2 / 2)``, 0 where ``|j - cx|``
    exceeds ``reach`` (its truncated kernel). Every term grows towards its centre along each
    axis, so left of all centres (and right of them) the map grows towards them: its
    maximum lies in the box from the floor of the smallest centre to the ceiling of the
    largest, per axis (``_centre_box``; centres whose kernel misses the grid add nothing).
    Branch and bound over square tiles of that box (from its corner, an eighth of the
    grid's padded side first, each kept tile halved down to ``tile``): a tile is dropped
    when ``weight * sum_k max X_k * max Y_k`` over its columns and rows in the box (each
    image's maximum at the pixel nearest its centre) is below ``lower``. Every pixel of the
    box above ``lower`` lies in a returned tile, so the largest of ``lower`` and the tiles'
    maxima is the grid maximum.

    Args:
        cx: ``(A, K, Mx)``, cy: ``(A, K, My)`` image centres in output-pixel index units;
            valid: ``(A, K)`` which points exist; weight, sx, sy: ``(A,)`` the map's factor
            and widths; reach: ``(A,)`` truncation radius in pixels, or None (none);
            size: ``(H, W)``; lower: ``(A,)`` a value each map reaches on the grid;
            tile: the returned tiles' side.

    Returns:
        ``(row, i0, j0, side)``: the tiles' annotator rows and top-left pixels, each
        ``(C,)``, and their side ``tile`` (a tile may reach past the grid's edge).
    """
    H, W = size
    dev = cx.device
    A = cx.shape[0]
    lo_i, hi_i = _centre_box(cy, valid, reach, H)
    lo_j, hi_j = _centre_box(cx, valid, reach, W)
    # the first tiles: every s x s tile of the box from its corner, s an eighth of the
    # grid's padded side (at least twice ``tile``)
    s = max(2 * tile, (1 << max(H - 1, W - 1, 1).bit_length()) // 8)
    nti = torch.div(hi_i - lo_i, s, rounding_mode="floor") + 1
    ntj = torch.div(hi_j - lo_j, s, rounding_mode="floor") + 1
    count = nti * ntj
    row = torch.arange(A, device=dev).repeat_interleave(count)
    k = torch.arange(row.numel(), device=dev) - (count.cumsum(0) - count)[row]
    i0 = lo_i[row] + torch.div(k, ntj[row], rounding_mode="floor") * s
    j0 = lo_j[row] + (k % ntj[row]) * s
    inv_x, inv_y = 1 / sx, 1 / sy
    threshold = lower / weight / (1 + _BOUND_MARGIN)
    keep_points = valid.to(cx.dtype)
    di, dj = torch.tensor([0, 0, 1, 1], device=dev), torch.tensor([0, 1, 0, 1], device=dev)
    while True:
        # each tile bounded over its part of the box (tiles start inside it)
        i1 = torch.minimum(i0 + (s - 1), hi_i[row])  # last pixel, inclusive
        j1 = torch.minimum(j0 + (s - 1), hi_j[row])
        rr = None if reach is None else reach[row]
        ey = _axis_maxima(cy[row], i0, i1, inv_y[row], rr)
        ex = _axis_maxima(cx[row], j0, j1, inv_x[row], rr)
        bound = ey.mul_(ex).mul_(keep_points[row]).sum(1)
        keep = (bound >= threshold[row]).nonzero().squeeze(1)
        row, i0, j0 = row[keep], i0[keep], j0[keep]
        if s <= tile or row.numel() == 0:
            return row, i0, j0, s
        # split each tile into its quarters that start inside the box
        s = max(tile, s // 2)
        row = row.repeat_interleave(4)
        i0 = i0.repeat_interleave(4) + di.repeat(keep.numel()) * s
        j0 = j0.repeat_interleave(4) + dj.repeat(keep.numel()) * s
        inside = ((i0 <= hi_i[row]) & (j0 <= hi_j[row])).nonzero().squeeze(1)
        row, i0, j0 = row[inside], i0[inside], j0[inside]


def tile_maxima(maps: AnnotatorMaps, i0: Tensor, j0: Tensor, side: int) -> Tensor:
    """``(R,)`` maximum of each row's annotator map over the ``side x side`` tile at
    ``(i0, j0)``, every pixel evaluated from the factors: the tile's row profiles times its
    column profiles, in batched products. A tile cut by the grid's edge is moved inside it
    (the extra pixels are the same map's), so the maximum is over at least its pixels.

    Args:
        maps: the ``R`` rows' annotator maps; i0, j0: ``(R,)`` tile corners.
    """
    gy, gx, batch, first, count, column_scale = maps
    _, H, n = gy.shape
    W = gx.shape[2]
    si, sj = min(side, H), min(side, W)
    cols, weight = _columns(batch, first, count, n, column_scale)
    i0, j0 = i0.clamp(max=H - si), j0.clamp(max=W - sj)
    ys, xs = _window_factors(gy, gx, (batch, cols, weight), (i0, j0), (si, sj))
    # on the CPU in chunks whose tiles stay in cache between the product and the maximum
    R = batch.shape[0]
    step = max(1, _TILE_CHUNK // (si * sj)) if gy.device.type == "cpu" else max(1, R)
    out = torch.empty(R, dtype=gy.dtype, device=gy.device)
    for k in range(0, R, step):
        c = slice(k, k + step)
        torch.amax(torch.bmm(ys[c], xs[c]), (1, 2), out=out[c])
    return out
