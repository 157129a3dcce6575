"""The splat's preconditions, each with a message naming the argument, what was expected
and what was received. ``splat_heatmaps(check=True)`` runs them before any work."""

from __future__ import annotations

import torch
from torch import Tensor

from .peaks import MAX_POINTS
from .points import Points


def _check_lengths(**tensors: Tensor) -> None:
    """Per-point (or per-annotator, per-image) tensors of one group have one length."""
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if len({s for s in shapes.values()}) > 1 or any(len(s) != 1 for s in shapes.values()):
        got = ", ".join(f"`{k}` {v}" for k, v in shapes.items())
        raise ValueError(
            f"{', '.join(f'`{k}`' for k in shapes)} must be 1-D of one length, got {got}"
        )


def _check_dtypes(px: Tensor, py: Tensor, **ids: Tensor) -> None:
    """Coordinates both float32 or both float64 (16-bit floats hold neither the profiles'
    tails nor an exact maximum; ``profiles.min_exponent``); ids and sizes as integers."""
    if px.dtype not in (torch.float32, torch.float64) or py.dtype != px.dtype:
        raise TypeError(
            f"`px` and `py` must share a dtype, float32 or float64, got {px.dtype} and {py.dtype}"
        )
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


def check_inputs(
    points: Points,
    out_size: tuple[int, int],
    preset: str,
    presets: tuple[str, ...],
    out: Tensor | None,
) -> None:
    """Every precondition of ``splat_heatmaps``, with a message naming what was received."""
    if preset not in presets:
        raise ValueError(f"unknown preset {preset!r}; expected one of {', '.join(presets)}")
    px, py, point_image, point_annotator = (
        points.px,
        points.py,
        points.point_image,
        points.point_annotator,
    )
    annotator_image, annotator_scale = points.annotator_image, points.annotator_scale
    width, height = points.width, points.height
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


__all__ = ["check_inputs"]
