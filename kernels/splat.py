"""Gaussian splatting of click points as separable batched products.

An annotator's map is a sum of <=3 isotropic Gaussians. Each Gaussian factorises into a
column profile (over output rows) times a row profile (over output columns), so a whole
image's heatmap is one product ``Gy @ diag(c) @ Gx`` with ``Gy: (H, n)``, ``Gx: (n, W)``
and one coefficient per point. Images of one output size are batched with ``bmm``; images
with fewer points are padded with zero-coefficient columns.

Everything here is a pure function of tensors: no I/O, no configuration, results on the
inputs' device. Profiles are computed in the dtype of the coordinates (float32 in the
engine, float64 in tests).
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import torch
from torch import Tensor

from rfengine.schema import MAX_POINTS

Preset = Literal["default", "rapidata-2025"]

#: exp() arguments are clamped here: torch's float32 exp is ~13x slower below about -87,
#: and exp(-80) ~ 1.8e-35 is already far below float16 resolution.
MIN_EXPONENT = -80.0

#: Gaussians this many sigma apart or more need no tile search for their maximum (``_normalise``)
SEPARATE = 4.0
#: half-width of the window of the peak search's steps after the first
_WINDOW = 2


def _window_order(r: int, device: torch.device) -> Tensor:
    """Flat indices into a row-major (2r+1)^2 window, the centre first (so that a tie keeps
    the current pixel and the climb stops), then the others in row-major order."""
    w = 2 * r + 1
    flat = torch.arange(w * w, device=device)
    centre = r * w + r
    return torch.cat([flat[centre : centre + 1], flat[flat != centre]])


Scratch = dict[str, Tensor]


def scratch_buffer(
    scratch: Scratch | None,
    name: str,
    shape: tuple[int, ...],
    like: Tensor,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """An uninitialised ``shape`` tensor from ``scratch`` (grown as needed), else a new one.

    Large fresh allocations cost page faults comparable to the splat itself on the CPU; a
    caller that passes the same dict for every batch reuses the memory.
    """
    dtype = dtype or like.dtype
    n = math.prod(shape)
    if scratch is None:
        return torch.empty(shape, dtype=dtype, device=like.device)
    buf = scratch.get(name)
    if buf is None or buf.numel() < n or buf.dtype != dtype or buf.device != like.device:
        buf = scratch[name] = torch.empty(n, dtype=dtype, device=like.device)
    return buf[:n].view(shape)


#: the Gaussian's standard deviation as a fraction of the image's smaller side
SIGMA_FRACTION = 0.05


def sigma_px(width: Tensor, height: Tensor) -> Tensor:
    """Gaussian standard deviation in native pixels: 5% of the image's smaller side."""
    return SIGMA_FRACTION * torch.minimum(width, height)


