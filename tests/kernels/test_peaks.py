import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from reference import ref_default_map, ref_published_filter
from rfengine.kernels import (
    AnnotatorMaps,
    annotator_peaks,
    gaussian_profiles,
    tile_candidates,
    tile_maxima,
)
from splat_cases import coord, point, run_splat

offset = st.floats(-0.12, 0.12, allow_nan=False)
clustered = st.tuples(point, st.lists(st.tuples(offset, offset), min_size=0, max_size=2)).map(
    lambda c: (
        [c[0]]
        + [(min(max(c[0][0] + dx, 0.0), 1.0), min(max(c[0][1] + dy, 0.0), 1.0)) for dx, dy in c[1]]
    )
)


@settings(max_examples=300, deadline=None)
@given(
    pts=st.one_of(clustered, st.lists(point, min_size=1, max_size=3)),
    W=st.integers(8, 90),
    H=st.integers(8, 90),
    out=st.one_of(st.none(), st.tuples(st.integers(4, 64), st.integers(4, 64))),
    preset=st.sampled_from(["default", "rapidata-2025"]),
)
def test_annotator_peak_is_the_grid_maximum(pts, W, H, out, preset):
    # clicks a few sigma apart make merged or twin modes away from every click
    if preset == "rapidata-2025":
        out = None
    m = run_splat([(pts, 1.0)], W, H, out_hw=out, preset=preset)
    ref = ref_default_map(pts, W, H, out) if preset == "default" else None
    assert m.max() == pytest.approx(1.0, abs=1e-12)
    if ref is not None:
        np.testing.assert_allclose(m, ref, atol=1e-12)


@settings(max_examples=200, deadline=None)
@given(
    x0=st.floats(0.05, 0.95),
    y0=st.floats(0.05, 0.95),
    gaps=st.lists(st.tuples(st.floats(3.0, 6.0), st.floats(0, 6.3)), min_size=1, max_size=2),
    W=st.integers(16, 120),
    H=st.integers(16, 120),
)
def test_peak_near_the_no_search_boundary(x0, y0, gaps, W, H):
    # clicks 3-6 sigma apart: around SEPARATE (4 sigma), where the continuous mode search
    # is skipped and the discrete climb alone must find the grid maximum
    sigma = 0.05 * min(W, H)
    pts = [(x0, y0)]
    for r, angle in gaps:
        x = pts[-1][0] + r * sigma * np.cos(angle) / W
        y = pts[-1][1] + r * sigma * np.sin(angle) / H
        pts.append((float(np.clip(x, 0, 1)), float(np.clip(y, 0, 1))))
    m = run_splat([(pts, 1.0)], W, H)
    np.testing.assert_allclose(m, ref_default_map(pts, W, H), atol=1e-12)


def test_annotator_peaks_on_merged_modes():
    # two clicks 1.5 sigma apart merge into one mode between them, away from both clicks
    W = H = 200
    pts = [(0.4, 0.5), (0.475, 0.5)]
    ref = ref_default_map(pts, W, H)
    got = run_splat([(pts, 1.0)], W, H)
    np.testing.assert_allclose(got, ref, atol=1e-12)
    # the raw kernel call gives the unnormalised maximum
    cx = torch.tensor([[0.4, 0.475]], dtype=torch.float64)
    cy = torch.tensor([[0.5, 0.5]], dtype=torch.float64)
    s = torch.tensor([10.0], dtype=torch.float64)
    e = torch.tensor([200.0], dtype=torch.float64)
    gy = gaussian_profiles(cy, e, H, s)[0].transpose(1, 2)
    gx = gaussian_profiles(cx, e, W, s)[0]  # both clicks on one row: equal peaks
    full = (gy @ gx)[0]
    maps = AnnotatorMaps(gy, gx, torch.tensor([0]), torch.tensor([0]), torch.tensor([2]))
    peak = annotator_peaks(
        maps, torch.tensor([[100, 100, 100, 100]]), torch.tensor([[80, 95, 80, 88]])
    )
    assert float(peak[0]) == pytest.approx(float(full.max()), rel=1e-14)


