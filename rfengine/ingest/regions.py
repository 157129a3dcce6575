"""Drawn regions in the responses format: their types, the geometry checks (vectorised
over every polygon of a chunk) and the mask encoding.

A polygon is refused when its area is zero (an empty region: collinear or repeated
vertices) or when it crosses itself: two of its edges that do not share a vertex meet
(touching counts, so that a figure-eight pinched at one point is refused too). The even-odd
rule would give such polygons a meaning, but rarely the one the annotator drew; a region
that really has a hole or two parts is sent as two regions, or as a mask.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rfengine.errors import shorten

#: edge pairs tested at once (bounds the memory of the self-intersection test)
PAIR_BLOCK = 1 << 20


def polygon_areas(vertices: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """``(R,)`` unsigned areas (shoelace) of the polygons ``vertices[offsets[r]:offsets[r+1]]``,
    in squared image fractions."""
    n = len(offsets) - 1
    if n <= 0:
        return np.zeros(0)
    counts = np.diff(offsets)
    region = np.repeat(np.arange(n), counts)
    nxt = np.arange(len(vertices)) + 1
    ends = offsets[1:][counts > 0] - 1
    nxt[ends] = offsets[:-1][counts > 0]
    x, y = vertices[:, 0], vertices[:, 1]
    cross = x * y[nxt] - x[nxt] * y
    return np.abs(np.bincount(region, cross, minlength=n)) / 2


def _orient(ax, ay, bx, by, cx, cy):  # type: ignore[no-untyped-def]
    """Sign of the turn a -> b -> c (-1, 0, 1), in float64."""
    return np.sign((bx - ax) * (cy - ay) - (by - ay) * (cx - ax))


def _on_segment(ax, ay, bx, by, cx, cy):  # type: ignore[no-untyped-def]
    """Whether c (collinear with a, b) lies within the segment's bounding box."""
    return (
        (np.minimum(ax, bx) <= cx)
        & (cx <= np.maximum(ax, bx))
        & (np.minimum(ay, by) <= cy)
        & (cy <= np.maximum(ay, by))
    )


def first_crossing(vertices: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """``(R, 2)`` int64: per polygon, the first pair of non-adjacent edges that meet (edge
    ``k`` joins vertex ``k`` to ``k + 1``), or ``(-1, -1)`` when it is simple.

    Polygons are grouped by vertex count (a loop over the distinct counts, not over
    polygons); each group's edge pairs are tested together, ``PAIR_BLOCK`` at a time.
    """
    n = len(offsets) - 1
    out = np.full((max(n, 0), 2), -1, dtype=np.int64)
    counts = np.diff(offsets)
    for v in np.unique(counts[counts >= 4]):  # a triangle's edges are all adjacent
        members = np.flatnonzero(counts == v)
        i, j = np.triu_indices(int(v), 2)
        keep = ~((i == 0) & (j == v - 1))
        i, j = i[keep], j[keep]
        step = max(1, PAIR_BLOCK // len(i))
        for s in range(0, len(members), step):
            grp = members[s : s + step]
            pts = vertices[offsets[grp][:, None] + np.arange(v)]  # (G, v, 2)
            nxt = np.roll(pts, -1, axis=1)
            ax, ay, bx, by = pts[:, i, 0], pts[:, i, 1], nxt[:, i, 0], nxt[:, i, 1]
            cx, cy, dx, dy = pts[:, j, 0], pts[:, j, 1], nxt[:, j, 0], nxt[:, j, 1]
            o1 = _orient(ax, ay, bx, by, cx, cy)
            o2 = _orient(ax, ay, bx, by, dx, dy)
            o3 = _orient(cx, cy, dx, dy, ax, ay)
            o4 = _orient(cx, cy, dx, dy, bx, by)
            meet = (o1 * o2 < 0) & (o3 * o4 < 0)
            meet |= (o1 == 0) & _on_segment(ax, ay, bx, by, cx, cy)
            meet |= (o2 == 0) & _on_segment(ax, ay, bx, by, dx, dy)
            meet |= (o3 == 0) & _on_segment(cx, cy, dx, dy, ax, ay)
            meet |= (o4 == 0) & _on_segment(cx, cy, dx, dy, bx, by)
            hit = meet.any(axis=1)
            first = meet.argmax(axis=1)
            out[grp[hit], 0] = i[first[hit]]
            out[grp[hit], 1] = j[first[hit]]
    return out


def mask_counts(mask: np.ndarray) -> list[int]:
    """A boolean ``(h, w)`` mask as the responses format's run lengths: row-major,
    alternating unmarked and marked, unmarked first (0 when the first pixel is marked).

    >>> mask_counts(np.array([[0, 1, 1], [1, 0, 0]], dtype=bool))
    [1, 3, 2]
    """
    flat = np.asarray(mask, dtype=bool).ravel()
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    return ([0] + runs) if flat.size and flat[0] else runs


_INT64 = 2**63


def _is_int64(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and -_INT64 <= v < _INT64


def region_type_error(v: Any) -> str:
    """Why a parsed ``regions`` value does not have the responses schema's types ('' when
    it does; the values are checked by the validation)."""
    if v is None:
        return ""
    if not isinstance(v, list) or not all(isinstance(r, dict) for r in v):
        return f"expected a list of region objects, got {shorten(v)}"
    for q, r in enumerate(v):
        poly, mask = r.get("polygon"), r.get("mask")
        if poly is not None and not (
            isinstance(poly, list)
            and all(
                isinstance(p, list)
                and all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in p)
                for p in poly
            )
        ):
            return f"region {q}: polygon must be a list of [x, y] number pairs"
        if mask is not None and not (
            isinstance(mask, dict)
            and all(
                isinstance(mask.get(k), list) and all(_is_int64(c) for c in mask[k])
                for k in ("size", "counts")
            )
        ):
            return f"region {q}: mask must be {{'size': [height, width], 'counts': [integers]}}"
    return ""


__all__ = ["first_crossing", "mask_counts", "polygon_areas", "region_type_error"]
