"""The torch Dataset over an output (``train.dataset``)."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from rfengine import load_output
from rfengine.train.dataset import IGNORE_INDEX, RichFeedbackDataset, collate


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