def test_peak_beyond_a_false_local_maximum_of_the_climb():
    # three interacting clicks on a 300x225 image: a hill climb from their pixels or their
    # modes stopped 2.8e-5 below the grid maximum (found by a 512^2 stress run)
    pts = [(0.3618257939815521, 0.9323024749755859), (0.3924831748008728, 0.8409395813941956)]
    pts.append((0.23040735721588135, 0.8519188761711121))
    got = run_splat([(pts, 1.0)], 300, 225)
    np.testing.assert_allclose(got, ref_default_map(pts, 300, 225), atol=1e-12)


def test_published_peak_across_the_edge_of_another_kernel():
    # rapidata-2025 kernels are truncated at 3 sigma: the maximum sits one row inside the
    # first click's kernel (rows 328..482), next to the second click's pixel (327, 262),
    # where a climb from the clicks' continuous mode stopped 0.24% low
    W = H = 512
    pixels = [(405, 247), (327, 262), (262, 284)]
    pts = [((j + 0.5) / W, (i + 0.5) / H) for i, j in pixels]
    got = run_splat([(pts, 1.0)], W, H, preset="rapidata-2025")
    ref = ref_published_filter([pts], W, H)
    assert np.unravel_index(ref.argmax(), ref.shape) == (328, 262)
    np.testing.assert_allclose(got, ref, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    centre=point,
    offsets=st.lists(st.tuples(st.floats(-4, 4), st.floats(-4, 4)), min_size=1, max_size=2),
    W=st.integers(200, 560),
    H=st.integers(200, 560),
    preset=st.sampled_from(["default", "rapidata-2025"]),
)
def test_interacting_clicks_at_full_size_match_the_references(centre, offsets, W, H, preset):
    # clicks within 4 sigma of each other (merged and flat modes, truncation edges) at the
    # sizes images come in, against the independent full-grid references
    sigma = 0.05 * min(W, H)
    pts = [centre] + [
        (
            min(max(centre[0] + dx * sigma / W, 0.0), 1.0),
            min(max(centre[1] + dy * sigma / H, 0.0), 1.0),
        )
        for dx, dy in offsets
    ]
    got = run_splat([(pts, 1.0)], W, H, preset=preset)
    if preset == "default":
        ref = ref_default_map(pts, W, H)
    else:
        ref = ref_published_filter([pts], W, H)
    np.testing.assert_allclose(got, ref, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    d=st.floats(0, 0.04),
    u=st.floats(0, 1),
    side=st.integers(0, 3),
    far=st.tuples(st.floats(0.35, 0.65), st.floats(0.35, 0.65)),
    W=st.integers(40, 400),
    H=st.integers(40, 400),
)
def test_published_clicks_apart_near_an_edge_match_the_reference(d, u, side, far, W, H):
    # kernels that do not overlap, one near an edge (its mirror image pulls its peak): the
    # maximum is the larger of the two separable responses, with no search
    pts = [[(d, u), (u, d), (1 - d, u), (u, 1 - d)][side], far]
    r = int(3 * min(W, H) / 20 + 0.5)
    px = [(min(int(x * W), W - 1), min(int(y * H), H - 1)) for x, y in pts]
    assume(abs(px[0][0] - px[1][0]) > 2 * r or abs(px[0][1] - px[1][1]) > 2 * r)
    got = run_splat([(pts, 1.0)], W, H, preset="rapidata-2025")
    np.testing.assert_allclose(got, ref_published_filter([pts], W, H), atol=1e-12)


def _term_map(cy, cx, sigma, reach, H, W):
    """Plain float64 map of one annotator: sum over points of (sum of its y images'
    Gaussians) * (sum of its x images'), each 0 beyond ``reach`` pixels."""
    i, j = np.arange(H)[:, None], np.arange(W)[None, :]
    total = np.zeros((H, W))
    for ys, xs in zip(cy, cx, strict=True):
        py = sum(np.exp(-(((i - c) / sigma) ** 2) / 2) * (np.abs(i - c) <= reach) for c in ys)
        px = sum(np.exp(-(((j - c) / sigma) ** 2) / 2) * (np.abs(j - c) <= reach) for c in xs)
        total = total + py * px
    return total


