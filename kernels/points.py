"""The input of the splat: a batch's clicks, in one small typed record."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass(frozen=True)
class Points:
    """A batch's clicks and the images and annotators they belong to.

    Attributes:
        px, py: ``(P,)`` point coordinates as image fractions in [0, 1], origin top-left,
            float32 or float64 (the computation's dtype). Points are grouped by image
            (ascending) and, within an image, by annotator.
        point_image: ``(P,)`` image index in ``[0, B)``; point_annotator: ``(P,)`` in
            ``[0, A)``, ascending, at most ``MAX_POINTS`` points per annotator.
        annotator_image: ``(A,)`` image of each annotator; annotator_scale: ``(A,)`` its
            factor in its image's heatmap (``w_a / sum(w)`` for a weighted mean).
        width, height: ``(B,)`` native image sizes in pixels.
    """

    px: Tensor
    py: Tensor
    point_image: Tensor
    point_annotator: Tensor
    annotator_image: Tensor
    annotator_scale: Tensor
    width: Tensor
    height: Tensor


__all__ = ["Points"]
