import json

import datasets
import numpy as np
import pytest
import torch
from fixtures import make_campaign, write_jsonl
from PIL import Image

from rfengine import aggregate, load_targets
from rfengine.ingest import CRITERIA
from rfengine.write import sha256

PUBLISHED = [
    "image",
    "prompt",
    "word_scores",
    "style_score",
    "coherence_score",
    "alignment_score",
    "style_score_norm",
    "coherence_score_norm",
    "alignment_score_norm",
    "alignment_heatmap",
    "coherence_heatmap",
]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("out")
    c = make_campaign(root, n_images=12, seed=11)
    # give the images real files so the dataset carries an image column
    rows = []
    for im in c.images:
        Image.new("RGB", (im["width"], im["height"]), (200, 30, 30)).save(
            root / f"{im['image_id']}.png"
        )
        rows.append({**im, "path": f"{im['image_id']}.png"})
    write_jsonl(c.images_path, rows)
    res = aggregate(c.images_path, c.responses_path, heatmap_size="native")
    out = res.save(root / "result")
    return c, res, out


def test_dataset_schema_and_values(saved):
    c, res, out = saved
    ds = datasets.load_from_disk(str(out / "dataset"))
    assert ds.column_names[: len(PUBLISHED)] == PUBLISHED
    assert {
        "image_id",
        "no_mistake_score",
        "word_weight_total",
        "style_count",
        "alignment_std",
    } <= set(ds.column_names)
    assert ds.features["coherence_heatmap"] == datasets.List(
        datasets.List(datasets.Value("float16"))
    )
    assert ds.features["style_score"] == datasets.Value("float32")
    assert ds["image_id"] == [im["image_id"] for im in c.images]
    ds_np = ds.with_format("numpy")
    for k in range(len(ds)):
        row = ds[k]
        assert row["image"].size == (c.images[k]["width"], c.images[k]["height"])
        want = res.heatmaps["coherence"][k]
        if want is None:
            assert row["coherence_heatmap"] is None
        else:
            np.testing.assert_array_equal(np.stack(ds_np[k]["coherence_heatmap"]), want)
        for cr in CRITERIA:
            s = res.scores[cr].score[k]
            assert (row[f"{cr}_score"] is None) == bool(np.isnan(s))
            if not np.isnan(s):
                assert row[f"{cr}_score"] == pytest.approx(s, rel=1e-6)
                assert row[f"{cr}_score_norm"] == pytest.approx((s - 1) / 4, rel=1e-6, abs=1e-7)
        if res.words.count[k]:
            pairs = json.loads(row["word_scores"])
            assert [w for w, _ in pairs] == c.images[k]["prompt"].split()
            np.testing.assert_allclose([v for _, v in pairs], res.words.tokens(k), rtol=1e-12)
        else:
            assert row["word_scores"] is None and row["no_mistake_score"] is None


def test_targets_layout(saved):
    c, res, out = saved
    index = json.loads((out / "targets" / "index.json").read_text())
    sizes = {(im["height"], im["width"]) for im in c.images}
    assert {(s["height"], s["width"]) for s in index["shards"]} == sizes
    seen = []
    for shard in index["shards"]:
        t, meta = load_targets(out / "targets" / shard["file"])
        rows = t["row"].tolist()
        seen += rows
        assert meta["image_ids"] == [c.images[r]["image_id"] for r in rows]
        assert t["coherence_heatmap"].shape == (len(rows), shard["height"], shard["width"])
        for q, r in enumerate(rows):
            m = res.heatmaps["alignment"][r]
            assert bool(t["alignment_mask"][q]) == (m is not None)
            if m is not None:
                np.testing.assert_array_equal(t["alignment_heatmap"][q].numpy(), m)
            else:
                assert float(t["alignment_heatmap"][q].abs().max()) == 0
            lo, hi = t["word_offsets"][q], t["word_offsets"][q + 1]
            np.testing.assert_allclose(
                t["word_values"][lo:hi].numpy(), res.words.tokens(r), rtol=1e-6
            )
        s = np.stack([res.scores[cr].score[rows] for cr in CRITERIA], 1)
        assert torch.equal(t["scores_mask"], torch.from_numpy(~np.isnan(s)))
    assert sorted(seen) == list(range(len(c.images)))


def test_fixed_size_targets_are_one_series(tmp_path):
    c = make_campaign(tmp_path, n_images=8, seed=2)
    out = aggregate(c.images_path, c.responses_path, heatmap_size="16x24").save(tmp_path / "o")
    index = json.loads((out / "targets" / "index.json").read_text())
    assert [(s["file"], s["images"]) for s in index["shards"]] == [("16x24-00000.safetensors", 8)]


def test_manifest(saved):
    c, res, out = saved
    m = json.loads((out / "manifest.json").read_text())
    counts = m["counts"]
    assert counts["rows_read"] == counts["rows_used"] + counts["rows_rejected"] == len(c.responses)
    assert m["inputs"][1]["sha256"] == sha256(c.responses_path)
    assert m["config"]["preset"] == "default" and "torch" in m["versions"]
    assert set(m["timings_s"]) >= {"read", "reduce", "splat", "write"}


def test_failed_write_leaves_no_output(tmp_path, monkeypatch):
    c = make_campaign(tmp_path, n_images=4, seed=1)
    res = aggregate(c.images_path, c.responses_path)
    import rfengine.write as w

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(w, "write_targets", boom)
    with pytest.raises(RuntimeError):
        res.save(tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_existing_output_needs_overwrite(tmp_path):
    c = make_campaign(tmp_path, n_images=4, seed=1)
    res = aggregate(c.images_path, c.responses_path)
    res.save(tmp_path / "out")
    with pytest.raises(FileExistsError, match="--overwrite"):
        res.save(tmp_path / "out")
    res.save(tmp_path / "out", overwrite=True)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("x")
    with pytest.raises(FileExistsError, match="not an rfengine output"):
        res.save(tmp_path / "mine", overwrite=True)
