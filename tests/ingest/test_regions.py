"""Region responses in the interchange format: parsed from JSONL, CSV and Parquet alike,
every rejection class with its line and field, and the geometry checks against plain
references written here (exact rational arithmetic for the crossing test)."""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest
from fixtures import write_csv, write_jsonl, write_parquet
from hypothesis import given, settings
from hypothesis import strategies as st

from rfengine import InputError, read_images, read_responses
from rfengine.ingest.regions import first_crossing, mask_counts, polygon_areas
from rfengine.schema import MAX_REGIONS, MAX_VERTICES

SQUARE = [[0.25, 0.25], [0.75, 0.25], [0.75, 0.75], [0.25, 0.75]]


def mask_of(counts: list[int], h: int, w: int) -> np.ndarray:
    """The responses format's run lengths back to a mask, one run at a time."""
    flat, v = [], False
    for n in counts:
        flat += [v] * n
        v = not v
    return np.array(flat, dtype=bool).reshape(h, w)


def row(task: str = "coherence_regions", **kw) -> dict:
    return {"image_id": "a", "annotator_id": "u1", "task": task, "weight": 0.5, **kw}


@pytest.fixture
def images(tmp_path):
    rows = [
        {"image_id": "a", "prompt": "a red cube", "width": 8, "height": 4},
        {"image_id": "b", "prompt": "two blue dogs", "width": 4, "height": 4},
    ]
    return read_images(write_jsonl(tmp_path / "images.jsonl", rows))


MASK = {"size": [4, 8], "counts": [9, 3, 20]}

BAD = [
    (row(), "missing (task 'coherence_regions' needs a list of regions)"),
    (row(task="style", rating=3, regions=[{"polygon": SQUARE}]), "not used by task 'style'"),
    (row(regions=[{"polygon": SQUARE}] * (MAX_REGIONS + 1)), f"at most {MAX_REGIONS} regions"),
    (row(regions=[{"polygon": SQUARE}, {}]), "region 1: needs a 'polygon' or a 'mask'"),
    (row(regions=[{"polygon": SQUARE, "mask": MASK}]), "is a polygon or a mask, not both"),
    (row(regions=[{"polygon": SQUARE[:2]}]), f"a polygon has 3 to {MAX_VERTICES} vertices"),
    (row(regions=[{"polygon": [[0.1, 0.1]] * (MAX_VERTICES + 1)}]), "3 to 1000 vertices"),
    (row(regions=[{"polygon": [[0.1], [0.2, 0.3], [0.4, 0.1]]}]), "each vertex must be an [x, y]"),
    (row(regions=[{"polygon": [[0.1, 0.1], [1.5, 0.2], [0.4, 0.9]]}]), "vertex outside [0, 1]"),
    (row(regions=[{"polygon": [[0.1, 0.1], [0.2, 0.2], [0.3, 0.3]]}]), "zero area"),
    (
        row(regions=[{"polygon": [[0, 0], [1, 1], [1, 0], [0, 1]]}]),
        "region 0: the polygon crosses itself (edges 0 and 2)",
    ),
    (  # a figure eight pinched at one vertex: touching edges are refused too
        row(regions=[{"polygon": [[0.1, 0.1], [0.5, 0.5], [0.9, 0.1], [0.9, 0.9], [0.5, 0.5]]}]),
        "crosses itself",
    ),
    (row(regions=[{"mask": {"size": [4, 4], "counts": [16]}}]), "mask size 4x4, the image is 4x8"),
    (row(regions=[{"mask": {"counts": [32]}}]), "mask size no [height, width]"),
    (row(regions=[{"mask": {"size": [4, 8], "counts": [40, -8]}}]), "run lengths must be >= 0"),
    (row(regions=[{"mask": {"size": [4, 8], "counts": [9, 3]}}]), "must add up to height x width"),
    (row(regions=[{"mask": {"size": [4, 8], "counts": [32]}}]), "the mask marks no pixel"),
    (row(regions={"polygon": SQUARE}), "expected a list of region objects"),
    (row(regions=[{"polygon": [["a", 0.1], [0.2, 0.3], [0.4, 0.1]]}]), "[x, y] number pairs"),
    (row(regions=[{"mask": [1, 2]}]), "mask must be {'size': [height, width]"),
]


@pytest.mark.parametrize(("bad", "why"), BAD, ids=[w[:40] for _, w in BAD])
def test_each_bad_region_row_is_rejected_with_its_line_and_field(images, tmp_path, bad, why):
    good = row(annotator_id="u0", regions=[{"polygon": SQUARE}, {"mask": MASK}])
    path = write_jsonl(tmp_path / "r.jsonl", [good, bad])
    resp, rejected, stats = read_responses([path], images, on_error="skip")
    assert len(resp) == 1 and stats.read == 2 and stats.rejected == 1
    (rej,) = rejected
    assert (rej.where, rej.field) == ("line 2", "regions")
    assert why in rej.reason
    with pytest.raises(InputError, match="line 2: field 'regions'"):
        read_responses([path], images)


