"""``kernels.raster``: polygons at pixel centres (even-odd, half-open) against a plain
float64 reference written here, Pillow's rasteriser away from outlines (simple polygons),
and the weighted union coverage against a per-annotator float64 reference; hypothesis for
the invariants."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw
from reference import ref_polygon_mask, ref_resampled
from rfengine.kernels.raster import (
    Spans,
    fill_polygons,
    mask_spans,
    polygon_spans,
    region_coverage,
    soften,
)

from rfengine.ingest.regions import mask_counts


def _pack(polys):
    v = torch.tensor(np.concatenate(polys), dtype=torch.float64)
    return v, torch.tensor(np.cumsum([0] + [len(p) for p in polys]))


polygon = st.integers(3, 12).flatmap(
    lambda n: st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=n, max_size=n)
)


@settings(max_examples=60, deadline=None)
@given(polys=st.lists(polygon, min_size=1, max_size=3), H=st.integers(1, 24), W=st.integers(1, 24))
def test_fill_equals_the_reference(polys, H, W):
    polys = [np.array(p, dtype=np.float64) for p in polys]
    got = fill_polygons(*_pack(polys), H, W).numpy()
    for r, p in enumerate(polys):
        np.testing.assert_array_equal(got[r], ref_polygon_mask(p, H, W))


def _edge_distance(poly: np.ndarray, H: int, W: int) -> np.ndarray:
    """Each pixel centre's distance to the outline, in pixels."""
    ys, xs = np.mgrid[0:H, 0:W]
    c = np.stack([(xs + 0.5), (ys + 0.5)], -1).reshape(-1, 1, 2)
    a = poly * [W, H]
    b = np.roll(a, -1, axis=0)
    ab = b - a
    t = np.clip(((c - a) * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-12), 0, 1)
    d = np.linalg.norm(c - (a + t[..., None] * ab), axis=-1).min(-1)
    return d.reshape(H, W)


def test_pillow_agrees_away_from_the_outline():
    rng = np.random.default_rng(3)
    H, W = 96, 128
    checked = 0
    for _ in range(20):
        # simple (star-shaped) polygons: on self-intersecting ones Pillow's fill rule is not
        # even-odd (the reference test above covers those)
        m = int(rng.integers(3, 15))
        ang = np.sort(rng.uniform(0, 2 * np.pi, m))
        rad = rng.uniform(0.1, 0.45, m)[:, None]
        poly = rng.uniform(0.3, 0.7, 2) + rad * np.stack([np.cos(ang), np.sin(ang)], 1)
        img = Image.new("L", (W, H), 0)
        ImageDraw.Draw(img).polygon([(x * W - 0.5, y * H - 0.5) for x, y in poly], fill=1)
        pil = np.asarray(img).astype(bool)
        ours = fill_polygons(*_pack([poly]), H, W)[0].numpy()
        far = _edge_distance(poly, H, W) > 1.5  # Pillow draws its outline up to ~1.2 px out
        np.testing.assert_array_equal(ours[far], pil[far])
        checked += int(far.sum())
    assert checked > 100_000


def test_adjacent_polygons_share_no_pixel_and_cover_the_square():
    left = np.array([[0.0, 0.0], [0.4, 0.0], [0.6, 1.0], [0.0, 1.0]])
    right = np.array([[0.4, 0.0], [1.0, 0.0], [1.0, 1.0], [0.6, 1.0]])
    m = fill_polygons(*_pack([left, right]), 17, 23).numpy()
    assert not (m[0] & m[1]).any() and (m[0] | m[1]).all()


def test_too_few_vertices_is_refused():
    with pytest.raises(ValueError, match="at least 3 vertices"):
        fill_polygons(torch.zeros((2, 2)), torch.tensor([0, 2]), 4, 4)


