"""Gaussian splatting of click points as separable batched products.

An annotator's map is a sum of <=3 isotropic Gaussians. Each Gaussian factorises into a
column profile (over output rows) times a row profile (over output columns), so a whole
image's heatmap is one product ``Gy @ diag(c) @ Gx`` with ``Gy: (H, n)``, ``Gx: (n, W)``
and one coefficient per point. Images of one output size are batched with ``bmm``; images
with fewer points are padded with zero-coefficient columns. The profiles come from
``kernels.profiles``, each annotator's grid maximum (its normalisation) from
``kernels.peaks``.

Everything here is a pure function of tensors: no I/O, no configuration, results on the
inputs' device. Profiles are computed in the dtype of the coordinates (float32 in the
engine, float64 in tests).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
from torch import Tensor

from .checks import check_inputs
from .peaks import MAX_POINTS, AnnotatorMaps, annotator_peaks, tile_candidates, tile_maxima
from .points import Points
from .profiles import (
    MIN_EXPONENT,
    Scratch,
    discrete_kernel_radius,
    discrete_kernel_sum,
    gaussian_profiles,
    reflected_kernel_profiles,
    scratch_buffer,
    sigma_px,
)

Preset = Literal["default", "rapidata-2025"]

#: Gaussians this many sigma apart or more need no tile search for their maximum (``_normalise``)
SEPARATE = 4.0


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


class Factors(NamedTuple):
    """A batch's separable factors and what the peak search needs of them (per preset).

    ``gy (B, H, n)`` and ``gx (B, n, W)`` are the column and row profiles of every point
    (``n`` = most points in an image), each divided by its own grid peak, whose log is
    ``log_scale (B, n)``; ``sx, sy (A,)`` are each annotator's Gaussian width in
    output-pixel index units (pixel ``k``'s centre is at ``k``); ``mirrors_x``,
    ``mirrors_y`` the centres whose sum is the map, each ``(P,)`` in those units: the
    points first, then, for the published method's reflect boundaries, their mirror
    images. Each centre adds
    ``term_scale * exp(-log_scale_max) * exp(-dx^2 / 2 sx^2 - dy^2 / 2 sy^2)`` to the map
    of ``gy @ gx`` (``log_scale_max``: the largest ``log_scale`` among the annotator's
    points, ``term_scale (B,)`` per image), 0 where ``|dx|`` or ``|dy|`` exceeds ``reach
    (B,)`` (None: no truncation, a smooth map).
    """

    gy: Tensor
    gx: Tensor
    log_scale: Tensor
    sx: Tensor
    sy: Tensor
    mirrors_x: tuple[Tensor, ...]
    mirrors_y: tuple[Tensor, ...]
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
    # each point's Gaussian = exp(log_x + log_y) gy (x) gx
    ones = torch.ones(B, dtype=dt, device=dev)
    return Factors(gy, gx, log_x + log_y, sx, sy, (ux,), (uy,), ones, None)


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
    # gy is the (B, H, n) view of a (B, n, H) tensor: bmm takes it as a transposed operand
    gy = reflected_kernel_profiles(
        my, H, sigma, radius, transposed=True, out=scratch_buffer(scratch, "gy", (B, n, H), px)
    )
    gx = reflected_kernel_profiles(
        mx, W, sigma, radius, out=scratch_buffer(scratch, "gx", (B, n, W), px)
    )
    ux, uy = mx[point_image, column].to(dt), my[point_image, column].to(dt)
    sx = sy = sigma[annotator_image]
    return Factors(
        gy,
        gx,
        torch.zeros((B, n), dtype=dt, device=dev),
        sx,
        sy,
        (ux, -1.0 - ux, 2.0 * W - 1.0 - ux),
        (uy, -1.0 - uy, 2.0 * H - 1.0 - uy),
        norm.square().reciprocal(),
        radius.to(dt),
    )


_FACTORS = {"default": _default_factors, "rapidata-2025": _rapidata_factors}


def _normalise(
    f: Factors, points: Points, column: Tensor, n: int, out_size: tuple[int, int]
) -> Tensor:
    """``(B, n)`` coefficient of each point (at ``column`` of ``n`` in its image): its
    annotator's ``scale / grid maximum`` times the point's scale relative to the
    annotator's largest."""
    point_image, point_annotator = points.point_image, points.point_annotator
    annotator_image, annotator_scale = points.annotator_image, points.annotator_scale
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
    px_, py_ = ix[..., 0], iy[..., 0]  # (A, MAX_POINTS): the points themselves
    # Points interact where their Gaussians are under SEPARATE sigma apart (a smooth map;
    # farther, each has one mode, within a hair of its centre: 4 sigma, a shift of ~0.001
    # sigma) or their truncated kernels overlap: those annotators go to the tile search
    # below; the others climb from their points (smooth maps) or need no search (truncated)
    dx = px_[:, :, None] - px_[:, None, :]
    dy = py_[:, :, None] - py_[:, None, :]
    pair = valid[:, :, None] & valid[:, None, :]
    pair &= ~torch.eye(pair.shape[1], dtype=torch.bool, device=dev)
    if f.reach is None:
        dx, dy = dx / f.sx[:, None, None], dy / f.sy[:, None, None]
        pair &= dx.square_() + dy.square_() < SEPARATE**2
    else:
        span = 2 * f.reach[annotator_image][:, None, None]
        pair &= (dx.abs_() <= span) & (dy.abs_() <= span)
    close = pair.any(dim=(1, 2))
    # relative scale of each point within its annotator's map (1 for the largest): the
    # peak search sees the true map up to one factor, and it joins the coefficients below
    log_pt = f.log_scale[point_image, column]
    log_ann = torch.full((A,), -torch.inf, dtype=dt, device=dev)
    log_ann.scatter_reduce_(0, point_annotator, log_pt, reduce="amax")
    rel_pt = (log_pt - log_ann[point_annotator]).clamp_(min=MIN_EXPONENT).exp_()
    rel = torch.ones((B, n), dtype=dt, device=dev)
    rel[point_image, column] = rel_pt
    sure = (count >= 2) & close
    if f.reach is None:
        # the climb's starts: the annotator's points and, where they interact, their
        # centroid (apart, the centroid is no mode and may sit far from all of them)
        centroid = torch.stack([(c * valid).sum(1) for c in (px_, py_)], 1) / count[:, None]
        start_j = torch.cat([px_, centroid[:, :1]], 1).round().long().clamp_(0, W - 1)
        start_i = torch.cat([py_, centroid[:, 1:]], 1).round().long().clamp_(0, H - 1)
        starts = torch.cat([valid, close[:, None]], 1)
        maps = AnnotatorMaps(f.gy, f.gx, annotator_image, first, count, rel)
        peak = annotator_peaks(maps, start_i, start_j, starts, ~sure)
    else:
        # Truncated kernels: a point's response, its mirror images included, is separable
        # and zero beyond `reach` of the point on either axis. Where an annotator's
        # responses do not overlap, its map's maximum is the largest of theirs, each the
        # product of its profiles' maxima; where they do, that is the tile search's lower
        # bound (the map is at least that response there)
        own = (f.gy.amax(1) * f.gx.amax(2))[point_image, column] * rel_pt
        peak = torch.zeros(A, dtype=dt, device=dev)
        peak.scatter_reduce_(0, point_annotator, own, reduce="amax")
    # A climb reaches a discrete local maximum, and where clicks interact a sum of Gaussians
    # on a grid can have several near one mode (a skewed flat ridge) or, truncated, a
    # higher one across the edge of another click's kernel. There, instead of climbing, a
    # branch and bound over tiles keeps every tile that may hold a pixel above the best
    # value found so far, and every pixel of those is evaluated. Apart (SEPARATE sigma,
    # smooth maps), each bump is a separable Gaussian up to tails below e^-8, whose one
    # discrete local maximum the climb from its own pixel finds.
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
            reach=None if f.reach is None else f.reach[img],
            size=out_size,
            lower=peak[cert],
        )
        a = cert[row]
        maps = AnnotatorMaps(f.gy, f.gx, annotator_image, first, count, rel).rows(a)
        found = tile_maxima(maps, i0, j0, side)
        peak.scatter_reduce_(0, a, found, reduce="amax")
    factor = torch.where(peak > 0, annotator_scale.to(dt) / peak, 0)
    coeff = torch.zeros((B, n), dtype=dt, device=dev)
    coeff[point_image, column] = factor[point_annotator] * rel_pt
    return coeff


