import numpy as np
import pytest
import torch
from fixtures import DEVICES
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from reference import ref_default_heatmap, ref_default_map, ref_published_filter
from rfengine.kernels import (
    MIN_EXPONENT,
    annotator_peaks,
    discrete_kernel_radius,
    gaussian_profiles,
    reflected_kernel_profiles,
    splat_heatmaps,
    tile_candidates,
    tile_maxima,
)
from scipy.ndimage import gaussian_filter1d

coord = st.floats(0.0, 1.0, allow_nan=False)
point = st.tuples(coord, coord)
annotator = st.tuples(
    st.lists(point, max_size=3), st.one_of(st.just(0.0), st.floats(1e-3, 5.0, allow_nan=False))
)


def run_splat(annotators, W, H, out_hw=None, preset="default", dtype=torch.float64, device="cpu"):
    """Engine heatmap of one image from (points, weight) annotators, as float64 numpy."""
    if preset == "default":
        total = sum(w for _, w in annotators)
        scale = [w / total for _, w in annotators]
    else:
        scale = [1 / len(annotators)] * len(annotators)
    px, py, pa, asc = [], [], [], []
    for (pts, _), s in zip(annotators, scale, strict=True):
        if not pts:
            continue
        for x, y in pts:
            px.append(x)
            py.append(y)
            pa.append(len(asc))
        asc.append(s)

    def t(v, dt=dtype):
        return torch.tensor(v, dtype=dt, device=device)

    out = splat_heatmaps(
        t(px),
        t(py),
        t([0] * len(px), torch.long),
        t(pa, torch.long),
        t([0] * len(asc), torch.long),
        t(asc),
        t([W], torch.long),
        t([H], torch.long),
        out_hw or (H, W),
        preset,
    )
    return out[0].double().cpu().numpy()


def test_gaussian_profiles_match_formula():
    coord = torch.tensor([[0.0, 0.3, 1.0]], dtype=torch.float64)
    prof, log_peak = gaussian_profiles(
        coord, torch.tensor([200.0], dtype=torch.float64), 50, torch.tensor([7.0])
    )
    centres = (np.arange(50) + 0.5) / 50 * 200
    want = np.exp(-((centres[None, :] - np.array([0, 60, 200])[:, None]) ** 2) / (2 * 7.0**2))
    np.testing.assert_allclose(log_peak[0].numpy(), np.log(want.max(1)), rtol=1e-12)
    # each profile over its own peak, exact down to the clamp at MIN_EXPONENT of that peak
    rel = want / want.max(1, keepdims=True)
    np.testing.assert_allclose(prof[0].numpy(), rel, rtol=1e-12, atol=np.exp(MIN_EXPONENT) * 1.01)
    assert float(prof.min()) == pytest.approx(np.exp(MIN_EXPONENT), rel=1e-12)


@pytest.mark.parametrize("size,sigma", [(40, 2.5), (53, 4.0), (7, 0.35), (100, 6.0)])
def test_reflected_profiles_match_scipy(size, sigma):
    s = torch.tensor([sigma], dtype=torch.float64)
    r = discrete_kernel_radius(s)
    m = torch.arange(size)[None, :]
    got = reflected_kernel_profiles(m, size, s, r)[0].numpy()
    for k in range(size):
        impulse = np.zeros(size)
        impulse[k] = 1
        want = gaussian_filter1d(impulse, sigma, truncate=3, mode="reflect")
        np.testing.assert_allclose(got[k], want, atol=1e-15)


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
    peak = annotator_peaks(
        gy,
        gx,
        torch.tensor([0]),
        torch.tensor([0]),
        torch.tensor([2]),
        torch.tensor([[100, 100, 100, 100]]),
        torch.tensor([[80, 95, 80, 88]]),
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
    # the branch and bound's invariant: every pixel whose value reaches `lower` lies in a
    # returned tile, and tile_maxima is each tile's largest pixel (cut tiles included)
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
        t(reach) if truncated else None,
        (H, W),
        t(lower),
    )
    covered = np.zeros((H, W), dtype=bool)
    for a, b in zip(i0.tolist(), j0.tolist(), strict=True):
        covered[a : a + side, b : b + side] = True
    assert covered[full >= lower].all()
    assert (row == 0).all()
    # the factors whose product is that map: gy (1, H, n) and gx (1, n, W)
    i, j = np.arange(H), np.arange(W)
    prof = lambda k, cs: sum(  # noqa: E731
        np.exp(-(((k - c) / sigma) ** 2) / 2) * (np.abs(k - c) <= reach) for c in cs
    )
    gy = torch.tensor(np.stack([prof(i, c) for c in cy], 1)[None])
    gx = torch.tensor(np.stack([prof(j, c) for c in cx], 0)[None])
    n = len(pts)
    got = tile_maxima(
        gy, gx, torch.zeros_like(i0), torch.zeros_like(i0), torch.full_like(i0, n), i0, j0, side
    )
    for k, (a, b) in enumerate(zip(i0.tolist(), j0.tolist(), strict=True)):
        a, b = min(a, max(H - side, 0)), min(b, max(W - side, 0))  # cut tiles move inside
        assert float(got[k]) == pytest.approx(full[a : a + side, b : b + side].max(), rel=1e-12)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "W,H,out_hw", [(64, 48, None), (37, 91, None), (100, 80, (32, 40)), (60, 60, (128, 128))]
)
def test_default_heatmap_matches_reference(device, W, H, out_hw):
    rng = np.random.default_rng(W * H)
    for _ in range(10):
        anns = [
            ([tuple(rng.random(2)) for _ in range(rng.integers(0, 4))], float(rng.random()))
            for _ in range(rng.integers(1, 8))
        ]
        if sum(w for _, w in anns) == 0:
            continue
        ref = ref_default_heatmap(anns, W, H, out_hw)
        np.testing.assert_allclose(run_splat(anns, W, H, out_hw, device=device), ref, atol=1e-12)
        got32 = run_splat(anns, W, H, out_hw, dtype=torch.float32, device=device)
        np.testing.assert_allclose(got32, ref, atol=2e-6)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("W,H", [(64, 48), (37, 91), (120, 120)])