@settings(max_examples=60, deadline=None)
@given(
    pts=st.lists(st.tuples(coord, coord), min_size=2, max_size=3),
    H=st.integers(4, 150),
    W=st.integers(4, 150),
    truncated=st.booleans(),
    level=st.floats(0.5, 1.0),
)
def test_tile_search_keeps_every_pixel_above_the_lower_bound(pts, H, W, truncated, level):
    # the branch and bound's invariants: the map's maximum lies in the box of the centres
    # whose kernel reaches the grid, every pixel of that box whose value reaches `lower`
    # lies in a returned tile, and tile_maxima is each tile's largest pixel (cut tiles
    # included)
    sigma = 0.05 * min(H, W) * 3  # wide enough that clicks interact on small grids
    if truncated:  # the published method: pixel centres, mirror images, radius 3 sigma
        reach = float(int(3 * sigma + 0.5))
        cy = [[m, -1.0 - m, 2.0 * H - 1 - m] for m in (min(int(y * H), H - 1) for _, y in pts)]
        cx = [[m, -1.0 - m, 2.0 * W - 1 - m] for m in (min(int(x * W), W - 1) for x, _ in pts)]
    else:
        reach = np.inf
        cy = [[y * H - 0.5] for _, y in pts]
        cx = [[x * W - 0.5] for x, _ in pts]
    full = _term_map(cy, cx, sigma, reach, H, W)
    lower = level * full.max()
    t = lambda v: torch.tensor([v], dtype=torch.float64)  # noqa: E731
    row, i0, j0, side = tile_candidates(
        t(cx),
        t(cy),
        torch.ones((1, len(pts)), dtype=torch.bool),
        t(1.0),
        t(sigma),
        t(sigma),
        reach=t(reach) if truncated else None,
        size=(H, W),
        lower=t(lower),
    )
    covered = np.zeros((H, W), dtype=bool)
    for a, b in zip(i0.tolist(), j0.tolist(), strict=True):
        covered[a : a + side, b : b + side] = True
    box = np.zeros((H, W), dtype=bool)
    near = lambda cs, n: [c for c in cs if -reach <= c <= n - 1 + reach]  # noqa: E731
    ys = [c for cs in cy for c in near(cs, H)]
    xs = [c for cs in cx for c in near(cs, W)]
    box[
        max(int(np.floor(min(ys))), 0) : int(np.ceil(max(ys))) + 1,
        max(int(np.floor(min(xs))), 0) : int(np.ceil(max(xs))) + 1,
    ] = True
    assert full[box].max() == full.max()
    assert covered[box & (full >= lower)].all()
    assert (row == 0).all()
    # the factors whose product is that map: gy (1, H, n) and gx (1, n, W)
    i, j = np.arange(H), np.arange(W)
    prof = lambda k, cs: sum(  # noqa: E731
        np.exp(-(((k - c) / sigma) ** 2) / 2) * (np.abs(k - c) <= reach) for c in cs
    )
    gy = torch.tensor(np.stack([prof(i, c) for c in cy], 1)[None])
    gx = torch.tensor(np.stack([prof(j, c) for c in cx], 0)[None])
    n = len(pts)
    maps = AnnotatorMaps(gy, gx, torch.zeros_like(i0), torch.zeros_like(i0), torch.full_like(i0, n))
    got = tile_maxima(maps, i0, j0, side)
    for k, (a, b) in enumerate(zip(i0.tolist(), j0.tolist(), strict=True)):
        a, b = min(a, max(H - side, 0)), min(b, max(W - side, 0))  # cut tiles move inside
        assert float(got[k]) == pytest.approx(full[a : a + side, b : b + side].max(), rel=1e-12)
