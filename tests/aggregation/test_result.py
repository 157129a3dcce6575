"""The result types: heatmap blocks (``Heatmaps``), and the uncertainty of every score
(Kish's n_eff, standard errors and confidence intervals)."""

import datasets
import numpy as np
import pytest
from fixtures import make_campaign, write_jsonl
from scipy.stats import t as student_t

from rfengine import aggregate, save_output
from rfengine.aggregation.result import Heatmaps
from rfengine.schema import CRITERIA


def _heatmaps() -> tuple[Heatmaps, np.ndarray, np.ndarray]:
    """Six images: 0, 2, 3 at 4x5 in one block, 5 at 2x2 in another, 1 and 4 without maps."""
    hm = Heatmaps(6)
    a = np.arange(3 * 4 * 5, dtype=np.float16).reshape(3, 4, 5)
    b = np.ones((1, 2, 2), dtype=np.float16)
    hm.add(np.array([0, 2, 3]), a)
    hm.add(np.array([5]), b)
    return hm, a, b


def test_heatmaps_index_like_a_list_of_maps():
    hm, a, b = _heatmaps()
    assert len(hm) == 6
    assert [m is None for m in hm] == [False, True, False, False, True, False]
    np.testing.assert_array_equal(hm[2], a[1])
    np.testing.assert_array_equal(hm[-1], b[0])
    assert [m is None for m in hm[1:4]] == [True, False, False]
    with pytest.raises(IndexError):
        hm[6]
    np.testing.assert_array_equal(hm.present(np.arange(6)), [1, 0, 1, 1, 0, 1])


def test_heatmaps_block_is_a_view_only_for_consecutive_maps_of_one_block():
    hm, a, _ = _heatmaps()
    view = hm.block(np.array([2, 3]))
    assert view is not None and np.shares_memory(view, a)
    np.testing.assert_array_equal(view, a[1:3])
    assert hm.block(np.array([0, 1])) is None  # image 1 has no map
    assert hm.block(np.array([3, 5])) is None  # two blocks
    assert hm.block(np.array([3, 2])) is None  # not in block order
    assert hm.block(np.array([], dtype=np.int64)) is None


# ------------------------------------------------------------------------- uncertainty


def test_columns_match_a_float64_reference(tmp_path):
    c = make_campaign(tmp_path, n_images=20, seed=6)
    res = aggregate(c.images_path, c.responses_path)
    out = save_output(res, tmp_path / "o")
    ds = datasets.load_from_disk(str(out / "dataset")).with_format(None)
    for k, im in enumerate(c.images):
        for crit in CRITERIA:
            rows = [r for r in c.responses if r["image_id"] == im["image_id"] and r["task"] == crit]
            w = np.array([r.get("weight", 1.0) for r in rows], dtype=np.float64)
            x = np.array([r["rating"] for r in rows], dtype=np.float64)
            row = ds[k]
            if w.sum() <= 0:
                assert row[f"{crit}_n_eff"] is None and row[f"{crit}_ci_low"] is None
                continue
            mean = (w * x).sum() / w.sum()
            std = np.sqrt((w * (x - mean) ** 2).sum() / w.sum())
            n_eff = w.sum() ** 2 / (w**2).sum()
            se = std * np.sqrt((w**2).sum()) / w.sum()
            assert row[f"{crit}_n_eff"] == pytest.approx(n_eff, rel=1e-6)
            assert row[f"{crit}_se"] == pytest.approx(se, rel=1e-5, abs=1e-7)
            if n_eff <= 1:
                assert row[f"{crit}_ci_low"] is None
            else:
                half = student_t.ppf(0.975, n_eff - 1) * se
                assert row[f"{crit}_ci_low"] == pytest.approx(mean - half, rel=1e-5, abs=1e-6)
                assert row[f"{crit}_ci_high"] == pytest.approx(mean + half, rel=1e-5, abs=1e-6)
        words = [r for r in c.responses if r["image_id"] == im["image_id"] and r["task"] == "words"]
        if words:
            n_tok = len(im["prompt"].split())
            w = np.array([r.get("weight", 1.0) for r in words])
            said = np.array([n_tok in r["selected"] for r in words], dtype=float)
            if w.sum() > 0:
                p = (w * said).sum() / w.sum()
                se = np.sqrt(p * (1 - p)) * np.sqrt((w**2).sum()) / w.sum()
                assert ds[k]["no_mistake_se"] == pytest.approx(se, rel=1e-5, abs=1e-7)


def test_confidence_intervals_cover_the_true_mean(tmp_path):
    """Ratings drawn from a known distribution, weights at random: the 95% intervals cover
    the true mean at close to the nominal rate."""
    rng = np.random.default_rng(11)
    probs = np.array([0.1, 0.2, 0.3, 0.25, 0.15])
    mu = float((np.arange(1, 6) * probs).sum())
    n_images, k = 1500, 12
    images = [
        {"image_id": f"i{j}", "prompt": "a b", "width": 8, "height": 8} for j in range(n_images)
    ]
    rows = [
        {
            "image_id": f"i{j}",
            "annotator_id": f"a{a}",
            "task": "style",
            "rating": int(rng.choice(5, p=probs)) + 1,
            "weight": float(rng.uniform(0.2, 1.0)),
        }
        for j in range(n_images)
        for a in range(k)
    ]
    ip = write_jsonl(tmp_path / "images.jsonl", images)
    res = aggregate(ip, write_jsonl(tmp_path / "r.jsonl", rows), heatmap_size="4x4")
    low, high = res.scores["style"].ci()
    coverage = float(((low <= mu) & (mu <= high)).mean())
    assert 0.92 <= coverage <= 0.97, coverage


def test_a_block_pool_hands_back_written_blocks_of_the_same_shape():
    import torch

    from rfengine.aggregation.result import BlockPool

    pool = BlockPool(limit=2)
    a = pool.take((2, 3, 4), torch.float16)
    maps = Heatmaps(2)
    maps.add(np.arange(2), a)
    pool.give({"coherence": maps})
    assert pool.take((2, 3, 4), torch.float16) is a  # the same memory, reused
    assert pool.take((2, 3, 4), torch.float16) is not a  # given once, taken once
    pool.give({"coherence": maps})
    b = pool.take((2, 3, 4), torch.float32)  # another dtype: a new block
    assert b is not a and b.dtype == np.float32
    for _ in range(5):
        pool.give({"coherence": maps})
    assert len(pool._free) == 2  # at most ``limit`` kept
