"""From targets to a model: the torch Dataset, the RichHF export, RAHF's metrics."""

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from scipy.stats import pearsonr, spearmanr
from torch.utils.data import DataLoader

from rfengine import load_output
from rfengine.sim.demo import run_demo
from rfengine.train.dataset import IGNORE_INDEX, RichFeedbackDataset, collate
from rfengine.train.metrics import (
    click_fixations,
    evaluate,
    map_auc_judd,
    map_cc,
    map_kld,
    map_nss,
    map_sim,
)
from rfengine.train.richhf import export_richhf, richhf_prompts

ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "d"
    run_demo(out, n_images=24, progress=False)
    return out / "aggregate"


# ------------------------------------------------------------------------------ Dataset


def test_items_equal_the_targets_and_the_dataset(demo):
    ds = RichFeedbackDataset(demo)
    out = load_output(demo)
    rows = {}
    for t, _ in out.targets:
        for q, r in enumerate(t["row"].tolist()):
            rows[r] = (t, q)
    table = out.dataset.with_format(None)
    for k in range(len(ds)):
        item, (t, q) = ds[k], rows[k]
        assert item["image_id"] == table[k]["image_id"] and item["prompt"] == table[k]["prompt"]
        for kind in ("coherence", "alignment"):
            assert torch.equal(item[f"{kind}_heatmap"], t[f"{kind}_heatmap"][q].float())
            assert bool(item[f"{kind}_mask"]) == bool(t[f"{kind}_mask"][q])
        assert torch.equal(item["scores_norm"], t["scores_norm"][q])
        off = t["word_offsets"]
        values = t["word_values"][off[q] : off[q + 1]].double()
        total = float(t["word_weight_total"][q])
        want = (values / total).float() if total > 0 else torch.zeros_like(values).float()
        torch.testing.assert_close(item["token_scores"], want)
        assert item["token_labels"].tolist() == (want >= 0.5).long().tolist()
        assert len(item["token_scores"]) == len(item["prompt"].split())
        img = np.asarray(table[k]["image"].convert("RGB"), dtype=np.float32) / 255
        np.testing.assert_allclose(item["image"].permute(1, 2, 0).numpy(), img, atol=1e-7)


def test_loader_with_workers_batches_and_pads(demo):
    ds = RichFeedbackDataset(demo, image_size=(32, 32), heatmap_size=(16, 16))
    loader = DataLoader(ds, batch_size=5, collate_fn=collate, num_workers=2)
    batches = list(loader)
    assert sum(len(b["image_id"]) for b in batches) == len(ds)
    b = batches[0]
    assert b["image"].shape == (5, 3, 32, 32) and b["coherence_heatmap"].shape == (5, 16, 16)
    n_tok = [len(p.split()) for p in b["prompt"]]
    assert b["token_labels"].shape == (5, max(n_tok))
    for i, n in enumerate(n_tok):
        assert b["token_mask"][i].sum() == n
        assert (b["token_labels"][i, n:] == IGNORE_INDEX).all()
    # the same items as without workers
    assert b["image_id"] == [ds[k]["image_id"] for k in range(5)]
    torch.testing.assert_close(b["coherence_heatmap"][0], ds[0]["coherence_heatmap"])


def test_resized_maps_keep_their_mean(demo):
    ds = RichFeedbackDataset(demo)
    small = RichFeedbackDataset(demo, heatmap_size=(16, 16))
    k = next(i for i in range(len(ds)) if ds[i]["coherence_mask"])
    a, b = ds[k]["coherence_heatmap"], small[k]["coherence_heatmap"]
    if a.shape[0] % 16 == 0 and a.shape[1] % 16 == 0:  # whole blocks: the mean is exact
        assert float(b.mean()) == pytest.approx(float(a.mean()), rel=1e-5)
    assert float(b.max()) <= float(a.max()) + 1e-6


# ------------------------------------------------------------------------------ RichHF


def _richhf_reference_tokens(prompt, labels):
    """youweiliang/RichHF get_dataset.py's match_misalignment_label_to_token, transcribed."""
    delimiters = ',.?!":; '
    pattern = "|".join(map(re.escape, delimiters))
    tokens = [t for t in re.split(pattern, prompt) if t]
    labeled = " ".join(
        [f"{t}_{lab}" if lab == 0 else t for t, lab in zip(tokens, labels, strict=True)]
    )
    return labeled, " ".join(tokens)