def test_rapidata_heatmap_matches_published_method(device, W, H):
    rng = np.random.default_rng(W + H)
    for _ in range(10):
        anns = [
            ([tuple(rng.random(2)) for _ in range(rng.integers(0, 4))], 1.0)
            for _ in range(rng.integers(1, 8))
        ]
        ref = ref_published_filter([p for p, _ in anns], W, H)
        got = run_splat(anns, W, H, preset="rapidata-2025", device=device)
        np.testing.assert_allclose(got, ref, atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(anns=st.lists(annotator, min_size=1, max_size=6), W=st.integers(4, 60), H=st.integers(4, 60))
def test_default_heatmap_within_unit_interval(anns, W, H):
    assume(sum(w for _, w in anns) > 0)  # all-zero weights: a null heatmap, not a map
    got = run_splat(anns, W, H, dtype=torch.float32)
    assert got.min() >= 0.0
    assert got.max() <= 1.0 + 1e-6


@settings(max_examples=60, deadline=None)
@given(p=point, W=st.integers(4, 120), H=st.integers(4, 120))
def test_single_click_peaks_at_its_own_pixel(p, W, H):
    got = run_splat([([p], 1.0)], W, H, dtype=torch.float32)
    i, j = min(int(p[1] * H), H - 1), min(int(p[0] * W), W - 1)
    # 2e-5: a click on a pixel boundary is equally near two centres, and float32 rounding of
    # the centres breaks that tie by up to ~1e-5 near the peak
    assert got[i, j] == pytest.approx(got.max(), abs=2e-5)
    assert got.max() == pytest.approx(1.0, abs=1e-6)


@settings(max_examples=60, deadline=None)
@given(u=st.floats(0, 1), v=st.floats(0, 1), W=st.integers(20, 120), H=st.integers(20, 120))
def test_published_single_click_peaks_at_its_pixel_away_from_edges(u, v, W, H):
    # near an edge, 'reflect' adds the click's mirror image and pulls the peak outwards;
    # further than the kernel radius from every edge the peak is the click's own pixel
    r = int(3 * min(W, H) / 20 + 0.5) + 1
    i, j = r + int(v * (H - 2 * r - 1)), r + int(u * (W - 2 * r - 1))
    p = ((j + 0.5) / W, (i + 0.5) / H)
    got = run_splat([([p], 1.0)], W, H, preset="rapidata-2025", dtype=torch.float32)
    assert np.unravel_index(got.argmax(), got.shape) == (i, j)


def test_published_peak_moves_towards_a_near_edge():
    # the published method's reflect boundary: a click on the second-to-last row peaks on
    # the last one (the click and its mirror, 3 px apart, merge for sigma >= 1.5)
    W = H = 60
    got = run_splat([([(0.5, (H - 1.5) / H)], 1.0)], W, H, preset="rapidata-2025")
    assert np.unravel_index(got.argmax(), got.shape) == (H - 1, 30)
    np.testing.assert_allclose(
        got, ref_published_filter([[(0.5, (H - 1.5) / H)]], W, H), atol=1e-12
    )


@settings(max_examples=40, deadline=None)
@given(anns=st.lists(annotator, min_size=1, max_size=6), scale=st.floats(0.01, 100.0))
def test_default_heatmap_invariant_to_weight_scaling(anns, scale):
    assume(sum(w for _, w in anns) > 0)  # all-zero weights: a null heatmap, not a map
    a = run_splat(anns, 40, 30)
    b = run_splat([(p, w * scale) for p, w in anns], 40, 30)
    np.testing.assert_allclose(a, b, atol=1e-12)


def test_rapidata_rejects_resized_grid():
    with pytest.raises(ValueError, match="native resolution"):
        run_splat([([(0.5, 0.5)], 1.0)], 40, 30, out_hw=(20, 20), preset="rapidata-2025")


def test_empty_batch_gives_zeros():
    z = torch.zeros(0)
    zl = torch.zeros(0, dtype=torch.long)
    out = splat_heatmaps(z, z, zl, zl, zl, z, torch.tensor([5, 5]), torch.tensor([4, 4]), (4, 5))
    assert out.shape == (2, 4, 5) and float(out.abs().max()) == 0.0


# ------------------------------------------------------------------------ preconditions


def splat_args(**change):
    """One 40x30 image, two annotators (points 0-1 and 2), as splat_heatmaps' arguments."""
    f = lambda *v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    i = lambda *v: torch.tensor(v)  # noqa: E731
    args = {
        "px": f(0.2, 0.4, 0.7),
        "py": f(0.5, 0.5, 0.1),
        "point_image": i(0, 0, 0),
        "point_annotator": i(0, 0, 1),
        "annotator_image": i(0, 0),
        "annotator_scale": f(0.5, 0.5),
        "width": i(40),
        "height": i(30),
        "out_size": (30, 40),
    }
    return {**args, **change}


def test_valid_arguments_pass_the_checks():
    assert splat_heatmaps(**splat_args()).shape == (1, 30, 40)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        # ids [0, 1, 0]: annotator 0's points are not contiguous (silently wrong before)
        ({"point_annotator": torch.tensor([0, 1, 0])}, r"`point_annotator` must be sorted"),
        (
            {
                "point_image": torch.tensor([0, 1, 0]),
                "width": torch.tensor([40, 40]),
                "height": torch.tensor([30, 30]),
            },
            r"`point_image` must be sorted",
        ),
        ({"px": torch.tensor([0.2, 1.5, 0.7], dtype=torch.float64)}, r"`px` must lie in \[0, 1\]"),
        ({"py": torch.tensor([0.2, -0.1, 0.7], dtype=torch.float64)}, r"`py` must lie in"),
        ({"px": torch.tensor([0.2, float("nan"), 0.7], dtype=torch.float64)}, r"`px` must lie"),
        ({"px": torch.tensor([0.2, 0.4], dtype=torch.float64)}, r"1-D of one length"),
        ({"annotator_scale": torch.tensor([0.5], dtype=torch.float64)}, r"1-D of one length"),
        ({"point_annotator": torch.tensor([0, 0, 2])}, r"`point_annotator` must lie in \[0, 1\]"),
        ({"annotator_image": torch.tensor([0, 1])}, r"`annotator_image` must lie in"),
        ({"width": torch.tensor([0])}, r"`width` must lie in"),
        ({"out_size": (0, 40)}, r"`out_size` must be positive"),
        ({"out": torch.empty(1, 30, 41, dtype=torch.float64)}, r"`out` must have shape"),
        ({"preset": "nope"}, r"unknown preset 'nope'"),
    ],
    ids=lambda v: next(iter(v)) if isinstance(v, dict) else None,
)
def test_bad_arguments_are_refused_with_a_message(change, match):
    with pytest.raises(ValueError, match=match):
        splat_heatmaps(**splat_args(**change))


