"""Gaussian profiles along one axis: the separable factors of a heatmap.

A click's Gaussian over the output grid is its column profile (over output rows) times its
row profile (over output columns). ``gaussian_profiles`` samples the continuous Gaussian of
preset ``default`` at pixel centres; ``reflected_kernel_profiles`` reproduces the published
method's discrete, truncated, edge-reflected filter (preset ``rapidata-2025``). Pure
functions of tensors, in the coordinates' dtype, on their device.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

#: exp() arguments are clamped here: torch's float32 exp is ~13x slower below about -87,
#: and exp(-80) ~ 1.8e-35 is already far below float16 resolution.
MIN_EXPONENT = -80.0


def min_exponent(dtype: torch.dtype) -> float:
    """The smallest exponent a profile keeps: ``MIN_EXPONENT``, or where ``exp`` of that is
    below the square root of ``dtype``'s smallest normal number (float32: 1.1e-19), just
    above that root, so that no product of two profile values in the splat's GEMM is
    subnormal (x86 CPUs compute those many times slower; flush-to-zero modes do not reach
    the BLAS threads). float32: -42.7, an error below 3e-19 of a profile's peak."""
    return max(MIN_EXPONENT, 0.5 * math.log(torch.finfo(dtype).tiny) + 1.0)


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
    exponent (``min_exponent``) relative to the profile's own peak keeps every value exact to
    ``exp(min_exponent)`` of the peak, even where a click is far from every pixel centre.

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
    # distances in units of sqrt(2) sigma, so that the exponent is minus their square
    unit = (extent.to(dt) / sigma.to(dt) * 0.5**0.5)[:, None]  # (B, 1) per fraction
    centres = (torch.arange(size, dtype=dt, device=dev) + 0.5) / size * unit  # (B, size)
    at = coord * unit  # (B, n)
    # the grid peak is at the pixel centre nearest the point: its exponent in closed form,
    # from the same products as the grid's (so that the profile is exactly 1 there)
    k = (coord * size).floor().clamp_(0, size - 1).long()
    log_peak = centres.gather(1, k).sub_(at).square_().neg_()
    if transposed:
        e = torch.sub(centres[:, :, None], at[:, None, :], out=out)
        e = torch.addcmul(log_peak.neg()[:, None, :], e, e, value=-1, out=e)
    else:
        e = torch.sub(centres[:, None, :], at[:, :, None], out=out)
        e = torch.addcmul(log_peak.neg()[:, :, None], e, e, value=-1, out=e)
    return e.clamp_(min=min_exponent(dt)).exp_(), log_peak


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
) -> Tensor:
    """Response of a 1-D discrete Gaussian filter to a unit impulse, with reflect boundaries.

    Reproduces ``scipy.ndimage.gaussian_filter1d(e_m, sigma, truncate=3, mode="reflect")``
    for the impulse ``e_m`` at each pixel ``m``: a kernel of radius ``r`` normalised to sum
    one, with the signal mirrored about the edges (``d c b a | a b c d | d c b a``), i.e.
    the kernel centred on ``m`` plus, where they reach the signal, on its mirror images
    ``-1 - m`` and ``2 size - 1 - m``. Each image's kernel is tabulated once; every
    response is then a window of that table, gathered whole (the taps are integers apart).

    Args:
        pixel: ``(B, n)`` integer impulse positions in ``[0, size)``.
        size: signal length in pixels.
        sigma: ``(B,)`` kernel standard deviation in pixels (float dtype sets the result's).
        radius: ``(B,)`` kernel radius in pixels; must be ``< size`` (one reflection a side).
        transposed: return the ``(B, size, n)`` view of the result (the left factor of a
            product; its storage stays ``(B, n, size)``).
        out: optional contiguous ``(B, n, size)`` tensor to write into.

    Returns:
        ``(B, n, size)`` filter responses (``(B, size, n)`` if ``transposed``).
    """
    dt, dev = sigma.dtype, sigma.device
    if bool((radius >= size).any()):
        raise ValueError(f"kernel radius must be below the signal length {size}, got {radius}")
    B, n = pixel.shape
    # table[b, P + t] = K_b(t) / sum(K_b) for |t| <= radius, else 0, t in [-P, 2 size - 1),
    # P = 2 size - 1; rows 3 size apart in one flat buffer (each row's t > size are the
    # next row's first values, 0 in both: |t| >= size > radius there), so that the window
    # of length size from q of every image is one row of one strided view
    P = 2 * size - 1
    t = torch.arange(-P, size + 1, device=dev, dtype=dt)  # (3 size,)
    taps = (t.square() * (-0.5 / sigma.square())[:, None]).clamp_(min=min_exponent(dt))
    taps = taps.exp_().masked_fill_(t.abs() > radius[:, None], 0)
    taps /= taps.sum(1, keepdim=True)  # every tap is in the row: radius < size
    flat = torch.zeros(B * 3 * size + size - 1, dtype=dt, device=dev)
    flat[: B * 3 * size].view(B, 3 * size).copy_(taps)
    windows = flat.as_strided((B * 3 * size, size), (1, 1))
    m = pixel.to(torch.long)
    row = (torch.arange(B, device=dev) * (3 * size))[:, None]
    out = torch.empty((B, n, size), dtype=dt, device=dev) if out is None else out
    flat_out = out.view(B * n, size)
    # the kernel centred on m is the window from P - m; a mirror image c from P - c
    torch.index_select(windows, 0, (row + P - m).flatten(), out=flat_out)
    m = m.flatten()
    base = row.expand(B, n).flatten()
    for reaches, start in (
        (m < radius.repeat_interleave(n), P + 1 + m),  # -1 - m, below 0
        (m > size - 1 - radius.repeat_interleave(n), m),  # 2 size - 1 - m, above size - 1
    ):
        k = reaches.nonzero().squeeze(1)
        flat_out.index_add_(0, k, windows.index_select(0, base[k] + start[k]))
    return out.transpose(1, 2) if transposed else out
