"""The engine end to end (read -> reduce -> splat) against the float64 references."""

import numpy as np
import pytest
from fixtures import DEVICES, by_image, make_campaign, make_rows, write_jsonl
from reference import (
    as_percent,
    ref_default_heatmap,
    ref_rapidata_heatmap,
    ref_scores,
    ref_word_scores,
)

from rfengine import InputError, aggregate
from rfengine.schema import CRITERIA


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    return make_campaign(tmp_path_factory.mktemp("campaign"), n_images=40, seed=7)


def _points(rows):
    return [([tuple(p) for p in r["points"]], r["weight"]) for r in rows]


def test_scores_match_reference(campaign):
    res = aggregate(campaign.images_path, campaign.responses_path, device="cpu")
    for c in CRITERIA:
        rows = by_image(campaign.responses, c)
        s = res.scores[c]
        for k, im in enumerate(campaign.images):
            ref = ref_scores([(r["rating"], r["weight"]) for r in rows.get(im["image_id"], [])])
            if ref is None:
                assert s.count[k] == 0 and np.isnan(s.score[k])
                continue
            assert s.count[k] == ref["count"]
            np.testing.assert_allclose(s.weight[k], ref["weight"], rtol=1e-12)
            if ref["mean"] is None:
                assert np.isnan(s.score[k]) and np.isnan(s.std[k])
            else:
                np.testing.assert_allclose(s.score[k], ref["mean"], rtol=1e-6)
                np.testing.assert_allclose(s.norm[k], ref["norm"], rtol=1e-6, atol=1e-12)
                np.testing.assert_allclose(s.std[k], ref["std"], rtol=1e-6, atol=1e-12)
    # the fixture exercises every null case
    assert np.isnan(res.scores["alignment"].score[2]) and res.scores["alignment"].count[2] > 0
    assert res.scores["style"].count[1] == 0


def test_word_scores_match_reference(campaign):
    res = aggregate(campaign.images_path, campaign.responses_path, device="cpu")
    rows = by_image(campaign.responses, "words")
    for k, im in enumerate(campaign.images):
        got = res.words.values[res.words.offsets[k] : res.words.offsets[k + 1]]
        sel = [(r["selected"], r["weight"]) for r in rows.get(im["image_id"], [])]
        ref = ref_word_scores(len(im["prompt"].split()), sel)
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-12)
        assert res.words.count[k] == len(sel)
        np.testing.assert_allclose(res.words.total[k], sum(w for _, w in sel), rtol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "preset,size", [("default", "native"), ("rapidata-2025", "native"), ("default", "512x512")]
)
def test_heatmaps_match_reference_in_float16(campaign, preset, size, device):
    res = aggregate(
        campaign.images_path,
        campaign.responses_path,
        preset=preset,
        heatmap_size=size,
        device=device,
        dtype="float16",
    )
    out_hw = None if size == "native" else (512, 512)
    n_checked = 0
    for kind in ("coherence", "alignment"):
        rows = by_image(campaign.responses, f"{kind}_points")
        for k, im in enumerate(campaign.images):
            anns = _points(rows.get(im["image_id"], []))
            W, H = im["width"], im["height"]
            if preset == "default":
                ref = ref_default_heatmap(anns, W, H, out_hw)
            else:
                ref = ref_rapidata_heatmap([as_percent(p) for p, _ in anns], W, H)
            got = res.heatmaps[kind][k]
            if ref is None:
                assert got is None
                continue
            assert got.dtype == np.float16 and got.shape == (out_hw or (H, W))
            np.testing.assert_allclose(got.astype(np.float64), ref, atol=2e-3)
            n_checked += 1
    assert n_checked > 50


def test_heatmaps_float32_are_tighter(campaign):
    res = aggregate(campaign.images_path, campaign.responses_path, dtype="float32", device="cpu")
    rows = by_image(campaign.responses, "coherence_points")
    for k, im in enumerate(campaign.images):
        ref = ref_default_heatmap(_points(rows.get(im["image_id"], [])), im["width"], im["height"])
        if ref is not None:
            np.testing.assert_allclose(res.heatmaps["coherence"][k], ref, atol=5e-6)