def test_richhf_prompts_match_the_reference_tokeniser():
    prompt = 'A "red" cube, two spheres; one tiny: blue? pyramid!'
    words = prompt.split()
    bad = [False, True, False, False, True, False, False, False, False]
    clean, labeled, labels = richhf_prompts(prompt, bad)
    ref_labeled, ref_clean = _richhf_reference_tokens(prompt, [int(v) for v in labels.split()])
    assert (clean, labeled) == (ref_clean, ref_labeled)
    assert len(labels.split()) == len(clean.split()) and len(words) == len(bad)


def test_export_reads_as_the_richhf_trainer_reads_it(demo, tmp_path):
    counts = export_richhf(demo, tmp_path / "rhf", fractions=(0.5, 0.25, 0.25))
    full = datasets.load_from_disk(str(tmp_path / "rhf"))
    assert set(full) == {"train", "dev", "test"} and sum(counts.values()) == 24
    data = RichFeedbackDataset(demo)
    ids = {data[k]["image_id"]: k for k in range(len(data))}
    for split in full:
        for sample in full[split]:
            # as RichHF's HuggingFaceDataset.__getitem__ reads a sample (PIL instead of the
            # ViT processor and torchvision's ToTensor)
            img = Image.open(io.BytesIO(sample["image"]))
            maps = {}
            for key in ("artifact_map", "misalignment_map"):
                m = Image.open(io.BytesIO(sample[key]))
                maps[key] = np.asarray(m, dtype=np.float32) / 255.0
                assert m.size == (512, 512) and m.mode == "L"
            for key in (
                "artifact_score",
                "misalignment_score",
                "overall_score",
                "aesthetics_score",
            ):
                np.array(sample[key], dtype=np.float32)
            assert "_0" not in sample["clean_prompt"]
            item = data[ids[sample["filename"]]]
            assert img.size == (item["image"].shape[2], item["image"].shape[1])
            assert sample["artifact_score"] == pytest.approx(float(item["scores_norm"][1]))
            assert sample["misalignment_score"] == pytest.approx(float(item["scores_norm"][2]))
            heat = item["coherence_heatmap"] if item["coherence_mask"] else None
            if heat is None:
                assert maps["artifact_map"].max() == 0
            else:
                assert abs(float(maps["artifact_map"].max()) - float(heat.max())) < 0.05
            n_bad = int(item["token_labels"].sum())
            if n_bad:
                assert "_0" in sample["labeled_prompt"]


# ------------------------------------------------------------------------------ metrics


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
    rep = evaluate(demo, tmp_path / "noisy.safetensors")
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
    rep = evaluate(demo, tmp_path / "w.safetensors")["words"]
    assert rep["precision"] == 0 and rep["recall"] == 0 and rep["f1"] == 0
    _write_pred(
        tmp_path / "r.safetensors", meta["image_ids"], word_probs=1.0 - probs, word_offsets=off
    )
    rep = evaluate(demo, tmp_path / "r.safetensors")["words"]
    assert rep["precision"] == rep["recall"] == rep["f1"] == 1.0


# ------------------------------------------------------------------------------ example


@pytest.mark.slow
def test_training_example_improves_held_out_heatmaps_and_coherence_srcc(tmp_path):
    """The example learns what the demo's pixels carry: where defects are (CC on both maps)
    and the coherence score (a broken object is visible; held-out SRCC 0.70-0.80 over seeds
    0-6 when this was written, the untrained model's -0.30 to 0.35). Style (drawn
    independently of the image) and alignment (needs the prompt) are not asserted: an
    image-only model has nothing to learn there."""
    from rfengine import aggregate_to_disk
    from rfengine.sim.simulate import simulate

    camp = simulate(tmp_path / "c", n_images=160, seed=1)
    aggregate_to_disk(
        camp / "images.jsonl", camp / "responses.jsonl", tmp_path / "o", heatmap_size="64x64"
    )
    result = tmp_path / "r.json"
    cmd = [sys.executable, str(ROOT / "examples" / "train_reward_model.py"), str(tmp_path / "o")]
    subprocess.run([*cmd, "--steps", "600", "--json", str(result)], check=True, timeout=300)
    rep = json.loads(result.read_text())
    for kind in ("coherence", "alignment"):
        before, after = rep["before"]["heatmaps"][kind]["cc"], rep["after"]["heatmaps"][kind]["cc"]
        assert after > before + 0.05, (kind, before, after)
    before, after = (rep[k]["scores"]["coherence"]["srcc"] for k in ("before", "after"))
    assert after > 0.5 and after > before + 0.2, (before, after)
