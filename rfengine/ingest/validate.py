"""Validating parsed response chunks, vectorised over each chunk: only the rows that fail
are visited one by one, to word their reasons (file, line or row, field).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rfengine.errors import Rejection
from rfengine.ingest.columns import REQUIRED, SCHEMA, filled
from rfengine.ingest.images import Images, image_index
from rfengine.ingest.parse import Parsed
from rfengine.ingest.regions import first_crossing, polygon_areas
from rfengine.schema import (
    MAX_POINTS,
    MAX_REGIONS,
    MAX_VERTICES,
    MAX_WEIGHT,
    MIN_WEIGHT,
    TASKS,
    Task,
)


class _Checks:
    """Accumulates the first failing check of each row."""

    def __init__(self, parsed: Parsed, path: Path, file_index: int):
        self.p, self.path, self.fi = parsed, path, file_index
        self.bad = np.zeros(parsed.table.num_rows, dtype=bool)
        self.rejected: list[Rejection] = []

    def __call__(self, mask: np.ndarray, fld: str, reason: Any) -> None:
        new = np.asarray(mask, dtype=bool) & ~self.bad
        for i in np.flatnonzero(new):
            loc = self.p.locs[i]
            row = self.p.table.slice(int(i), 1).to_pylist()[0]
            if row["regions"] is None:  # shown where given (as before the field existed)
                del row["regions"]
            why = reason(int(i)) if callable(reason) else reason
            self.rejected.append(
                Rejection(str(self.path), self.p.where(loc), fld, why, row, (self.fi, int(loc)))
            )
        self.bad |= new


def _row_any(flags: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
    """Per-row OR of per-element flags, elements mapped to rows by ``rows``."""
    return np.bincount(rows[flags], minlength=n).astype(bool) if flags.size else np.zeros(n, bool)


def validate_chunk(
    parsed: Parsed, path: Path, fi: int, images: Images
) -> tuple[np.ndarray, list[Rejection], np.ndarray, np.ndarray]:
    """Check every row; returns (rows kept, rejections, image row, task code) per row."""
    t = {name: parsed.table[name].combine_chunks() for name in SCHEMA.names}
    n = parsed.table.num_rows
    check = _Checks(parsed, path, fi)
    for f in REQUIRED:
        check(filled(pc.is_null(t[f]), True), f, "missing")
    task_s = t["task"]
    task = filled(pc.index_in(task_s, value_set=pa.array(TASKS)), -1)
    check(
        task < 0,
        "task",
        lambda i: f"unknown task {task_s[i].as_py()!r}; expected one of {', '.join(TASKS)}",
    )
    for f in REQUIRED:  # an empty string is no value either
        check(filled(pc.equal(t[f], ""), False), f, "missing (empty)")
    weight = filled(t["weight"], 1.0)
    check(
        ~np.isfinite(weight) | (weight < 0) | (weight > MAX_WEIGHT),
        "weight",
        lambda i: f"weight must be a finite number in [0, {MAX_WEIGHT:g}], got {weight[i]}",
    )
    check(
        (weight > 0) & (weight < MIN_WEIGHT),
        "weight",
        lambda i: f"weight must be 0 or at least {MIN_WEIGHT:g}, got {weight[i]:g}",
    )
    img = image_index(images, t["image_id"])
    check(
        img < 0,
        "image_id",
        lambda i: f"unknown image_id {t['image_id'][i].as_py()!r} (not in the images table)",
    )

    is_rating = np.isin(task, [t for t in Task if t.is_rating])
    is_points = np.isin(task, [t for t in Task if t.is_points])
    is_words = task == Task.WORDS
    rating = filled(t["rating"], np.nan)
    has_rating = ~np.isnan(rating)
    task_name = lambda i: TASKS[task[i]]  # noqa: E731
    check(
        is_rating & ~has_rating,
        "rating",
        lambda i: f"missing (task {task_name(i)!r} needs a rating)",
    )
    bad_r = is_rating & has_rating & ((rating != np.round(rating)) | (rating < 1) | (rating > 5))
    check(bad_r, "rating", lambda i: f"rating must be an integer 1-5, got {rating[i]:g}")
    check(~is_rating & has_rating, "rating", lambda i: f"not used by task {task_name(i)!r}")

    pts = t["points"]
    n_pts = filled(pc.list_value_length(pts), -1)
    check(
        is_points & (n_pts < 0),
        "points",
        lambda i: f"missing (task {task_name(i)!r} needs a list of points)",
    )
    check(
        is_points & (n_pts > MAX_POINTS),
        "points",
        lambda i: f"at most {MAX_POINTS} points, got {n_pts[i]}",
    )
    check(~is_points & (n_pts > 0), "points", lambda i: f"not used by task {task_name(i)!r}")
    inner = pts.flatten()
    inner_row = filled(pc.list_parent_indices(pts), 0)
    pair_len = filled(pc.list_value_length(inner), -1)
    check(
        _row_any(pair_len != 2, inner_row, n),
        "points",
        lambda i: f"each point must be an [x, y] pair, got {pts[i].as_py()}",
    )
    coords = filled(inner.flatten(), np.nan)
    coord_row = (
        inner_row[filled(pc.list_parent_indices(inner), 0)] if coords.size else inner_row[:0]
    )
    out_of_range = ~((coords >= 0) & (coords <= 1))
    check(
        _row_any(out_of_range, coord_row, n),
        "points",
        lambda i: f"point outside [0, 1] (image fractions, origin top-left): {pts[i].as_py()}",
    )

    sel = t["selected"]
    n_sel = filled(pc.list_value_length(sel), -1)
    check(is_words & (n_sel < 0), "selected", "missing (task 'words' needs a list of word indices)")
    check(~is_words & (n_sel > 0), "selected", lambda i: f"not used by task {task_name(i)!r}")
    idx = filled(sel.flatten(), -1)
    idx_row = filled(pc.list_parent_indices(sel), 0)
    limit = images.n_tokens[np.maximum(img, 0)]
    oob = (idx < 0) | (idx > limit[idx_row]) if idx.size else np.zeros(0, bool)
    check(
        _row_any(oob, idx_row, n),
        "selected",
        lambda i: (
            f"word index out of range 0..{limit[i]} in {sel[i].as_py()} "
            f"(the prompt has {limit[i]} words; {limit[i]} is [No_Mistake])"
        ),
    )
    no_mistake = idx == limit[idx_row] if idx.size else np.zeros(0, bool)
    check(
        _row_any(no_mistake, idx_row, n) & (n_sel > 1),
        "selected",
        lambda i: f"[No_Mistake] ({limit[i]}) selected together with words in {sel[i].as_py()}",
    )
    if idx.size:
        order = np.lexsort((idx, idx_row))
        dup = np.zeros(idx.size, bool)
        dup[order[1:]] = (idx_row[order[1:]] == idx_row[order[:-1]]) & (
            idx[order[1:]] == idx[order[:-1]]
        )
        check(
            _row_any(dup, idx_row, n),
            "selected",
            lambda i: f"a word index is selected twice in {sel[i].as_py()}",
        )
    _check_regions(check, t["regions"], task, img, images)
    return ~check.bad, check.rejected, img, task


def _check_regions(
    check: _Checks, regs: pa.ListArray, task: np.ndarray, img: np.ndarray, images: Images
) -> None:
    """The ``regions`` field: only on regions tasks, at most ``MAX_REGIONS``, each a polygon
    (3..``MAX_VERTICES`` vertices in [0, 1], non-zero area, not crossing itself) or a mask at
    the image's size (run lengths >= 0 adding up to its pixels, some marked)."""
    n = len(task)
    is_reg = np.isin(task, [t for t in Task if t.is_regions])
    name = lambda i: TASKS[task[i]]  # noqa: E731
    n_reg = filled(pc.list_value_length(regs), -1)
    check(
        is_reg & (n_reg < 0),
        "regions",
        lambda i: f"missing (task {name(i)!r} needs a list of regions)",
    )
    check(~is_reg & (n_reg > 0), "regions", lambda i: f"not used by task {name(i)!r}")
    check(
        n_reg > MAX_REGIONS, "regions", lambda i: f"at most {MAX_REGIONS} regions, got {n_reg[i]}"
    )
    if not (n_reg > 0).any():
        return
    flat = pc.list_flatten(regs)
    row = filled(pc.list_parent_indices(regs), 0)
    local = np.arange(len(flat)) - np.repeat(
        np.cumsum(np.maximum(n_reg, 0)) - np.maximum(n_reg, 0), np.maximum(n_reg, 0)
    )
    poly = pc.struct_field(flat, "polygon")
    mask = pc.struct_field(flat, "mask")
    has_p, has_m = ~filled(pc.is_null(poly), True), ~filled(pc.is_null(mask), True)

    def bad(flags: np.ndarray, why: str) -> None:
        """Reject the rows with a flagged region, naming the first one."""

        def reason(i: int) -> str:
            q = int(local[np.flatnonzero(flags & (row == i))[0]])
            return f"region {q}: {why}"

        check(_row_any(flags, row, n), "regions", reason)

    bad(~has_p & ~has_m, "needs a 'polygon' or a 'mask'")
    bad(has_p & has_m, "is a polygon or a mask, not both")
    # polygons
    nv = filled(pc.list_value_length(poly), 0)
    bad(has_p & ((nv < 3) | (nv > MAX_VERTICES)), f"a polygon has 3 to {MAX_VERTICES} vertices")
    verts = pc.list_flatten(poly)
    v_reg = filled(pc.list_parent_indices(poly), 0)
    pair = filled(pc.list_value_length(verts), -1)
    bad(_row_any(pair != 2, v_reg, len(flat)), "each vertex must be an [x, y] pair")
    ok_p = has_p & (nv >= 3) & (nv <= MAX_VERTICES) & ~_row_any(pair != 2, v_reg, len(flat))
    xy = np.full((len(verts), 2), np.nan)
    good_v = pair == 2
    if good_v.any():
        xy[good_v] = filled(pc.list_flatten(verts.filter(pa.array(good_v))), np.nan).reshape(-1, 2)
    outside = ~((xy >= 0) & (xy <= 1)).all(axis=1)
    bad(
        _row_any(outside, v_reg, len(flat)),
        "vertex outside [0, 1] (image fractions, origin top-left)",
    )
    ok_p &= ~_row_any(outside, v_reg, len(flat))
    sel = np.flatnonzero(ok_p)
    if sel.size:
        keep_v = ok_p[v_reg]
        offs = np.concatenate([[0], np.cumsum(nv[sel])]).astype(np.int64)
        cross = np.full((len(flat), 2), -1)
        cross[sel] = first_crossing(xy[keep_v], offs)

        def crossing(i: int) -> str:
            q = np.flatnonzero((cross[:, 0] >= 0) & (row == i))[0]
            edges = f"edges {cross[q, 0]} and {cross[q, 1]}"
            return f"region {int(local[q])}: the polygon crosses itself ({edges})"

        check(_row_any(cross[:, 0] >= 0, row, n), "regions", crossing)
        area = np.zeros(len(flat))
        area[sel] = polygon_areas(xy[keep_v], offs)
        bad(ok_p & (area <= 0), "empty region (the polygon has zero area)")
    # masks
    size = pc.struct_field(mask, "size")
    counts = pc.struct_field(mask, "counts")
    h = images.height[np.maximum(img, 0)][row]
    w = images.width[np.maximum(img, 0)][row]
    sz = filled(pc.list_value_length(size), -1)
    sz_ok = has_m & (sz == 2)
    hw = np.full((len(flat), 2), -1, dtype=np.int64)
    if sz_ok.any():
        hw[sz_ok] = filled(pc.list_flatten(size.filter(pa.array(sz_ok))), -1).reshape(-1, 2)
    wrong = has_m & ((hw[:, 0] != h) | (hw[:, 1] != w))

    def wrong_size(i: int) -> str:
        q = np.flatnonzero(wrong & (row == i))[0]
        got = f"{hw[q, 0]}x{hw[q, 1]}" if sz[q] == 2 else "no [height, width]"
        return (
            f"region {int(local[q])}: mask size {got}, the image is {h[q]}x{w[q]} (height x width)"
        )

    check(_row_any(wrong, row, n), "regions", wrong_size)
    runs = filled(pc.list_flatten(counts), 0)
    r_reg = filled(pc.list_parent_indices(counts), 0)
    bad(has_m & _row_any(runs < 0, r_reg, len(flat)), "mask run lengths must be >= 0")
    total = np.bincount(r_reg, np.maximum(runs, 0).astype(np.float64), minlength=len(flat))
    bad(
        has_m & ~wrong & (total != h.astype(np.float64) * w),
        "mask run lengths must add up to height x width",
    )
    nth = np.arange(len(runs)) - np.repeat(
        np.cumsum(filled(pc.list_value_length(counts), 0))
        - filled(pc.list_value_length(counts), 0),
        filled(pc.list_value_length(counts), 0),
    )
    marked = np.bincount(r_reg, np.where(nth % 2 == 1, np.maximum(runs, 0), 0), minlength=len(flat))
    bad(has_m & (marked == 0), "empty region (the mask marks no pixel)")
