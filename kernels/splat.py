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

from typing import Literal

import torch
from torch import Tensor

Preset = Literal["default", "rapidata-2025"]

#: exp() arguments are clamped here: torch's float32 exp is ~13x slower below about -87,
#: and exp(-80) ~ 1.8e-35 is already far below float16 resolution.
MIN_EXPONENT = -80.0

# Hill-climb neighbourhood; the centre comes first so that ties keep the current pixel.
_DI = (0, -1, -1, -1, 0, 0, 1, 1, 1)
_DJ = (0, -1, 0, 1, -1, 1, -1, 0, 1)


def sigma_px(width: Tensor, height: Tensor) -> Tensor:
    """Gaussian standard deviation in native pixels: 5% of the image's smaller side."""
    return 0.05 * torch.minimum(width, height)


def gaussian_profiles(coord: Tensor, extent: Tensor, size: int, sigma: Tensor) -> Tensor:
    """Continuous Gaussian of each point along one axis, sampled at output pixel centres.

    Args:
        coord: ``(B, n)`` point coordinates as fractions of the image side, in [0, 1].
        extent: ``(B,)`` native length of that side in pixels.
        size: number of output pixels along the axis.
        sigma: ``(B,)`` standard deviation in native pixels.

    Returns:
        ``(B, n, size)``: ``exp(-d^2 / (2 sigma^2))`` where ``d`` is the native-pixel distance
        from the point to the centre ``(k + 0.5) / size`` of output pixel ``k``.
    """
    dt, dev = coord.dtype, coord.device
    centres = (torch.arange(size, dtype=dt, device=dev) + 0.5) / size
    d = (centres[None, None, :] - coord[:, :, None]) * extent.to(dt)[:, None, None]
    inv = (-0.5 / sigma.to(dt) ** 2)[:, None, None]
    return d.square_().mul_(inv).clamp_(min=MIN_EXPONENT).exp_()


def discrete_kernel_radius(sigma: Tensor, truncate: float = 3.0) -> Tensor:
    """scipy.ndimage's kernel radius ``int(truncate * sigma + 0.5)`` (long tensor)."""
    return (truncate * sigma + 0.5).floor().long()


def reflected_kernel_profiles(pixel: Tensor, size: int, sigma: Tensor, radius: Tensor) -> Tensor:
    """Response of a 1-D discrete Gaussian filter to a unit impulse, with reflect boundaries.

    Reproduces ``scipy.ndimage.gaussian_filter1d(e_m, sigma, truncate=3, mode="reflect")``
    for the impulse ``e_m`` at each pixel ``m``: a kernel of radius ``r`` normalised to sum
    one, with the signal mirrored about the edges (``d c b a | a b c d | d c b a``).

    Args:
        pixel: ``(B, n)`` integer impulse positions in ``[0, size)``.
        size: signal length in pixels.
        sigma: ``(B,)`` kernel standard deviation in pixels (float dtype sets the result's).
        radius: ``(B,)`` kernel radius in pixels; must be ``< size`` (one reflection a side).

    Returns:
        ``(B, n, size)`` filter responses.
    """
    dt, dev = sigma.dtype, sigma.device
    if bool((radius >= size).any()):
        raise ValueError(f"kernel radius must be below the signal length {size}, got {radius}")
    r = radius.to(dt)[:, None, None]
    inv = (-0.5 / sigma**2)[:, None, None]
    taps = torch.arange(-int(radius.max()), int(radius.max()) + 1, device=dev, dtype=dt)
    norm = torch.where(taps[None, None, :].abs() <= r, (taps.square() * inv).exp(), 0).sum(-1)
    i = torch.arange(size, device=dev, dtype=dt)[None, None, :]
    m = pixel.to(dt)[:, :, None]
    out = torch.zeros(pixel.shape + (size,), dtype=dt, device=dev)
    # the impulse itself, its mirror below 0 (at -1-m) and its mirror above size-1 (2*size-1-m)
    for src in (m, -1.0 - m, 2.0 * size - 1.0 - m):
        t = src - i
        out += torch.where(t.abs() <= r, (t.square() * inv).exp(), 0)
    return out / norm[:, :, None]


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