def gaussian_profiles(
    coord: Tensor,
    extent: Tensor,
    size: int,
    sigma: Tensor,
    *,
    transposed: bool = False,
    out: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Continuous Gaussian of each point along one axis, sampled at output pixel centres.

    Each profile is returned divided by its own maximum over the grid, with the log of that
    maximum alongside: ``exp(-d^2 / (2 sigma^2)) = profile * exp(log_peak)``. Clamping the
    exponent (``MIN_EXPONENT``) relative to the profile's own peak keeps every value exact to
    ``exp(MIN_EXPONENT)`` of the peak, even where a click is far from every pixel centre.

    Args:
        coord: ``(B, n)`` point coordinates as fractions of the image side, in [0, 1].
        extent: ``(B,)`` native length of that side in pixels.
        size: number of output pixels along the axis.
        sigma: ``(B,)`` standard deviation in native pixels.

        transposed: return the profiles as ``(B, size, n)`` (the left factor of a product).
        out: optional tensor of the result's shape to compute in.

    Returns:
        ``(profile (B, n, size), log_peak (B, n))``, where ``d`` is the native-pixel distance
        from the point to the centre ``(k + 0.5) / size`` of output pixel ``k``.
    """
    dt, dev = coord.dtype, coord.device
    centres = (torch.arange(size, dtype=dt, device=dev) + 0.5) / size
    scale = (-0.5 * (extent.to(dt) / sigma.to(dt)) ** 2)[:, None]  # per fraction^2
    # the grid peak is at the pixel centre nearest the point: its exponent in closed form
    nearest = ((coord * size).floor().clamp_(0, size - 1) + 0.5) / size
    log_peak = (nearest - coord).square_().mul_(scale)
    if transposed:
        e = torch.sub(centres[None, :, None], coord[:, None, :], out=out)
        e.square_().mul_(scale[..., None]).sub_(log_peak[:, None, :])
    else:
        e = torch.sub(centres[None, None, :], coord[:, :, None], out=out)
        e.square_().mul_(scale[..., None]).sub_(log_peak[..., None])
    return e.clamp_(min=MIN_EXPONENT).exp_(), log_peak


def discrete_kernel_radius(sigma: Tensor, truncate: float = 3.0) -> Tensor:
    """scipy.ndimage's kernel radius ``int(truncate * sigma + 0.5)`` (long tensor)."""
    return (truncate * sigma + 0.5).floor().long()


def discrete_kernel_sum(sigma: Tensor, radius: Tensor) -> Tensor:
    """``(B,)`` sum of the taps ``exp(-t^2 / (2 sigma^2))``, ``|t| <= radius``: the discrete
    Gaussian kernel's normalisation (in ``sigma``'s dtype)."""
    r = int(radius.max()) if radius.numel() else 0
    taps = torch.arange(-r, r + 1, device=sigma.device, dtype=sigma.dtype)
    inv = (-0.5 / sigma**2)[:, None]
    kernel = (taps.square() * inv).exp_().masked_fill_(taps.abs() > radius[:, None], 0)
    return kernel.sum(-1)


def reflected_kernel_profiles(
    pixel: Tensor,
    size: int,
    sigma: Tensor,
    radius: Tensor,
    *,
    transposed: bool = False,
    out: Tensor | None = None,
    scratch: Scratch | None = None,
) -> Tensor:
    """Response of a 1-D discrete Gaussian filter to a unit impulse, with reflect boundaries.

    Reproduces ``scipy.ndimage.gaussian_filter1d(e_m, sigma, truncate=3, mode="reflect")``
    for the impulse ``e_m`` at each pixel ``m``: a kernel of radius ``r`` normalised to sum
    one, with the signal mirrored about the edges (``d c b a | a b c d | d c b a``).

    Args:
        pixel: ``(B, n)`` integer impulse positions in ``[0, size)``.
        size: signal length in pixels.
        sigma: ``(B,)`` kernel standard deviation in pixels (float dtype sets the result's).
        radius: ``(B,)`` kernel radius in pixels; must be ``< size`` (one reflection a side).
        transposed: return ``(B, size, n)`` instead (the left factor of a product).
        out: optional tensor of the result's shape to write into.
        scratch: optional dict of reusable buffers for temporaries (see ``scratch_buffer``).

    Returns:
        ``(B, n, size)`` filter responses.
    """
    dt, dev = sigma.dtype, sigma.device
    if bool((radius >= size).any()):
        raise ValueError(f"kernel radius must be below the signal length {size}, got {radius}")
    r = radius.to(dt)[:, None, None]
    inv = (-0.5 / sigma**2)[:, None, None]
    norm = discrete_kernel_sum(sigma, radius)[:, None, None]  # the kernel sums to one
    B, n = pixel.shape
    if transposed:
        i = torch.arange(size, device=dev, dtype=dt)[None, :, None]
        m = pixel.to(dt)[:, None, :]
        shape: tuple[int, ...] = (B, size, n)
    else:
        i = torch.arange(size, device=dev, dtype=dt)[None, None, :]
        m = pixel.to(dt)[:, :, None]
        shape = (B, n, size)
    out = torch.zeros(shape, dtype=dt, device=dev) if out is None else out.zero_()
    t = scratch_buffer(scratch, "reflect_t", shape, sigma)
    near = scratch_buffer(scratch, "reflect_mask", shape, sigma, torch.bool)
    # the impulse itself, its mirror below 0 (at -1-m) and its mirror above size-1 (2*size-1-m)
    for src in (m, -1.0 - m, 2.0 * size - 1.0 - m):
        torch.sub(src, i, out=t).abs_()
        torch.le(t, r, out=near)
        # taps beyond the radius are masked; clamping first avoids exp's slow path
        out.add_(t.square_().mul_(inv).clamp_(min=MIN_EXPONENT).exp_().mul_(near))
    return out.div_(norm)


def pack_columns(point_image: Tensor, n_images: int) -> tuple[Tensor, int]:
    """Column of each point within its image's padded factor matrices.

    Args:
        point_image: ``(P,)`` image index of each point, sorted ascending.
        n_images: number of images in the batch.

    Returns:
        ``(column (P,), n_max)`` where ``n_max`` is the largest number of points in an image.
    """
    counts = torch.bincount(point_image, minlength=n_images)
    starts = torch.cumsum(counts, 0) - counts
    column = torch.arange(point_image.numel(), device=point_image.device) - starts[point_image]
    return column, int(counts.max()) if counts.numel() else 0


def annotator_peaks(
    gy: Tensor,
    gx: Tensor,
    batch: Tensor,
    first: Tensor,
    count: Tensor,
    start_i: Tensor,
    start_j: Tensor,
    climb: Tensor | None = None,
) -> Tensor:
    """Maximum over the output grid of each annotator's map, without forming the map.

    The map of annotator ``a`` is ``sum_t gy[b, :, first + t] (x) gx[b, first + t, :]`` for
    ``t < count``. One click's map is separable, so its maximum is exactly
    ``max(gy column) * max(gx row)``. For 2-3 clicks, a vectorised hill climb from each
    start pixel (the annotator's click pixels) moves to the best of the 8 neighbours
    first, then to the best of a 5x5 window (fewer steps for the rare start far from its
    maximum), until no move improves: a discrete local maximum. The largest value reached
    is returned: the grid maximum where the annotator's Gaussians are apart (each bump has
    one discrete local maximum, next to its click), else a lower bound that
    ``tile_candidates`` and ``tile_maxima`` then prove or beat.

    Args:
        gy: ``(B, H, n)`` column profiles; gx: ``(B, n, W)`` row profiles.
        batch: ``(A,)`` image index of each annotator; first: ``(A,)`` its first column;
        count: ``(A,)`` its number of points (1..MAX_POINTS).
        start_i, start_j: ``(A, S)`` start rows and columns.
        climb: ``(A,)`` which annotators to climb (default all); the others get the largest
            value at their starts (a lower bound for ``tile_candidates``).

    Returns:
        ``(A,)`` grid maxima, in ``gy``'s dtype.
    """
    _, H, n = gy.shape
    W = gx.shape[2]
    dev = gy.device
    # one click: the separable maximum, exactly (the value the search would reach)
    peaks = torch.zeros(count.shape, dtype=gy.dtype, device=dev)  # no clicks: 0
    one = (count == 1).nonzero().squeeze(1)
    b1, c1 = batch[one], first[one]
    peaks[one] = gy[b1, :, c1].amax(1) * gx[b1, c1, :].amax(1)
    multi = (count > 1).nonzero().squeeze(1)
    if multi.numel() == 0:
        return peaks
    batch, first, count = batch[multi], first[multi], count[multi]
    start_i, start_j = start_i[multi], start_j[multi]
    t = torch.arange(MAX_POINTS, device=dev)
    valid = (t[None, :] < count[:, None]).to(gy.dtype)  # (A, MAX_POINTS)
    cols = (first[:, None] + t[None, :]).clamp_(max=n - 1)  # (A, MAX_POINTS)
    # the first step looks at the 8 neighbours, the later ones at a 5x5 window
    windows = [(r, _window_order(r, dev)) for r in (1, _WINDOW)]
    S = start_i.shape[1]
    # one row per distinct (annotator, start pixel): starts that converged to the same mode
    # are climbed once; rows that stopped moving leave the loop
    A_m = start_i.shape[0]
    key = torch.arange(A_m, device=dev).repeat_interleave(S) * (H * W)
    key = torch.unique(key + start_i.reshape(-1) * W + start_j.reshape(-1))
    row_a = torch.div(key, H * W, rounding_mode="floor")
    ci = torch.div(key % (H * W), W, rounding_mode="floor")
    cj = key % W
    active = torch.arange(ci.numel(), device=dev)
    if climb is not None:
        active = active[climb[multi][row_a]]

    # per row: its image's offsets into the flat factors, its columns and their validity
    gy_flat, gx_flat = gy.reshape(-1), gx.reshape(-1)  # contiguous buffers: views
    row_b, row_c = batch[row_a], cols[row_a]
    row_y = (row_b * (H * n))[:, None] + row_c  # + i * n: gy[b, i, c]
    row_x = (row_b * (n * W))[:, None] + row_c * W  # + j: gx[b, c, j]
    row_v = valid[row_a]

    def value_rows(rows: Tensor, i: Tensor, j: Tensor) -> Tensor:  # (R,), (R,) -> (R,)
        gyv = gy_flat.take(row_y[rows] + (i * n)[:, None])  # (R, K)
        gxv = gx_flat.take(row_x[rows] + j[:, None])
        return (gyv * gxv * row_v[rows]).sum(-1)

    def window(rows: Tensor, i: Tensor, j: Tensor, r: int) -> tuple[Tensor, Tensor, Tensor]:
        """The map on the (2r+1)^2 window around each row's pixel (clamped at the edges):
        its (2r+1) rows' and columns' profiles gathered once (flat ``take``), the window
        their product. Returns values (R, (2r+1)^2) in row-major order and the rows' and
        columns' pixel indices, each (R, 2r+1)."""
        off = torch.arange(-r, r + 1, device=dev)
        wi = (i[:, None] + off).clamp_(0, H - 1)
        wj = (j[:, None] + off).clamp_(0, W - 1)
        ys = gy_flat.take(row_y[rows][:, None, :] + (wi * n)[:, :, None])  # (R, 2r+1, K)
        xs = gx_flat.take(row_x[rows][:, :, None] + wj[:, None, :])  # (R, K, 2r+1)
        return torch.bmm(ys * row_v[rows][:, None, :], xs).flatten(1), wi, wj

    for step in range(H + W if active.numel() else 0):
        r, order = windows[min(step, 1)]
        vals, wi, wj = window(active, ci[active], cj[active], r)
        best = order[vals[:, order].argmax(-1)]  # flat index in the window, centre first
        ni = wi.gather(1, torch.div(best, 2 * r + 1, rounding_mode="floor")[:, None])
        nj = wj.gather(1, (best % (2 * r + 1))[:, None])
        ni, nj = ni.squeeze(1), nj.squeeze(1)
        moved = (ni != ci[active]) | (nj != cj[active])
        ci[active], cj[active] = ni, nj
        active = active[moved]
        if active.numel() == 0:
            break
    found = value_rows(torch.arange(ci.numel(), device=dev), ci, cj)
    best = torch.zeros(A_m, dtype=gy.dtype, device=dev)
    best.scatter_reduce_(0, row_a, found, reduce="amax")
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


def tile_candidates(
    cx: Tensor,
    cy: Tensor,
    valid: Tensor,
    weight: Tensor,
    sx: Tensor,
    sy: Tensor,
    reach: Tensor | None,
    size: tuple[int, int],
    lower: Tensor,
    tile: int = _DENSE_TILE,
) -> tuple[Tensor, Tensor, Tensor, int]:
    """Tiles of the grid that can hold a pixel above ``lower`` in an annotator's map.

    The map is ``weight * sum_k X_k(j) Y_k(i)`` over the annotator's points ``k``, each
    profile a sum over the point's images (a point and, for the published method's reflect
    boundaries, its mirror images) of ``exp(-((j - cx) / sx)^2 / 2)``, 0 where ``|j - cx|``
    exceeds ``reach`` (its truncated kernel). Branch and bound over square tiles (a quarter
    of the grid's padded side first, halved down to ``tile``): a tile is dropped when
    ``weight * sum_k max X_k * max Y_k`` over its columns and rows (each image's maximum at
    the pixel nearest its centre) is below ``lower``. Every pixel above ``lower`` lies in a
    returned tile, so the largest of ``lower`` and the tiles' maxima is the grid maximum.

    Args:
        cx: ``(A, K, Mx)``, cy: ``(A, K, My)`` image centres in output-pixel index units;
            valid: ``(A, K)`` which points exist; weight, sx, sy: ``(A,)`` the map's factor
            and widths; reach: ``(A,)`` truncation radius in pixels, or None (none);
            size: ``(H, W)``; lower: ``(A,)`` a value each map reaches on the grid;
            tile: the returned tiles' side (a power of 2).

    Returns:
        ``(row, i0, j0, side)``: the tiles' annotator rows and top-left pixels, each
        ``(C,)``, and their side (tiles at the grid's edge are cut by it).
    """
    H, W = size
    dev = cx.device
    A = cx.shape[0]
    s = max(1, (1 << max(H - 1, W - 1, 1).bit_length()) // 4)
    ti = torch.arange(0, H, s, device=dev)
    tj = torch.arange(0, W, s, device=dev)
    nt = ti.numel() * tj.numel()
    row = torch.arange(A, device=dev).repeat_interleave(nt)
    i0 = ti.repeat_interleave(tj.numel()).repeat(A)
    j0 = tj.repeat(ti.numel() * A)
    inv_x, inv_y = 1 / sx, 1 / sy
    threshold = lower / weight / (1 + _BOUND_MARGIN)
    keep_points = valid.to(cx.dtype)
    while True:
        i1 = (i0 + s).clamp_(max=H) - 1  # last pixel, inclusive
        j1 = (j0 + s).clamp_(max=W) - 1
        rr = None if reach is None else reach[row]
        ey = _axis_maxima(cy[row], i0, i1, inv_y[row], rr)
        ex = _axis_maxima(cx[row], j0, j1, inv_x[row], rr)
        bound = ey.mul_(ex).mul_(keep_points[row]).sum(1)
        keep = (bound >= threshold[row]).nonzero().squeeze(1)
        row, i0, j0 = row[keep], i0[keep], j0[keep]
        if s <= tile or row.numel() == 0:
            return row, i0, j0, s
        # split each tile into its (up to) four halves inside the grid
        s //= 2
        di = torch.tensor([0, 0, s, s], device=dev)
        dj = torch.tensor([0, s, 0, s], device=dev)
        row = row.repeat_interleave(4)
        i0 = i0.repeat_interleave(4) + di.repeat(keep.numel())
        j0 = j0.repeat_interleave(4) + dj.repeat(keep.numel())
        inside_grid = ((i0 < H) & (j0 < W)).nonzero().squeeze(1)
        row, i0, j0 = row[inside_grid], i0[inside_grid], j0[inside_grid]


def tile_maxima(
    gy: Tensor,
    gx: Tensor,
    batch: Tensor,
    first: Tensor,
    count: Tensor,
    i0: Tensor,
    j0: Tensor,
    side: int,
) -> Tensor:
    """``(R,)`` maximum of each row's annotator map over the ``side x side`` tile at
    ``(i0, j0)``, every pixel evaluated from the factors: the tile's row profiles times its
    column profiles, in batched products. A tile cut by the grid's edge is moved inside it
    (the extra pixels are the same map's), so the maximum is over at least its pixels.

    Args:
        gy: ``(B, H, n)``; gx: ``(B, n, W)``; batch, first, count: ``(R,)`` each row's
            image, first column and number of columns; i0, j0: ``(R,)`` tile corners.
    """
    _, H, n = gy.shape
    W = gx.shape[2]
    K = min(MAX_POINTS, n)
    si, sj = min(side, H), min(side, W)
    # each row's window of K consecutive columns, starting early where its points end
    # the image's columns; then the pixels' profiles from zero-copy sliding views
    start = first.clamp(max=n - K)
    t = start[:, None] + torch.arange(K, device=gy.device)
    valid = ((t >= first[:, None]) & (t < (first + count)[:, None])).to(gy.dtype)
    ii = i0.clamp(max=H - si)
    jj = j0.clamp(max=W - sj)
    ys = gy.unfold(1, si, 1).unfold(2, K, 1)[batch, ii, start]  # (R, si, K)
    xs = gx.unfold(1, K, 1).unfold(2, sj, 1)[batch, start, jj]  # (R, K, sj)
    ys.mul_(valid[:, None, :])
    # on the CPU in chunks whose tiles stay in cache between the product and the maximum
    step = _TILE_CHUNK // (si * sj) if ys.device.type == "cpu" else ys.shape[0]
    step = max(1, step)
    out = torch.empty(ys.shape[0], dtype=gy.dtype, device=gy.device)
    for k in range(0, ys.shape[0], step):
        torch.amax(torch.bmm(ys[k : k + step], xs[k : k + step]), (1, 2), out=out[k : k + step])
    return out


class Factors(NamedTuple):
    """A batch's separable factors and what the peak search needs of them (per preset).

    ``gy (B, H, n)`` and ``gx (B, n, W)`` are the column and row profiles of every point
    (``n`` = most points in an image), each divided by its own grid peak, whose log is
    ``log_scale (B, n)``; ``ux, uy (P,)`` are the points in output-pixel index units (pixel
    ``k``'s centre is at ``k``); ``sx, sy (A,)`` each annotator's Gaussian width in those
    units; ``mirrors_x``, ``mirrors_y`` the centres whose sum is the map (a point and, for
    the published method's reflect boundaries, its mirror images); ``mirrored (A,)``
    marks annotators with a point whose mirror image reaches the grid. Each centre adds
    ``term_scale * exp(-log_scale_max) * exp(-dx^2 / 2 sx^2 - dy^2 / 2 sy^2)`` to the map
    of ``gy @ gx`` (``log_scale_max``: the largest ``log_scale`` among the annotator's
    points, ``term_scale (B,)`` per image), 0 where ``|dx|`` or ``|dy|`` exceeds ``reach
    (B,)`` (None: no truncation, a smooth map).
    """

    gy: Tensor
    gx: Tensor
    log_scale: Tensor
    ux: Tensor
    uy: Tensor
    sx: Tensor
    sy: Tensor
    mirrors_x: tuple[Tensor, ...]
    mirrors_y: tuple[Tensor, ...]
    mirrored: Tensor
    term_scale: Tensor
    reach: Tensor | None


class Batch(NamedTuple):
    """One call's points in the packed layout (``column`` of each point among its image's
    ``n`` columns) and the geometry the factor builders need."""

    px: Tensor
    py: Tensor
    point_image: Tensor
    column: Tensor
    n: int
    point_annotator: Tensor
    annotator_image: Tensor
    width: Tensor
    height: Tensor
    out_size: tuple[int, int]
    scratch: Scratch | None


def _default_factors(b: Batch) -> Factors:
    """``default``: continuous Gaussians (sigma = 5% of the smaller native side) sampled at
    the output pixel centres, any output size."""
    px, py, point_image, column, n, point_annotator, annotator_image, width, height, *_ = b
    out_size, scratch = b.out_size, b.scratch
    B, (H, W) = width.shape[0], out_size
    dt, dev = px.dtype, px.device
    wf, hf = width.to(dt), height.to(dt)
    cx = torch.ones((B, n), dtype=dt, device=dev)
    cy = torch.ones((B, n), dtype=dt, device=dev)
    cx[point_image, column] = px
    cy[point_image, column] = py
    sigma = sigma_px(wf, hf)
    gy, log_y = gaussian_profiles(
        cy, hf, H, sigma, transposed=True, out=scratch_buffer(scratch, "gy", (B, H, n), px)
    )  # (B, H, n)
    gx, log_x = gaussian_profiles(
        cx, wf, W, sigma, out=scratch_buffer(scratch, "gx", (B, n, W), px)
    )  # (B, n, W)
    ux, uy = px * W - 0.5, py * H - 0.5
    s_img = sigma[annotator_image]
    sx, sy = s_img * W / wf[annotator_image], s_img * H / hf[annotator_image]
    none = torch.zeros(annotator_image.shape[0], dtype=torch.bool, device=dev)
    # each point's Gaussian = exp(log_x + log_y) gy (x) gx
    ones = torch.ones(B, dtype=dt, device=dev)
    return Factors(gy, gx, log_x + log_y, ux, uy, sx, sy, (ux,), (uy,), none, ones, None)


def _rapidata_factors(b: Batch) -> Factors:
    """``rapidata-2025``: each point snapped to its native pixel and filtered as by
    ``scipy.ndimage.gaussian_filter(sigma=min(W, H) / 20, truncate=3, mode="reflect")``."""
    px, py, point_image, column, n, point_annotator, annotator_image, width, height, *_ = b
    out_size, scratch = b.out_size, b.scratch
    B, (H, W) = width.shape[0], out_size
    dt, dev = px.dtype, px.device
    if bool(((width != W) | (height != H)).any()):
        raise ValueError("preset 'rapidata-2025' is defined at native resolution only")
    wf, hf = width.to(dt), height.to(dt)
    mx = torch.zeros((B, n), dtype=torch.long, device=dev)
    my = torch.zeros((B, n), dtype=torch.long, device=dev)
    mx[point_image, column] = (px * W).long().clamp_(max=W - 1)
    my[point_image, column] = (py * H).long().clamp_(max=H - 1)
    sigma = torch.minimum(wf, hf) / 20
    radius = discrete_kernel_radius(sigma)
    norm = discrete_kernel_sum(sigma, radius)
    gy = reflected_kernel_profiles(
        my,
        H,
        sigma,
        radius,
        transposed=True,
        scratch=scratch,
        out=scratch_buffer(scratch, "gy", (B, H, n), px),
    )
    gx = reflected_kernel_profiles(
        mx, W, sigma, radius, scratch=scratch, out=scratch_buffer(scratch, "gx", (B, n, W), px)
    )
    ux, uy = mx[point_image, column].to(dt), my[point_image, column].to(dt)
    sx = sy = sigma[annotator_image]
    A = annotator_image.shape[0]
    # an impulse's mirror image across an edge is within the kernel's reach
    r_pt = radius[point_image].to(dt)
    edge = (ux < r_pt) | (ux > W - 1 - r_pt) | (uy < r_pt) | (uy > H - 1 - r_pt)
    near_edge = torch.zeros(A, dtype=torch.int32, device=dev)
    mirrored = near_edge.index_add_(0, point_annotator, edge.int()) > 0
    return Factors(
        gy,
        gx,
        torch.zeros((B, n), dtype=dt, device=dev),
        ux,
        uy,
        sx,
        sy,
        (ux, -1.0 - ux, 2.0 * W - 1.0 - ux),
        (uy, -1.0 - uy, 2.0 * H - 1.0 - uy),
        mirrored,
        norm.square().reciprocal(),
        radius.to(dt),
    )


_FACTORS = {"default": _default_factors, "rapidata-2025": _rapidata_factors}


def _normalise(
    f: Factors,
    point_image: Tensor,
    column: Tensor,
    n: int,
    point_annotator: Tensor,
    annotator_image: Tensor,
    annotator_scale: Tensor,
    out_size: tuple[int, int],
) -> Tensor:
    """``(B, n)`` coefficient of each point: its annotator's ``scale / grid maximum``, with
    the point's scale relative to the annotator's largest folded into ``f.gy`` (in place)."""
    H, W = out_size
    dt, dev = f.gy.dtype, f.gy.device
    B = f.gy.shape[0]
    A = annotator_image.shape[0]
    count = torch.bincount(point_annotator, minlength=A)
    first = torch.full((A,), n, dtype=torch.long, device=dev)
    first.scatter_reduce_(0, point_annotator, column, reduce="amin")
    slot = column - first[point_annotator]
    # each annotator's points (slot 0..count-1) and their images along each axis
    ix = torch.zeros((A, MAX_POINTS, len(f.mirrors_x)), dtype=dt, device=dev)
    iy = torch.zeros((A, MAX_POINTS, len(f.mirrors_y)), dtype=dt, device=dev)
    ix[point_annotator, slot] = torch.stack(f.mirrors_x, 1)
    iy[point_annotator, slot] = torch.stack(f.mirrors_y, 1)
    valid = torch.zeros((A, MAX_POINTS), dtype=torch.bool, device=dev)
    valid[point_annotator, slot] = True
    # starts: the annotator's points (missing slots repeat the first) and their centroid,
    # from which the climb, or the tile search's lower bound, begins
    lead = slot == 0
    st_x = torch.empty((A, MAX_POINTS + 1), dtype=dt, device=dev)
    st_y = torch.empty((A, MAX_POINTS + 1), dtype=dt, device=dev)
    st_x[point_annotator[lead]] = f.ux[lead, None]
    st_y[point_annotator[lead]] = f.uy[lead, None]
    st_x[point_annotator, slot] = f.ux
    st_y[point_annotator, slot] = f.uy
    cnt = count.to(dt)
    zeros = torch.zeros(A, dtype=dt, device=dev)
    st_x[:, MAX_POINTS] = zeros.index_add(0, point_annotator, f.ux) / cnt
    st_y[:, MAX_POINTS] = zeros.index_add(0, point_annotator, f.uy) / cnt
    # Points interact where their Gaussians are under SEPARATE sigma apart (a smooth map;
    # farther, each has one mode, within a hair of its centre: 4 sigma, a shift of ~0.001
    # sigma) or their truncated kernels overlap: those annotators, and those with a mirror
    # image on the grid, go to the tile search below; the others climb from their points
    dx = ix[:, :, None, 0] - ix[:, None, :, 0]
    dy = iy[:, :, None, 0] - iy[:, None, :, 0]
    pair = valid[:, :, None] & valid[:, None, :]
    pair &= ~torch.eye(pair.shape[1], dtype=torch.bool, device=dev)
    if f.reach is None:
        dx, dy = dx / f.sx[:, None, None], dy / f.sy[:, None, None]
        pair &= dx.square_() + dy.square_() < SEPARATE**2
    else:
        span = 2 * f.reach[annotator_image][:, None, None]
        pair &= (dx.abs_() <= span) & (dy.abs_() <= span)
    close = pair.any(dim=(1, 2))
    # there the centroid is no mode (it may sit far from all of them): climb from the clicks
    apart = ~close
    st_x[apart, MAX_POINTS] = st_x[apart, 0]
    st_y[apart, MAX_POINTS] = st_y[apart, 0]
    start_j = st_x.round().long().clamp_(0, W - 1)
    start_i = st_y.round().long().clamp_(0, H - 1)
    # relative scale of each point within its annotator's map (1 for the largest), folded
    # into the column profiles so that the peak search sees the true map up to one factor
    log_pt = f.log_scale[point_image, column]
    log_ann = torch.full((A,), -torch.inf, dtype=dt, device=dev)
    log_ann.scatter_reduce_(0, point_annotator, log_pt, reduce="amax")
    rel = torch.ones((B, n), dtype=dt, device=dev)
    rel[point_image, column] = (log_pt - log_ann[point_annotator]).clamp_(min=MIN_EXPONENT).exp_()
    f.gy.mul_(rel[:, None, :])
    # Factors below sqrt(tiny) become 0, so that no product in the GEMM is subnormal: on
    # x86 CPUs subnormal arithmetic is many times slower (a 512^2 batch took 2.3x as long
    # with its Gaussian tails), and flush-to-zero modes do not reach the BLAS threads. A
    # dropped factor is below 1.1e-19 (float32), so each point moves any pixel, and any
    # maximum, by less. (The column factors are scaled, then zeroed, in splat_heatmaps.)
    torch.nn.functional.threshold_(f.gx, torch.finfo(dt).tiny ** 0.5, 0.0)
    sure = (count >= 2) & (close | f.mirrored)
    peak = annotator_peaks(f.gy, f.gx, annotator_image, first, count, start_i, start_j, ~sure)
    # A climb reaches a discrete local maximum, and where clicks interact a sum of Gaussians
    # on a grid can have several near one mode (a skewed flat ridge) or, truncated, a
    # higher one across the edge of another click's kernel. There, instead of climbing, a
    # branch and bound over tiles keeps every tile that may hold a pixel above the best
    # start's value, and every pixel of those is evaluated. Apart (SEPARATE sigma, smooth
    # maps), each bump is a separable Gaussian up to tails below e^-8, whose one discrete
    # local maximum the climb from its own pixel finds.
    cert = sure.nonzero().squeeze(1)
    if cert.numel():
        img = annotator_image[cert]
        row, i0, j0, side = tile_candidates(
            ix[cert],
            iy[cert],
            valid[cert],
            f.term_scale[img] * (-log_ann[cert]).exp(),
            f.sx[cert],
            f.sy[cert],
            None if f.reach is None else f.reach[img],
            out_size,
            peak[cert],
        )
        a = cert[row]
        found = tile_maxima(f.gy, f.gx, annotator_image[a], first[a], count[a], i0, j0, side)
        peak.scatter_reduce_(0, a, found, reduce="amax")
    factor = torch.where(peak > 0, annotator_scale.to(dt) / peak, 0)
    coeff = torch.zeros((B, n), dtype=dt, device=dev)
    coeff[point_image, column] = factor[point_annotator]
    return coeff


# ------------------------------------------------------------------------ preconditions


def _check_lengths(**tensors: Tensor) -> None:
    """Per-point (or per-annotator, per-image) tensors of one group have one length."""
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if len({s for s in shapes.values()}) > 1 or any(len(s) != 1 for s in shapes.values()):
        got = ", ".join(f"`{k}` {v}" for k, v in shapes.items())
        raise ValueError(
            f"{', '.join(f'`{k}`' for k in shapes)} must be 1-D of one length, got {got}"
        )


def _check_dtypes(px: Tensor, py: Tensor, **ids: Tensor) -> None:
    """Coordinates in one floating dtype; ids and sizes as integers."""
    if not px.is_floating_point() or py.dtype != px.dtype:
        raise TypeError(f"`px` and `py` must share a floating dtype, got {px.dtype} and {py.dtype}")
    for name, t in ids.items():
        if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
            raise TypeError(f"`{name}` must be an integer tensor, got {t.dtype}")


def _check_sorted(name: str, t: Tensor) -> None:
    """Non-decreasing, as the packing of points into columns assumes."""
    if t.numel() > 1 and bool((t[1:] < t[:-1]).any()):
        k = int((t[1:] < t[:-1]).nonzero()[0, 0])
        raise ValueError(
            f"`{name}` must be sorted ascending (points grouped by image, then annotator); "
            f"got {int(t[k])} before {int(t[k + 1])} at position {k + 1}"
        )


def _check_range(name: str, t: Tensor, lo: float, hi: float) -> None:
    """Every value finite and in ``[lo, hi]``."""
    bad = ~torch.isfinite(t) | (t < lo) | (t > hi) if t.is_floating_point() else (t < lo) | (t > hi)
    if bool(bad.any()):
        k = int(bad.nonzero()[0, 0])
        raise ValueError(f"`{name}` must lie in [{lo:g}, {hi:g}], got {t[k].item()} at {k}")


def _check_point_limit(point_annotator: Tensor, n_annotators: int) -> None:
    """At most ``MAX_POINTS`` points per annotator."""
    count = torch.bincount(point_annotator, minlength=n_annotators)
    if count.numel() and int(count.max()) > MAX_POINTS:
        a = int(count.argmax())
        raise ValueError(
            f"at most {MAX_POINTS} points per annotator, got {int(count[a])} for annotator {a}"
        )


def _check_inputs(
    px: Tensor,
    py: Tensor,
    point_image: Tensor,
    point_annotator: Tensor,
    annotator_image: Tensor,
    annotator_scale: Tensor,
    width: Tensor,
    height: Tensor,
    out_size: tuple[int, int],
    preset: str,
    out: Tensor | None,
) -> None:
    """Every precondition of ``splat_heatmaps``, with a message naming what was received."""
    if preset not in _FACTORS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {', '.join(_FACTORS)}")
    _check_lengths(px=px, py=py, point_image=point_image, point_annotator=point_annotator)
    _check_lengths(annotator_image=annotator_image, annotator_scale=annotator_scale)
    _check_lengths(width=width, height=height)
    _check_dtypes(
        px,
        py,
        point_image=point_image,
        point_annotator=point_annotator,
        annotator_image=annotator_image,
        width=width,
        height=height,
    )
    H, W = out_size
    if H <= 0 or W <= 0:
        raise ValueError(f"`out_size` must be positive, got {out_size}")
    B, A = width.shape[0], annotator_image.shape[0]
    if out is not None and tuple(out.shape) != (B, H, W):
        raise ValueError(f"`out` must have shape {(B, H, W)}, got {tuple(out.shape)}")
    _check_range("px", px, 0.0, 1.0)
    _check_range("py", py, 0.0, 1.0)
    _check_range("width", width, 1, 2**31 - 1)
    _check_range("height", height, 1, 2**31 - 1)
    _check_range("annotator_scale", annotator_scale, 0.0, float("inf"))
    if px.numel() == 0:
        return
    _check_range("point_image", point_image, 0, B - 1)
    _check_range("point_annotator", point_annotator, 0, A - 1)
    _check_range("annotator_image", annotator_image, 0, B - 1)
    _check_sorted("point_image", point_image)
    _check_sorted("point_annotator", point_annotator)
    if bool((annotator_image[point_annotator] != point_image).any()):
        raise ValueError("`annotator_image[point_annotator]` must equal `point_image`")
    _check_point_limit(point_annotator, A)


def splat_heatmaps(
    px: Tensor,
    py: Tensor,
    point_image: Tensor,
    point_annotator: Tensor,
    annotator_image: Tensor,
    annotator_scale: Tensor,
    width: Tensor,
    height: Tensor,
    out_size: tuple[int, int],
    preset: Preset = "default",
    out: Tensor | None = None,
    scratch: Scratch | None = None,
    check: bool = True,
) -> Tensor:
    """Heatmaps of a batch of images of one output size: scaled means of max-normalised maps.

    The heatmap of image ``b`` is ``sum_a scale_a * map_a / max(map_a)`` over its annotators
    ``a`` with at least one point (annotators without points add zero maps, so they enter
    only through ``scale``: ``w_a / sum(w)`` for a weighted mean, ``1 / N`` for a plain one).

    * ``default``: ``map_a`` is the sum of ``exp(-d^2 / (2 sigma^2))`` over the annotator's
      points at the output pixel centres, ``d`` in native pixels, ``sigma`` = 5% of the
      smaller native side; any output size.
    * ``rapidata-2025``: each point is snapped to pixel ``(min(int(x W), W-1),
      min(int(y H), H-1))`` and filtered as by ``scipy.ndimage.gaussian_filter(sigma =
      min(W, H) / 20, truncate=3, mode="reflect")``; native size only.

    Args:
        px, py: ``(P,)`` point coordinates as image fractions in [0, 1], origin top-left.
            Points are grouped by image (ascending) and, within an image, by annotator.
        point_image: ``(P,)`` image index in ``[0, B)``; point_annotator: ``(P,)`` in ``[0, A)``,
            ascending, at most ``MAX_POINTS`` points per annotator.
        annotator_image: ``(A,)`` image of each annotator; annotator_scale: ``(A,)`` its factor.
        width, height: ``(B,)`` native image sizes in pixels.
        out_size: ``(H, W)`` of the output grid.
        preset: the heatmap definition, see above.
        out: optional ``(B, H, W)`` buffer to write into (reused across calls by the caller).
        scratch: optional dict of reusable work buffers (the factor matrices), kept by the
            caller across calls.
        check: verify the preconditions above first (a ``ValueError`` or ``TypeError``
            naming the argument); the engine, whose ingest stage guarantees them, passes
            False.

    Returns:
        ``(B, H, W)`` heatmaps in ``px``'s dtype, values in [0, 1].

    Example:
        One image of 100x100 pixels, one annotator with one click at the centre:

        >>> f = lambda *v: torch.tensor(v, dtype=torch.float64)
        >>> i = lambda *v: torch.tensor(v)
        >>> maps = splat_heatmaps(f(0.5), f(0.5), i(0), i(0), i(0), f(1.0), i(100), i(100), (4, 4))
        >>> maps.shape, float(maps.max())
        (torch.Size([1, 4, 4]), 1.0)
    """
    if check:
        _check_inputs(
            px,
            py,
            point_image,
            point_annotator,
            annotator_image,
            annotator_scale,
            width,
            height,
            out_size,
            preset,
            out,
        )
    B = width.shape[0]
    H, W = out_size
    if out is None:
        out = torch.empty((B, H, W), dtype=px.dtype, device=px.device)
    if px.numel() == 0:
        return out.zero_()
    if preset not in _FACTORS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {', '.join(_FACTORS)}")
    column, n = pack_columns(point_image, B)
    f = _FACTORS[preset](
        Batch(
            px,
            py,
            point_image,
            column,
            n,
            point_annotator,
            annotator_image,
            width,
            height,
            out_size,
            scratch,
        )
    )
    coeff = _normalise(
        f, point_image, column, n, point_annotator, annotator_image, annotator_scale, out_size
    )
    # the coefficients scale the column factors, whose small values are then zeroed
    tiny = torch.finfo(f.gy.dtype).tiny ** 0.5
    gy = torch.nn.functional.threshold_(f.gy.mul_(coeff[:, None, :]), tiny, 0.0)
    return torch.bmm(gy, f.gx, out=out)
