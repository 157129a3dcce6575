"""RAHF's metrics against independent references (scipy and float64 ports of the
reference code), and ``evaluate`` on predictions (``train.metrics``)."""

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file
from scipy.stats import pearsonr, spearmanr

from rfengine import load_output
from rfengine.train.evaluate import evaluate
from rfengine.train.metrics import (
    click_fixations,
    map_auc_judd,
    map_cc,
    map_kld,
    map_nss,
    map_sim,
    peak_position,
    rank_correlation,
)

values = st.lists(st.integers(1, 5) | st.floats(-10, 10, allow_nan=False), min_size=3, max_size=40)


@settings(max_examples=200)
@given(values, st.data())
def test_rank_correlation_matches_scipy(a, data):
    b = data.draw(st.lists(st.integers(1, 5), min_size=len(a), max_size=len(a)))
    ours = rank_correlation(np.array(a, dtype=float), np.array(b, dtype=float))
    ref = spearmanr(a, b).statistic if np.ptp(a) > 0 and np.ptp(b) > 0 else np.nan
    if np.isnan(ref):
        assert np.isnan(ours)
    else:
        assert ours == pytest.approx(ref, abs=1e-12)


def test_rank_correlation_skips_non_finite_pairs():
    a = np.array([1.0, 2, np.nan, 3, 4])
    b = np.array([1.0, 3, 5, 2, np.inf])
    assert rank_correlation(a, b) == pytest.approx(spearmanr([1, 2, 3], [1, 3, 2]).statistic)
    assert np.isnan(rank_correlation(np.array([1.0, 2]), np.array([2.0, 1])))


def test_peak_position_is_the_hottest_pixel_centre():
    heat = np.zeros((4, 8))
    heat[1, 6] = 1.0
    assert peak_position(heat) == ((6 + 0.5) / 8, (1 + 0.5) / 4)


def ref_kld(p, g, eps=1e-8):  # RichHF metrics.py, in numpy
    p, g = p / (p.sum() + eps), g / (g.sum() + eps)
    return float((g * np.log(g / (p + eps) + eps)).sum())


def ref_sim(p, g, eps=1e-8):
    return float(np.minimum(p / (p.sum() + eps), g / (g.sum() + eps)).sum())


def ref_nss(p, fix, eps=1e-8):
    z = (p - p.mean()) / (p.std(ddof=1) + eps)
    return float(z[fix].sum() / fix.sum())


def ref_auc_judd(s, fix):
    """RichHF's AUC_Judd_single with jitter=False, transcribed."""
    s = (s - s.min()) / (s.max() - s.min())
    S, F = s.flatten(), fix.flatten()
    Sth = S[F > 0]
    n_fix, n_pix = len(Sth), len(S)
    allthreshes = sorted(Sth, reverse=True)
    tp = np.zeros(n_fix + 2)
    fp = np.zeros(n_fix + 2)
    tp[0], tp[-1], fp[0], fp[-1] = 0, 1, 0, 1
    for i in range(n_fix):
        aboveth = (S >= allthreshes[i]).sum()
        tp[i + 1] = (i + 1) / n_fix
        fp[i + 1] = (aboveth - i) / (n_pix - n_fix)
    return float(np.trapezoid(tp, x=fp))


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_map_metrics_match_references(device):
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    rng = np.random.default_rng(3)
    pred = rng.random((6, 12, 10))
    gt = rng.random((6, 12, 10)) ** 4
    fix = rng.random((6, 12, 10)) < 0.1
    fix[:, 0, 0] = True
    p, g = torch.tensor(pred, device=device), torch.tensor(gt, device=device)
    f = torch.tensor(fix, device=device)
    for i in range(6):
        assert float(map_cc(p, g)[i]) == pytest.approx(
            pearsonr(pred[i].ravel(), gt[i].ravel())[0], abs=1e-7
        )
        assert float(map_kld(p, g)[i]) == pytest.approx(ref_kld(pred[i], gt[i]), rel=1e-10)
        assert float(map_sim(p, g)[i]) == pytest.approx(ref_sim(pred[i], gt[i]), rel=1e-10)
        assert float(map_nss(p, f)[i]) == pytest.approx(ref_nss(pred[i], fix[i]), rel=1e-10)
        assert float(map_auc_judd(p, f)[i]) == pytest.approx(
            ref_auc_judd(pred[i], fix[i]), abs=1e-12
        )