def test_coverage_is_the_weighted_share_of_annotators():
    rng = np.random.default_rng(5)
    N, H, W = 4, 19, 27
    polys, reg_ann, ann_img, ann_w = [], [], [], []
    for n in range(N - 1):  # the last image has no annotator: NaN
        for _ in range(int(rng.integers(1, 5))):
            a = len(ann_img)
            ann_img.append(n)
            ann_w.append(float(rng.uniform(0, 2)))
            for _ in range(int(rng.integers(0, 4))):  # 0: drew nothing, still counted
                polys.append(rng.random((int(rng.integers(3, 10)), 2)))
                reg_ann.append(a)
    v, off = _pack(polys)
    got = region_coverage(
        polygon_spans(v, off, torch.tensor(reg_ann, dtype=torch.int64), H, W),
        torch.tensor(ann_img),
        torch.tensor(ann_w, dtype=torch.float64),
        (N, H, W),
    ).numpy()
    for n in range(N - 1):
        acc, tot = np.zeros((H, W)), 0.0
        for a, (img, w) in enumerate(zip(ann_img, ann_w, strict=True)):
            if img == n:
                union = np.zeros((H, W), bool)
                for p, ra in zip(polys, reg_ann, strict=True):
                    if ra == a:
                        union |= ref_polygon_mask(p, H, W)
                acc, tot = acc + w * union, tot + w
        np.testing.assert_allclose(got[n], acc / tot, rtol=0, atol=1e-12)
    assert np.isnan(got[N - 1]).all()


@settings(max_examples=40, deadline=None)
@given(polys=st.lists(polygon, min_size=1, max_size=4), H=st.integers(1, 16), W=st.integers(1, 16))
def test_one_annotator_covers_the_union_of_their_polygons(polys, H, W):
    polys = [np.array(p, dtype=np.float64) for p in polys]
    v, off = _pack(polys)
    cover = region_coverage(
        polygon_spans(v, off, torch.zeros(len(polys), dtype=torch.int64), H, W),
        torch.tensor([0]),
        torch.tensor([0.7], dtype=torch.float64),
        (1, H, W),
    )[0].numpy()
    union = fill_polygons(v, off, H, W).numpy().any(0)
    np.testing.assert_allclose(cover, union.astype(float), atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(
    h=st.integers(1, 12),
    w=st.integers(1, 12),
    H=st.integers(1, 20),
    W=st.integers(1, 20),
    seed=st.integers(0, 2**32 - 1),
    k=st.integers(1, 3),
)
def test_masks_resample_at_pixel_centres(h, w, H, W, seed, k):
    rng = np.random.default_rng(seed)
    masks = [rng.random((h, w)) < rng.uniform(0.1, 0.9) for _ in range(k)]
    runs = [mask_counts(m) for m in masks]
    spans = mask_spans(
        torch.tensor(np.concatenate(runs), dtype=torch.int64),
        torch.tensor(np.cumsum([0] + [len(r) for r in runs]), dtype=torch.int64),
        torch.tensor([[h, w]] * k, dtype=torch.int64),
        torch.arange(k),
        H,
        W,
    )
    for q in range(k):
        got = np.zeros((H, W), bool)
        for a, row, lo, hi in zip(*(t.tolist() for t in spans), strict=True):
            if a == q:
                got[row, lo:hi] = True
        np.testing.assert_array_equal(got, ref_resampled(masks[q], H, W))


def test_masks_and_polygons_of_one_annotator_are_one_union():
    H, W = 12, 16
    mask = np.zeros((6, 8), bool)
    mask[1:4, 2:7] = True
    square = np.array([[0.5, 0.5], [1.0, 0.5], [1.0, 1.0], [0.5, 1.0]])
    v, off = _pack([square])
    spans = Spans.cat(
        [
            polygon_spans(v, off, torch.tensor([0]), H, W),
            mask_spans(
                torch.tensor(mask_counts(mask)),
                torch.tensor([0, len(mask_counts(mask))]),
                torch.tensor([[6, 8]]),
                torch.tensor([0]),
                H,
                W,
            ),
        ]
    )
    cover = region_coverage(
        spans, torch.tensor([0, 0]), torch.tensor([1.0, 3.0], dtype=torch.float64), (1, H, W)
    )[0].numpy()
    union = ref_polygon_mask(square, H, W) | ref_resampled(mask, H, W)
    np.testing.assert_allclose(cover, union * 0.25, atol=1e-15)  # annotator 1 drew nothing


@pytest.mark.parametrize("sigma", [1.0, 2.0])
def test_soften_is_scipys_gaussian_with_replicated_edges(sigma):
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(7)
    maps = rng.random((3, 17, 23))
    got = soften(torch.from_numpy(maps), sigma).numpy()
    for k in range(3):  # scipy's radius int(3 sigma + 0.5) equals ours, ceil(3 sigma), here
        ref = gaussian_filter(maps[k], sigma, mode="nearest", truncate=3.0)
        np.testing.assert_allclose(got[k], ref, atol=1e-12)
    assert soften(torch.from_numpy(maps), 0) is not None
    np.testing.assert_allclose(soften(torch.ones(1, 5, 6, dtype=torch.float64), 1.5), 1.0)