def mean_shift_modes(
    cx: Tensor,
    cy: Tensor,
    valid: Tensor,
    sx: Tensor,
    sy: Tensor,
    start_x: Tensor,
    start_y: Tensor,
    radius: Tensor | None = None,
    iters: int = 60,
) -> tuple[Tensor, Tensor]:
    """Local maxima of each annotator's sum of Gaussians, by mean-shift from given starts.

    Mean-shift (``x <- sum g_k x_k / sum g_k``) climbs the continuous sum without leaving
    the basin it starts in; started from each point and from the centroid it reaches every
    mode of a sum of <=3 Gaussians of one width.

    Args:
        cx, cy: ``(A, K)`` Gaussian centres in output-pixel index units.
        valid: ``(A, K)`` which centres exist.
        sx, sy: ``(A,)`` standard deviations along x and y, in the same units.
        start_x, start_y: ``(A, S)`` start positions.
        radius: optional ``(A,)`` truncation radius (per axis), as for a discrete kernel.

    Returns:
        ``(x, y)``, each ``(A, S)``: where each start converged.
    """
    vf = valid.to(cx.dtype)[:, None, :]
    ax = (-0.5 / sx.square())[:, None, None]
    ay = (-0.5 / sy.square())[:, None, None]
    r = None if radius is None else radius.to(cx.dtype)[:, None, None]
    x, y = start_x, start_y
    for _ in range(iters):
        dx = cx[:, None, :] - x[:, :, None]  # (A, S, K)
        dy = cy[:, None, :] - y[:, :, None]
        g = (dx.square() * ax + dy.square() * ay).clamp_(min=MIN_EXPONENT).exp_() * vf
        if r is not None:
            g = g * ((dx.abs() <= r) & (dy.abs() <= r))
        total = g.sum(-1).clamp_(min=torch.finfo(cx.dtype).tiny)
        x = (g * cx[:, None, :]).sum(-1) / total
        y = (g * cy[:, None, :]).sum(-1) / total
    return x, y


