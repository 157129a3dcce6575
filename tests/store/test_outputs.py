import json

import datasets
import numpy as np
import pytest
import torch
from fixtures import make_campaign, same_tensor, write_jsonl
from PIL import Image

from rfengine import aggregate, load_targets, save_output
from rfengine.schema import CRITERIA
from rfengine.store import sha256

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
    out = save_output(res, root / "result")
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
            np.testing.assert_allclose([v for _, v in pairs], res.words.word_values(k), rtol=1e-12)
        else:
            assert row["word_scores"] is None and row["no_mistake_score"] is None


def test_targets_layout(saved):
    c, res, out = saved
    index = json.loads((out / "targets" / "index.json").read_text())
    sizes = {(im["height"], im["width"]) for im in c.images}
    assert {(s["height"], s["width"]) for s in index["shards"]} == sizes
    seen = []
    for shard in index["shards"]:
        [(t, meta)] = load_targets(out / "targets" / shard["file"])
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
                t["word_values"][lo:hi].numpy(), res.words.word_values(r), rtol=1e-6
            )
        s = np.stack([res.scores[cr].score[rows] for cr in CRITERIA], 1)
        assert torch.equal(t["scores_mask"], torch.from_numpy(~np.isnan(s)))
    assert sorted(seen) == list(range(len(c.images)))


def test_fixed_size_targets_are_one_series(tmp_path):
    c = make_campaign(tmp_path, n_images=8, seed=2)
    out = save_output(
        aggregate(c.images_path, c.responses_path, heatmap_size="16x24"), tmp_path / "o"
    )
    index = json.loads((out / "targets" / "index.json").read_text())
    assert [(s["file"], s["images"]) for s in index["shards"]] == [("16x24-00000.safetensors", 8)]


def test_manifest(saved):
    c, res, out = saved
    m = json.loads((out / "manifest.json").read_text())
    counts = m["counts"]
    assert counts["rows_read"] == counts["rows_used"] + counts["rows_rejected"] == len(c.responses)
    assert m["inputs"][1]["sha256"] == sha256(c.responses_path)
    assert m["config"]["preset"] == "default" and "torch" in m["versions"]
    assert set(m["run"]["timings_s"]) >= {"read", "reduce", "splat", "write"}