def test_a_fourth_point_is_refused():
    f = lambda *v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    args = splat_args(
        px=f(0.1, 0.2, 0.3, 0.4),
        py=f(0.1, 0.2, 0.3, 0.4),
        point_image=torch.tensor([0, 0, 0, 0]),
        point_annotator=torch.tensor([0, 0, 0, 0]),
        annotator_image=torch.tensor([0]),
        annotator_scale=f(1.0),
    )
    with pytest.raises(ValueError, match=r"at most 3 points per annotator, got 4 for annotator 0"):
        splat_heatmaps(**args)


def test_wrong_dtypes_are_refused():
    with pytest.raises(TypeError, match=r"`point_image` must be an integer tensor"):
        splat_heatmaps(**splat_args(point_image=torch.tensor([0.0, 0.0, 0.0])))
    with pytest.raises(TypeError, match=r"`px` and `py` must share a floating dtype"):
        splat_heatmaps(**splat_args(py=torch.tensor([0.5, 0.5, 0.1], dtype=torch.float32)))


def test_annotators_must_belong_to_their_points_image():
    args = splat_args(
        point_image=torch.tensor([0, 0, 1]),
        annotator_image=torch.tensor([0, 0]),
        width=torch.tensor([40, 40]),
        height=torch.tensor([30, 30]),
    )
    with pytest.raises(ValueError, match=r"annotator_image\[point_annotator\]` must equal"):
        splat_heatmaps(**args)


def test_check_false_skips_the_checks_the_engine_guarantees():
    # ids [0, 1, 0] are only caught by the check: unchecked, the map is not the one of the
    # same annotators given in order (annotator 0: two close points, annotator 1: one)
    f = lambda *v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    ids = torch.tensor([0, 1, 0])
    unsorted = splat_args(px=f(0.2, 0.7, 0.22), py=f(0.5, 0.1, 0.5), point_annotator=ids)
    in_order = splat_args(px=f(0.2, 0.22, 0.7), py=f(0.5, 0.5, 0.1))
    right = splat_heatmaps(**in_order)
    assert float(right.max()) == pytest.approx(0.5)  # each annotator's map peaks at 1 x 0.5
    wrong = splat_heatmaps(**unsorted, check=False)
    assert float(wrong.max()) > 0.9
