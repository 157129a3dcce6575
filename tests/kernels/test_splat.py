import dataclasses

import numpy as np
import pytest
import torch
from fixtures import DEVICES
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from reference import ref_default_heatmap, ref_published_filter
from rfengine.kernels import Points, splat_heatmaps
from splat_cases import annotator, point, run_splat


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


@settings(max_examples=40, deadline=None)
@given(
    anns=st.lists(annotator, min_size=1, max_size=6),
    W=st.integers(4, 300),
    H=st.integers(4, 300),
    preset=st.sampled_from(["default", "rapidata-2025"]),
)
def test_no_product_in_the_gemm_is_subnormal(anns, W, H, preset):
    # the splat's factors are 0 or at least sqrt(tiny) (x86 computes subnormals many times
    # slower): every nonzero operand of its final product, so every nonzero product, in
    # float32, with Gaussian tails far below that on the larger grids
    assume(sum(w for _, w in anns) > 0)
    operands = []
    bmm = torch.bmm

    def spy(a, b, *, out=None):
        if out is not None:  # the map's product (the peak search's have no out)
            operands.append((a.clone(), b.clone()))
        return bmm(a, b, out=out)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch, "bmm", spy)
        run_splat(anns, W, H, preset=preset, dtype=torch.float32)
    root = torch.finfo(torch.float32).tiny ** 0.5
    for a, b in operands:
        for factor in (a, b):
            assert bool(((factor == 0) | (factor.abs() >= root)).all())


def test_rapidata_rejects_resized_grid():
    with pytest.raises(ValueError, match="native resolution"):
        run_splat([([(0.5, 0.5)], 1.0)], 40, 30, out_hw=(20, 20), preset="rapidata-2025")


def test_empty_batch_gives_zeros():
    z = torch.zeros(0)
    zl = torch.zeros(0, dtype=torch.long)
    empty = Points(z, z, zl, zl, zl, z, torch.tensor([5, 5]), torch.tensor([4, 4]))
    out = splat_heatmaps(empty, (4, 5))
    assert out.shape == (2, 4, 5) and float(out.abs().max()) == 0.0


# ------------------------------------------------------------------------ preconditions


def splat(**args):
    """``splat_heatmaps`` with its ``Points`` fields given as keywords beside its own."""
    names = [f.name for f in dataclasses.fields(Points)]
    points = Points(**{k: args.pop(k) for k in names})
    return splat_heatmaps(points, **args)


def splat_args(**change):
    """One 40x30 image, two annotators (points 0-1 and 2), as ``splat``'s arguments."""
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
    assert splat(**splat_args()).shape == (1, 30, 40)


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
        splat(**splat_args(**change))


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
        splat(**args)


def test_wrong_dtypes_are_refused():
    with pytest.raises(TypeError, match=r"`point_image` must be an integer tensor"):
        splat(**splat_args(point_image=torch.tensor([0.0, 0.0, 0.0])))
    with pytest.raises(TypeError, match=r"`px` and `py` must share a dtype, float32 or float64"):
        splat(**splat_args(py=torch.tensor([0.5, 0.5, 0.1], dtype=torch.float32)))
    half = torch.tensor([0.2, 0.4, 0.7], dtype=torch.float16)
    with pytest.raises(TypeError, match=r"got torch.float16 and torch.float16"):
        splat(**splat_args(px=half, py=half))


def test_annotators_must_belong_to_their_points_image():
    args = splat_args(
        point_image=torch.tensor([0, 0, 1]),
        annotator_image=torch.tensor([0, 0]),
        width=torch.tensor([40, 40]),
        height=torch.tensor([30, 30]),
    )
    with pytest.raises(ValueError, match=r"annotator_image\[point_annotator\]` must equal"):
        splat(**args)


def test_check_false_skips_the_checks_the_engine_guarantees():
    # ids [0, 1, 0] are only caught by the check: unchecked, the map is not the one of the
    # same annotators given in order (annotator 0: two close points, annotator 1: one)
    f = lambda *v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    ids = torch.tensor([0, 1, 0])
    unsorted = splat_args(px=f(0.2, 0.7, 0.22), py=f(0.5, 0.1, 0.5), point_annotator=ids)
    in_order = splat_args(px=f(0.2, 0.22, 0.7), py=f(0.5, 0.5, 0.1))
    right = splat(**in_order)
    assert float(right.max()) == pytest.approx(0.5)  # each annotator's map peaks at 1 x 0.5
    wrong = splat(**unsorted, check=False)
    assert float(wrong.max()) > 0.9


@pytest.mark.parametrize("preset", ["default", "rapidata-2025"])
def test_into_casts_chunk_by_chunk_to_the_same_maps(preset, monkeypatch):
    """``into=``: the product made a few maps at a time and cast into a float16 tensor gives
    exactly the float32 maps cast afterwards (chunks of one and of two images here)."""
    import rfengine.kernels.splat as splat

    rng = np.random.default_rng(3)
    n_img, size = 5, (24, 24)
    px, py, pi, pa, ai = [], [], [], [], []
    for b in range(n_img):
        for _ in range(int(rng.integers(1, 4))):
            a = len(ai)
            ai.append(b)
            for _ in range(int(rng.integers(1, 4))):
                x, y = rng.random(2)
                px.append(x), py.append(y), pi.append(b), pa.append(a)
    pts = Points(
        torch.tensor(px, dtype=torch.float32),
        torch.tensor(py, dtype=torch.float32),
        torch.tensor(pi),
        torch.tensor(pa),
        torch.tensor(ai),
        torch.full((len(ai),), 0.5),
        torch.full((n_img,), 24),
        torch.full((n_img,), 24),
    )
    want = splat_heatmaps(pts, size, preset).half()
    for chunk in (1, 2):
        monkeypatch.setattr(splat, "INTO_BYTES", chunk * 24 * 24 * 4)
        into = torch.empty((n_img, *size), dtype=torch.float16)
        got = splat_heatmaps(pts, size, preset, into=into)
        assert got is into
        assert torch.equal(got, want)