def test_auc_judd_with_ties_and_edge_cases():
    pred = torch.tensor([[[0.0, 0.5], [0.5, 1.0]]], dtype=torch.float64)
    fix = torch.tensor([[[False, True], [False, True]]])
    ref = ref_auc_judd(pred[0].numpy(), fix[0].numpy())
    assert float(map_auc_judd(pred, fix)[0]) == pytest.approx(ref)
    assert torch.isnan(map_auc_judd(pred, torch.zeros_like(fix))).all()  # no fixations
    assert torch.isnan(map_auc_judd(torch.ones_like(pred), fix)).all()  # constant map


def test_click_fixations_are_the_pixels_holding_clicks():
    clicks = torch.tensor([[0.0, 0.0], [0.99, 0.5], [1.0, 1.0], [0.3, 0.3]])
    fix = click_fixations(clicks, torch.tensor([0, 3, 4]), (4, 5))
    assert fix[0].nonzero().tolist() == [[0, 0], [2, 4], [3, 4]]
    assert fix[1].nonzero().tolist() == [[1, 1]]


def _write_pred(path, ids, **tensors):
    save_file(
        {k: v.contiguous() for k, v in tensors.items()}, str(path), {"image_ids": json.dumps(ids)}
    )


def test_evaluate_perfect_and_planted_predictions(demo, tmp_path):
    out = load_output(demo)
    folder = tmp_path / "perfect"
    folder.mkdir()
    for n, (t, meta) in enumerate(out.targets):
        maps = {
            f"{k}_heatmap": torch.nan_to_num(t[f"{k}_heatmap"].float())
            for k in ("coherence", "alignment")
        }
        _write_pred(
            folder / f"{n}.safetensors", meta["image_ids"], scores_norm=t["scores_norm"], **maps
        )
    rep = evaluate(demo, folder)
    for r in rep["heatmaps"].values():
        assert r["mse"] == pytest.approx(0, abs=1e-12) and r["cc"] == pytest.approx(1, abs=1e-6)
        # the published KLD's eps terms leave about -5e-4 for identical maps
        assert r["sim"] == pytest.approx(1, abs=1e-6) and r["kld"] == pytest.approx(0, abs=1e-3)
        assert r["images_not_empty"] > 0
    for r in rep["scores"].values():
        assert r["plcc"] == pytest.approx(1) and r["srcc"] == pytest.approx(1)
    # planted scores: the report's PLCC and SRCC are scipy's on the same pairs
    t, meta = out.targets[0]
    rng = np.random.default_rng(0)
    noisy = t["scores_norm"] + torch.tensor(
        rng.normal(0, 0.1, t["scores_norm"].shape), dtype=torch.float32
    )
    _write_pred(tmp_path / "noisy.safetensors", meta["image_ids"], scores_norm=noisy)
    rep = evaluate(demo, tmp_path / "noisy.safetensors", invalid="exclude")  # shard 0 only
    m = t["scores_mask"][:, 2].numpy()
    a, b = noisy[:, 2].numpy()[m], t["scores_norm"][:, 2].numpy()[m]
    assert rep["scores"]["alignment"]["plcc"] == pytest.approx(pearsonr(a, b)[0], abs=1e-6)
    assert rep["scores"]["alignment"]["srcc"] == pytest.approx(spearmanr(a, b)[0], abs=1e-6)


def test_evaluate_words(demo, tmp_path):
    out = load_output(demo)
    t, meta = out.targets[0]
    off, vals, total = t["word_offsets"], t["word_values"], t["word_weight_total"]
    labels = [
        (vals[off[q] : off[q + 1]] / total[q] >= 0.5).long() for q in range(len(meta["image_ids"]))
    ]
    probs = torch.cat([1.0 - lab.float() for lab in labels])  # every label flipped
    _write_pred(tmp_path / "w.safetensors", meta["image_ids"], word_probs=probs, word_offsets=off)
    rep = evaluate(demo, tmp_path / "w.safetensors", invalid="exclude")["words"]
    assert rep["precision"] == 0 and rep["recall"] == 0 and rep["f1"] == 0
    _write_pred(
        tmp_path / "r.safetensors", meta["image_ids"], word_probs=1.0 - probs, word_offsets=off
    )
    rep = evaluate(demo, tmp_path / "r.safetensors", invalid="exclude")["words"]
    assert rep["precision"] == rep["recall"] == rep["f1"] == 1.0