def _rows() -> list[dict]:
    return [
        row(annotator_id="u1", regions=[{"polygon": SQUARE}, {"mask": MASK}]),
        row(annotator_id="u2", regions=[]),
        row(annotator_id="u3", task="alignment_regions", regions=[{"mask": MASK}]),
        row(annotator_id="u4", task="style", rating=4),
        row(annotator_id="u5", image_id="b", regions=[{"polygon": [[0, 0], [1, 0], [0, 1]]}]),
    ]


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_regions_read_alike_from_every_format(images, tmp_path, fmt):
    write = {"jsonl": write_jsonl, "csv": write_csv, "parquet": write_parquet}[fmt]
    rows = _rows()
    if fmt == "parquet":  # integer ratings in the fixture's Parquet schema
        rows = [{k: v for k, v in r.items()} for r in rows]
    path = write(tmp_path / f"r.{fmt}", rows)
    r, rejected, _ = read_responses([path], images)
    assert not rejected and len(r) == 5
    # sorted by image, task, annotator: a/coherence_regions u1 u2, a/alignment_regions u3, ...
    n_reg = np.diff(r.region_offsets)
    by = {(int(i), int(t), str(r.annotator_ids[a])): k for k, (i, t, a) in
          enumerate(zip(r.image, r.task, r.annotator, strict=True))}  # fmt: skip
    k1 = by[(0, 6, "u1")]
    assert n_reg[k1] == 2 and n_reg[by[(0, 6, "u2")]] == 0 and n_reg[by[(0, 3 + 4, "u3")]] == 1
    q = r.region_offsets[k1]
    np.testing.assert_array_equal(
        r.vertices[r.vertex_offsets[q] : r.vertex_offsets[q + 1]], np.array(SQUARE)
    )
    assert r.runs[r.run_offsets[q + 1] : r.run_offsets[q + 2]].tolist() == MASK["counts"]
    kept = r.take(r.annotator != list(r.annotator_ids).index("u1"))  # take keeps the rest whole
    assert np.diff(kept.region_offsets).sum() == 2 and kept.runs.tolist() == MASK["counts"]


def test_mask_counts_round_trip():
    rng = np.random.default_rng(0)
    for _ in range(50):
        h, w = (int(v) for v in rng.integers(1, 9, 2))
        m = rng.random((h, w)) < rng.uniform(0, 1)
        counts = mask_counts(m)
        assert sum(counts) == h * w and all(c > 0 for c in counts[1:])
        np.testing.assert_array_equal(mask_of(counts, h, w), m)


def _meets(a, b, c, d) -> bool:
    """Whether segments ab and cd share a point, in exact rational arithmetic."""
    a, b, c, d = ([Fraction(v) for v in p] for p in (a, b, c, d))

    def orient(p, q, r):
        v = (q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0])
        return (v > 0) - (v < 0)

    def within(p, q, r):
        return min(p[0], q[0]) <= r[0] <= max(p[0], q[0]) and min(p[1], q[1]) <= r[1] <= max(
            p[1], q[1]
        )

    o1, o2, o3, o4 = orient(a, b, c), orient(a, b, d), orient(c, d, a), orient(c, d, b)
    if o1 * o2 < 0 and o3 * o4 < 0:
        return True
    return any(
        o == 0 and within(p, q, r)
        for o, p, q, r in ((o1, a, b, c), (o2, a, b, d), (o3, c, d, a), (o4, c, d, b))
    )


def ref_simple(poly: list) -> bool:
    n = len(poly)
    for i in range(n):
        for j in range(i + 2, n):
            if i == 0 and j == n - 1:
                continue
            if _meets(poly[i], poly[(i + 1) % n], poly[j], poly[(j + 1) % n]):
                return False
    return True


coord = st.integers(0, 8).map(lambda v: v / 8)  # a coarse grid: touching and collinear cases
polygon = st.integers(3, 8).flatmap(
    lambda n: st.lists(st.tuples(coord, coord), min_size=n, max_size=n)
)


@settings(max_examples=300, deadline=None)
@given(polys=st.lists(polygon, min_size=1, max_size=5))
def test_crossing_test_agrees_with_exact_arithmetic(polys):
    v = np.array([p for poly in polys for p in poly], dtype=np.float64)
    off = np.cumsum([0] + [len(p) for p in polys])
    got = first_crossing(v, off)
    for k, poly in enumerate(polys):
        assert (got[k, 0] < 0) == ref_simple(poly), poly
        if got[k, 0] >= 0:  # the pair it names does meet
            i, j = got[k]
            n = len(poly)
            assert _meets(poly[i], poly[(i + 1) % n], poly[j], poly[(j + 1) % n])
    area = polygon_areas(v, off)
    for k, poly in enumerate(polys):
        ref = abs(sum(
            Fraction(x0) * Fraction(y1) - Fraction(x1) * Fraction(y0)
            for (x0, y0), (x1, y1) in zip(poly, poly[1:] + poly[:1], strict=True)
        )) / 2  # fmt: skip
        assert area[k] == pytest.approx(float(ref), abs=1e-15)


def test_rejected_rows_show_regions_only_where_given(images, tmp_path):
    path = write_jsonl(tmp_path / "r.jsonl", [{**row(task="style"), "rating": 9}])
    _, rejected, _ = read_responses([path], images, on_error="skip")
    assert "regions" not in rejected[0].row
    line = json.dumps(rejected[0].to_json())
    assert '"regions"' not in line