def test_invariant_to_response_order_and_weight_scale(tmp_path):
    images, responses = make_rows(12, seed=3)
    ip = write_jsonl(tmp_path / "images.jsonl", images)
    a = aggregate(ip, write_jsonl(tmp_path / "a.jsonl", responses), dtype="float32")
    rng = np.random.default_rng(0)
    shuffled = [dict(r, weight=r["weight"] * 3.5) for r in rng.permutation(responses)]
    half = len(shuffled) // 2
    b = aggregate(
        ip,
        [
            write_jsonl(tmp_path / "b1.jsonl", shuffled[:half]),
            write_jsonl(tmp_path / "b2.jsonl", shuffled[half:]),
        ],
        dtype="float32",
    )
    for c in CRITERIA:
        np.testing.assert_allclose(a.scores[c].score, b.scores[c].score, rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(a.words.values * 3.5, b.words.values, rtol=1e-12)
    for kind in ("coherence", "alignment"):
        for x, y in zip(a.heatmaps[kind], b.heatmaps[kind], strict=True):
            assert (x is None) == (y is None)
            if x is not None:
                np.testing.assert_allclose(x, y, atol=1e-6)


def test_all_zero_weights_give_null_heatmap(tmp_path):
    ip = write_jsonl(
        tmp_path / "i.jsonl", [{"image_id": "a", "prompt": "x", "width": 10, "height": 10}]
    )
    rp = write_jsonl(
        tmp_path / "r.jsonl",
        [
            {
                "image_id": "a",
                "annotator_id": "u",
                "task": "coherence_points",
                "weight": 0,
                "points": [[0.5, 0.5]],
            }
        ],
    )
    assert aggregate(ip, rp).heatmaps["coherence"][0] is None
    # the published method ignores weights
    assert aggregate(ip, rp, preset="rapidata-2025").heatmaps["coherence"][0].max() == 1.0


def test_annotator_without_points_counts_as_zero_map(tmp_path):
    ip = write_jsonl(
        tmp_path / "i.jsonl", [{"image_id": "a", "prompt": "x", "width": 20, "height": 20}]
    )
    rows = [
        {
            "image_id": "a",
            "annotator_id": "u",
            "task": "coherence_points",
            "weight": 1,
            "points": [[0.5, 0.5]],
        },
        {
            "image_id": "a",
            "annotator_id": "v",
            "task": "coherence_points",
            "weight": 3,
            "points": [],
        },
    ]
    res = aggregate(ip, write_jsonl(tmp_path / "r.jsonl", rows), dtype="float32")
    assert res.heatmaps["coherence"][0].max() == pytest.approx(0.25, abs=1e-6)
    # the published method: that annotator's map is 0/0, so the whole image's mean is NaN
    pub = aggregate(ip, tmp_path / "r.jsonl", preset="rapidata-2025", dtype="float32")
    assert np.isnan(pub.heatmaps["coherence"][0]).all()


def test_small_memory_budget_gives_same_result(campaign):
    from rfengine import AggregateOptions, read_images
    from rfengine.run.plan import min_memory_budget

    a = aggregate(campaign.images_path, campaign.responses_path, dtype="float32")
    floor = min_memory_budget(read_images(campaign.images_path), a.options)
    b = aggregate(campaign.images_path, campaign.responses_path, a.options, memory_budget=floor)
    assert b.options == AggregateOptions.create(a.options, memory_budget=floor)
    for x, y in zip(a.heatmaps["coherence"], b.heatmaps["coherence"], strict=True):
        if x is not None:
            np.testing.assert_array_equal(x, y)
    with pytest.raises(InputError, match=r"raise --memory-budget to at least 1MB"):
        aggregate(campaign.images_path, campaign.responses_path, a.options, memory_budget=floor - 1)
    for x, y in zip(a.heatmaps["coherence"], b.heatmaps["coherence"], strict=True):
        if x is not None:
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"preset": "rapidata-2025", "heatmap_size": "64x64"}, "native resolution"),
        ({"heatmap_size": "64by64"}, "HxW"),
        ({"preset": "gauss"}, "preset"),
        ({"dtype": "bfloat16"}, "dtype"),
    ],
)
def test_bad_options(campaign, kwargs, match):
    with pytest.raises(ValueError, match=match):
        aggregate(campaign.images_path, campaign.responses_path, **kwargs)