#: with ``into``, the product is made this many bytes of maps at a time (the last-level
#: cache of a server CPU holds it between the product and its cast)
INTO_BYTES = 8 << 20


def splat_heatmaps(
    points: Points,
    out_size: tuple[int, int],
    preset: Preset = "default",
    *,
    out: Tensor | None = None,
    scratch: Scratch | None = None,
    check: bool = True,
    into: Tensor | None = None,
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
        points: the batch's clicks, images and annotators (``Points``: shapes and order).
        out_size: ``(H, W)`` of the output grid.
        preset: the heatmap definition, see above.
        out: optional ``(B, H, W)`` buffer to write into (reused across calls by the caller).
        scratch: optional dict of reusable work buffers (the factor matrices), kept by the
            caller across calls.
        check: verify the preconditions above first (a ``ValueError`` or ``TypeError``
            naming the argument); the engine, whose ingest stage guarantees them, passes
            False.
        into: optional ``(B, H, W)`` tensor of another dtype (float16) to cast the maps
            into: the product is then made ``INTO_BYTES`` of maps at a time into a small
            buffer and cast while it is still in the cache, and ``into`` is returned
            (``out`` is not used).

    Returns:
        ``(B, H, W)`` heatmaps in ``px``'s dtype, values in [0, 1].

    Example:
        One image of 100x100 pixels, one annotator with one click at the centre:

        >>> f = lambda *v: torch.tensor(v, dtype=torch.float64)
        >>> i = lambda *v: torch.tensor(v)
        >>> one = Points(f(0.5), f(0.5), i(0), i(0), i(0), f(1.0), i(100), i(100))
        >>> maps = splat_heatmaps(one, (4, 4))
        >>> maps.shape, float(maps.max())
        (torch.Size([1, 4, 4]), 1.0)
    """
    if check:
        check_inputs(points, out_size, preset, tuple(_FACTORS), out)
    px, point_image = points.px, points.point_image
    B = points.width.shape[0]
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
            points.py,
            point_image,
            column,
            n,
            points.point_annotator,
            points.annotator_image,
            points.width,
            points.height,
            out_size,
            scratch,
        )
    )
    coeff = _normalise(f, points, column, n, out_size)
    # No product in the GEMM may be subnormal: on x86 CPUs subnormal arithmetic is many
    # times slower (a 512^2 batch took 2.3x as long with its Gaussian tails). The row
    # factors are at least sqrt(tiny) or 0 (profiles.min_exponent); the column factors,
    # scaled by the coefficients, are zeroed below it here. A dropped factor is below
    # 1.1e-19 (float32), so each point moves any pixel, and any maximum, by less.
    tiny = torch.finfo(f.gy.dtype).tiny ** 0.5
    gy = torch.nn.functional.threshold_(f.gy.mul_(coeff[:, None, :]), tiny, 0.0)
    if into is None:
        return torch.bmm(gy, f.gx, out=out)
    step = max(1, INTO_BYTES // (H * W * gy.element_size()))
    buf = scratch_buffer(scratch, "into", (min(step, B), H, W), gy)
    for k in range(0, B, step):  # a chunk of images, cast while in the cache
        m = min(step, B - k)
        into[k : k + m].copy_(torch.bmm(gy[k : k + m], f.gx[k : k + m], out=buf[:m]))
    return into