def annotator_peaks(
    gy: Tensor,
    gx: Tensor,
    batch: Tensor,
    first: Tensor,
    count: Tensor,
    start_i: Tensor,
    start_j: Tensor,
) -> Tensor:
    """Maximum over the output grid of each annotator's map, without forming the map.

    The map of annotator ``a`` is ``sum_t gy[b, :, first + t] (x) gx[b, first + t, :]`` for
    ``t < count``. From each start pixel (the pixels nearest the continuous modes, see
    ``mean_shift_modes``) a vectorised hill climb over the 8 neighbours ends at a discrete
    local maximum; the largest value reached is returned: the grid maximum (tests compare
    it with the full map's ``max``).

    Args:
        gy: ``(B, H, n)`` column profiles; gx: ``(B, n, W)`` row profiles.
        batch: ``(A,)`` image index of each annotator; first: ``(A,)`` its first column;
        count: ``(A,)`` its number of points (1..3).
        start_i, start_j: ``(A, S)`` start rows and columns.

    Returns:
        ``(A,)`` grid maxima, in ``gy``'s dtype.
    """
    _, H, n = gy.shape
    W = gx.shape[2]
    dev = gy.device
    t = torch.arange(3, device=dev)
    valid = (t[None, :] < count[:, None]).to(gy.dtype)  # (A, 3)
    cols = (first[:, None] + t[None, :]).clamp_(max=n - 1)  # (A, 3)
    b4 = batch[:, None, None, None]
    c4 = cols[:, None, None, :]
    v4 = valid[:, None, None, :]

    def value(i: Tensor, j: Tensor) -> Tensor:  # (A, S, K) -> (A, S, K)
        return (gy[b4, i[..., None], c4] * gx[b4, c4, j[..., None]] * v4).sum(-1)

    di = torch.tensor(_DI, device=dev)
    dj = torch.tensor(_DJ, device=dev)
    ci, cj = start_i, start_j
    for _ in range(H + W):
        ni = (ci[..., None] + di).clamp_(0, H - 1)
        nj = (cj[..., None] + dj).clamp_(0, W - 1)
        best = value(ni, nj).argmax(-1, keepdim=True)
        ni, nj = ni.gather(-1, best).squeeze(-1), nj.gather(-1, best).squeeze(-1)
        if bool((ni == ci).all()) and bool((nj == cj).all()):
            break
        ci, cj = ni, nj
    return value(ci[..., None], cj[..., None]).squeeze(-1).amax(-1)


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
        point_image: ``(P,)`` image index in ``[0, B)``; point_annotator: ``(P,)`` in ``[0, A)``.
        annotator_image: ``(A,)`` image of each annotator; annotator_scale: ``(A,)`` its factor.
        width, height: ``(B,)`` native image sizes in pixels.
        out_size: ``(H, W)`` of the output grid.
        preset: the heatmap definition, see above.
        out: optional ``(B, H, W)`` buffer to write into (reused across calls by the caller).

    Returns:
        ``(B, H, W)`` heatmaps in ``px``'s dtype, values in [0, 1].
    """
    B = width.shape[0]
    H, W = out_size
    dt, dev = px.dtype, px.device
    if out is None:
        out = torch.empty((B, H, W), dtype=dt, device=dev)
    if px.numel() == 0:
        return out.zero_()
    column, n = pack_columns(point_image, B)
    wf, hf = width.to(dt), height.to(dt)
    if preset == "default":
        cx = torch.ones((B, n), dtype=dt, device=dev)
        cy = torch.ones((B, n), dtype=dt, device=dev)
        cx[point_image, column] = px
        cy[point_image, column] = py
        sigma = sigma_px(wf, hf)
        gy = gaussian_profiles(cy, hf, H, sigma).transpose(1, 2)  # (B, H, n)
        gx = gaussian_profiles(cx, wf, W, sigma)  # (B, n, W)
    elif preset == "rapidata-2025":
        if bool(((width != W) | (height != H)).any()):
            raise ValueError("preset 'rapidata-2025' is defined at native resolution only")
        mx = torch.zeros((B, n), dtype=torch.long, device=dev)
        my = torch.zeros((B, n), dtype=torch.long, device=dev)
        mx[point_image, column] = (px * W).long().clamp_(max=W - 1)
        my[point_image, column] = (py * H).long().clamp_(max=H - 1)
        sigma = torch.minimum(wf, hf) / 20
        radius = discrete_kernel_radius(sigma)
        gy = reflected_kernel_profiles(my, H, sigma, radius).transpose(1, 2)
        gx = reflected_kernel_profiles(mx, W, sigma, radius)
    else:
        raise ValueError(f"unknown preset {preset!r}; expected 'default' or 'rapidata-2025'")

    A = annotator_image.shape[0]
    count = torch.bincount(point_annotator, minlength=A)
    first = torch.full((A,), n, dtype=torch.long, device=dev)
    first.scatter_reduce_(0, point_annotator, column, reduce="amin")
    slot = column - first[point_annotator]
    # centres in output-pixel index units (pixel k's centre is at k); the published method
    # adds each impulse's mirror images under reflect boundaries (reflected_kernel_profiles)
    if preset == "default":
        ux, uy = px * W - 0.5, py * H - 0.5
        s_img = sigma[annotator_image]
        sx, sy = s_img * W / wf[annotator_image], s_img * H / hf[annotator_image]
        images_x, images_y, rad = (ux,), (uy,), None
    else:
        ux, uy = mx[point_image, column].to(dt), my[point_image, column].to(dt)
        sx = sy = sigma[annotator_image]
        rad = radius[annotator_image]
        images_x = (ux, -1.0 - ux, 2.0 * W - 1.0 - ux)
        images_y = (uy, -1.0 - uy, 2.0 * H - 1.0 - uy)
    pairs = [(gx_, gy_) for gx_ in images_x for gy_ in images_y]
    mcx = torch.zeros((A, 3 * len(pairs)), dtype=dt, device=dev)
    mcy = torch.zeros_like(mcx)
    valid = torch.zeros(mcx.shape, dtype=torch.bool, device=dev)
    for q, (img_x, img_y) in enumerate(pairs):
        mcx[point_annotator, 3 * q + slot] = img_x
        mcy[point_annotator, 3 * q + slot] = img_y
        valid[point_annotator, 3 * q + slot] = True
    # starts: the annotator's points (missing slots repeat the first) and their centroid
    lead = slot == 0
    st_x = torch.empty((A, 4), dtype=dt, device=dev)
    st_y = torch.empty((A, 4), dtype=dt, device=dev)
    st_x[point_annotator[lead]] = ux[lead, None]
    st_y[point_annotator[lead]] = uy[lead, None]
    st_x[point_annotator, slot] = ux
    st_y[point_annotator, slot] = uy
    cnt = count.to(dt)
    st_x[:, 3] = torch.zeros(A, dtype=dt, device=dev).index_add_(0, point_annotator, ux) / cnt
    st_y[:, 3] = torch.zeros(A, dtype=dt, device=dev).index_add_(0, point_annotator, uy) / cnt
    mode_x, mode_y = mean_shift_modes(mcx, mcy, valid, sx, sy, st_x, st_y, rad)
    start_j = mode_x.round().long().clamp_(0, W - 1)
    start_i = mode_y.round().long().clamp_(0, H - 1)
    peak = annotator_peaks(gy, gx, annotator_image, first, count, start_i, start_j)

    factor = torch.where(peak > 0, annotator_scale.to(dt) / peak, 0)
    coeff = torch.zeros((B, n), dtype=dt, device=dev)
    coeff[point_image, column] = factor[point_annotator]
    return torch.bmm(gy * coeff[:, None, :], gx, out=out)