def test_failed_write_leaves_no_output(tmp_path, monkeypatch):
    c = make_campaign(tmp_path, n_images=4, seed=1)
    res = aggregate(c.images_path, c.responses_path)
    import rfengine.store.save as w

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(w, "write_targets", boom)
    with pytest.raises(RuntimeError):
        save_output(res, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_existing_output_needs_overwrite(tmp_path):
    c = make_campaign(tmp_path, n_images=4, seed=1)
    res = aggregate(c.images_path, c.responses_path)
    save_output(res, tmp_path / "out")
    with pytest.raises(FileExistsError, match="--overwrite"):
        save_output(res, tmp_path / "out")
    save_output(res, tmp_path / "out", overwrite=True)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("x")
    with pytest.raises(FileExistsError, match="not an rfengine output"):
        save_output(res, tmp_path / "mine", overwrite=True)


def test_load_output_round_trips(saved):
    import rfengine

    c, res, out = saved
    loaded = rfengine.load_output(out)
    assert loaded.options == res.options
    assert loaded.manifest == json.loads((out / "manifest.json").read_text())
    assert loaded.dataset.num_rows == len(res.images)
    assert list(loaded.dataset["image_id"]) == list(res.images.ids)
    # every shard of targets/index.json, in its order, each row's values equal to the result
    index = json.loads((out / "targets" / "index.json").read_text())
    assert [meta["file"] for _, meta in loaded.targets] == [s["file"] for s in index["shards"]]
    rows = torch.cat([t["row"] for t, _ in loaded.targets]).sort().values
    assert rows.tolist() == list(range(len(res.images)))
    for t, meta in loaded.targets:
        for q, r in enumerate(t["row"].tolist()):
            assert meta["image_ids"][q] == res.images.ids[r]
            m = res.heatmaps["coherence"][r]
            if m is None:
                assert not t["coherence_mask"][q]
            else:
                np.testing.assert_array_equal(t["coherence_heatmap"][q].numpy(), m)
    # a shard file alone gives the same as its entry in the folder's list
    [(t0, meta0)] = load_targets(out / "targets" / index["shards"][0]["file"])
    t1, meta1 = loaded.targets[0]
    assert meta0 == meta1 and all(same_tensor(t0[k], t1[k]) for k in t1)


def test_load_output_refuses_a_foreign_folder(tmp_path):
    import rfengine

    with pytest.raises(rfengine.InputError, match="not an rfengine aggregate output"):
        rfengine.load_output(tmp_path)
    (tmp_path / "index.json").write_text(json.dumps({"format": "something-else", "shards": []}))
    with pytest.raises(ValueError, match="not an rfengine targets index"):
        load_targets(tmp_path)


def test_dataset_folder_matches_save_to_disk(saved, tmp_path):
    """The hand-written folder (parts linked, no copy) is what save_to_disk would write."""
    _, _, out = saved
    ours = out / "dataset"
    ds = datasets.load_from_disk(str(ours))
    ref = tmp_path / "ref"
    ds.save_to_disk(str(ref))
    info, ref_info = (json.loads((d / "dataset_info.json").read_text()) for d in (ours, ref))
    assert info == ref_info  # every field, features included
    state, ref_state = (json.loads((d / "state.json").read_text()) for d in (ours, ref))
    assert set(state) == set(ref_state)
    for key in state:
        if key not in ("_data_files", "_fingerprint"):  # our parts; a hash of the history
            assert state[key] == ref_state[key], key
    files = [f["filename"] for f in state["_data_files"]]
    assert files == sorted(p.name for p in ours.glob("data-*.arrow"))
    assert all(f.startswith("data-") and f.endswith(f"-of-{len(files):05d}.arrow") for f in files)
    assert datasets.load_from_disk(str(ref)).data.table.equals(ds.data.table)


def test_outputs_choose_what_is_written(tmp_path):
    import rfengine

    c = make_campaign(tmp_path, n_images=8, seed=3)
    full = rfengine.aggregate_to_disk(c.images_path, c.responses_path, tmp_path / "full")
    only_t = rfengine.aggregate_to_disk(
        c.images_path, c.responses_path, tmp_path / "t", outputs="targets"
    )
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == ["manifest.json", "targets"]
    assert only_t["outputs"]["dataset"] is None
    assert only_t["outputs"]["targets"] == full["outputs"]["targets"]
    for a, b in zip(
        load_targets(tmp_path / "full" / "targets"),
        load_targets(tmp_path / "t" / "targets"),
        strict=True,
    ):
        assert all(same_tensor(a.tensors[k], b.tensors[k]) for k in a.tensors)
    loaded = rfengine.load_output(tmp_path / "t")
    assert loaded.dataset is None
    assert len(loaded.targets) == only_t["outputs"]["targets"]["shards"] > 0
    # the dataset without its heatmap columns: the rest identical, fewer bytes
    rfengine.aggregate_to_disk(
        c.images_path, c.responses_path, tmp_path / "d", outputs=["dataset"], dataset_heatmaps=False
    )
    assert not (tmp_path / "d" / "targets").exists()
    a = datasets.load_from_disk(str(tmp_path / "full" / "dataset")).data.table
    b = datasets.load_from_disk(str(tmp_path / "d" / "dataset")).data.table
    kept = [n for n in a.column_names if not n.endswith("_heatmap")]
    assert b.column_names == kept and b.equals(a.select(kept))
    size = lambda p: sum(f.stat().st_size for f in p.rglob("*") if f.is_file())  # noqa: E731
    assert size(tmp_path / "d") < size(tmp_path / "full") / 2
