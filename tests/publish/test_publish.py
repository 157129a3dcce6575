"""``rfengine publish``: the folder ``datasets.load_dataset`` reads with no other argument,
equal to the output; the card parsed by ``huggingface_hub``, its features the Parquet
schema's and its numbers the output's; shards within their bound; figures drawn by
rfengine's renderer; refusals; the push through ``huggingface_hub``."""

from __future__ import annotations

import json
import re

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from rfengine import aggregate, load_output, save_output
from rfengine.cli import main
from rfengine.errors import InputError
from rfengine.publish import publish_output
from rfengine.sim.simulate import simulate


@pytest.fixture(scope="module")
def output(tmp_path_factory):
    root = tmp_path_factory.mktemp("publish")
    camp = simulate(root / "camp", n_images=10, seed=3, per_image=5)
    res = aggregate(camp / "images.jsonl", camp / "responses.jsonl", reliability=True)
    return save_output(res, root / "out")


@pytest.fixture(scope="module")
def published(output, tmp_path_factory):
    dest = tmp_path_factory.mktemp("dest") / "ds"
    publish_output(output, dest, max_shard_size="600KB", license="cc-by-4.0", examples=2)
    return dest


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, Image.Image):
        return np.array_equal(np.asarray(a), np.asarray(b)) and a.size == b.size
    a, b = np.asarray(a, dtype=object if isinstance(a, str) else None), np.asarray(b)
    if a.dtype.kind in "fc":
        return a.shape == b.shape and np.array_equal(a, b.astype(a.dtype), equal_nan=True)
    return bool(np.all(a == b))


def test_load_dataset_reads_it_equal_to_the_output(output, published):
    import datasets

    got = datasets.load_dataset(str(published))
    assert list(got) == ["train"]
    train = got["train"]
    want = load_output(output).dataset.with_format(None)
    assert train.column_names == want.column_names and len(train) == len(want) == 10
    assert train.features == want.features
    for k in range(len(want)):
        a, b = train[k], want[k]
        for col in want.column_names:
            assert _same(a[col], b[col]), (k, col)
    # images are embedded: the folder stands alone
    table = pq.read_table(sorted((published / "data").glob("*.parquet"))[0], columns=["image"])
    assert table.column("image")[0]["bytes"].as_py()[:8] == b"\x89PNG\r\n\x1a\n"


def test_shards_stay_within_the_bound(published):
    files = sorted((published / "data").glob("*.parquet"))
    n = len(files)
    assert n > 1
    assert [f.name for f in files] == [f"train-{k:05d}-of-{n:05d}.parquet" for k in range(n)]
    assert all(f.stat().st_size <= 600_000 for f in files)
    assert sum(pq.read_metadata(f).num_rows for f in files) == 10


def test_the_card_parses_and_its_features_are_the_schema(published):
    from datasets import Features
    from datasets.info import DatasetInfosDict
    from huggingface_hub import DatasetCard

    card = DatasetCard.load(published / "README.md")
    assert card.data.license == "cc-by-4.0" and card.data.size_categories == ["n<1K"]
    assert card.data.configs[0]["data_files"][0]["path"] == "data/train-*"
    info = DatasetInfosDict.from_dataset_card_data(card.data)["default"]
    shard = sorted((published / "data").glob("*.parquet"))[0]
    assert info.features == Features.from_arrow_schema(pq.read_schema(shard))
    assert info.splits["train"].num_examples == 10


def _cell(body: str, label: str) -> str:
    m = re.search(rf"^\| {re.escape(label)} \| ([^|]+) \|", body, re.M)
    assert m, label
    return m[1].strip()


def test_every_number_in_the_card_is_the_outputs(output, published):
    body = (published / "README.md").read_text().split("\n---\n", 1)[1]
    m = json.loads((output / "manifest.json").read_text())
    c = m["counts"]
    assert _cell(body, "images") == str(c["images"])
    assert _cell(body, "responses read") == str(c["rows_read"])
    assert _cell(body, "responses used") == str(c["rows_used"])
    assert _cell(body, "responses rejected") == str(c["rows_rejected"])
    ds = load_output(output).dataset
    for crit in ("style", "coherence", "alignment"):
        row = re.search(
            rf"^\| {crit} \| (\d+) \| (\d+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|$", body, re.M
        )
        s = np.asarray(ds[f"{crit}_score"], dtype=np.float64)
        ok = ~np.isnan(s)
        assert int(row[1]) == ok.sum()
        assert int(row[2]) == int(np.sum(ds[f"{crit}_count"]))
        assert row[3] == f"{s[ok].mean():.3f}" and row[4] == f"{np.median(s[ok]):.3f}"
        half = (np.asarray(ds[f"{crit}_ci_high"], float) - np.asarray(ds[f"{crit}_ci_low"])) / 2
        assert row[5] == f"{np.nanmean(half):.3f}"
        r = m["reliability"][crit]
        alpha = re.search(rf"^\| {crit} \| ([\d.-]+) \| ([\d.-]+) \| (\d+) \|$", body, re.M)
        assert alpha[1] == f"{r['krippendorff_alpha_ordinal']:.3f}"
        assert alpha[2] == f"{r['krippendorff_alpha_interval']:.3f}"
        assert alpha[3] == str(r["pairable_ratings"])
    for kind in ("coherence", "alignment"):
        r = m["reliability"][f"{kind}_heatmap"]
        got = re.search(rf"^\| `{kind}_heatmap` \| ([\d.-]+) \| (\d+) \|$", body, re.M)
        assert got[1] == f"{r['split_half_median']:.3f}" and got[2] == str(r["images"])
    for i in m["inputs"]:
        assert i["sha256"] in body
    assert m["versions"]["rfengine"] in body


def test_the_figures_are_rfengines_renderings(output, published):
    from rfengine.publish.figures import example_rows
    from rfengine.render.overlay import panel
    from rfengine.render.report import histogram
    from rfengine.store.load import as_heatmap, as_word_scores, load_dataset

    ds = load_dataset(output)
    for crit in ("style", "coherence", "alignment"):
        want = histogram(np.asarray(ds[f"{crit}_score"], dtype=np.float64), f"{crit} score")
        with Image.open(published / "figures" / f"score-{crit}.png") as got:
            assert np.array_equal(np.asarray(got), np.asarray(want))
    rows = example_rows(ds, 2)
    assert len(rows) == 2
    for k, r in enumerate(rows):
        row = ds[r]
        heat = {h: as_heatmap(row[f"{h}_heatmap"]) for h in ("coherence", "alignment")}
        want = panel(
            row["image"],
            row["prompt"].split(),
            as_word_scores(row["word_scores"]),
            heat,
            title=row["image_id"],
        )
        with Image.open(published / "figures" / f"example-{k}.png") as got:
            assert np.array_equal(np.asarray(got), np.asarray(want))
        assert f"figures/example-{k}.png" in (published / "README.md").read_text()


def test_refusals_are_one_line_and_nothing_is_half_written(output, tmp_path, capsys):
    assert main(["publish", str(tmp_path), str(tmp_path / "d")]) == 1
    assert "not an rfengine aggregate output" in capsys.readouterr().err
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "mine.txt").write_text("x")
    assert main(["publish", str(output), str(busy), "--overwrite"]) == 1
    assert "was not written by rfengine publish" in capsys.readouterr().err
    assert sorted(p.name for p in busy.iterdir()) == ["mine.txt"]
    dest = tmp_path / "d2"
    assert main(["publish", str(output), str(dest), "--examples", "0"]) == 0
    assert main(["publish", str(output), str(dest)]) == 1
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert main(["publish", str(output), str(dest), "--overwrite", "--max-shard-size", "2KB"]) == 1
    assert "more than --max-shard-size" in capsys.readouterr().err
    assert main(["publish", str(output), str(dest), "--max-shard-size", "lots"]) == 1
    assert "expected a size" in capsys.readouterr().err
    assert not list(tmp_path.glob(".*partial*"))  # nothing half-written beside DEST
    assert (dest / "README.md").exists()  # the earlier publish untouched


def test_push_goes_through_huggingface_hub(output, tmp_path, monkeypatch, capsys):
    import huggingface_hub

    calls = []
    monkeypatch.setattr(
        huggingface_hub.HfApi,
        "create_repo",
        lambda self, repo_id, **kw: (
            calls.append(("create", repo_id, kw)) or f"https://huggingface.co/datasets/{repo_id}"
        ),
    )
    monkeypatch.setattr(
        huggingface_hub.HfApi, "upload_folder", lambda self, **kw: calls.append(("upload", kw))
    )
    dest = tmp_path / "d"
    assert main(["publish", str(output), str(dest), "--push", "org/name", "--private"]) == 0
    assert calls[0] == (
        "create",
        "org/name",
        {"repo_type": "dataset", "private": True, "exist_ok": True},
    )
    up = calls[1][1]
    assert up["folder_path"] == dest and up["repo_type"] == "dataset"
    assert ".rfengine-written.json" in up["ignore_patterns"]
    assert 'load_dataset("org/name", split="train")' in (dest / "README.md").read_text()


def test_a_failed_push_is_one_line_without_the_token(output, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_TOKEN", "hf_" + "s3cret" * 6)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    dest = tmp_path / "d"
    assert main(["publish", str(output), str(dest), "--push", "org/name"]) == 1
    err = capsys.readouterr().err
    assert "--push org/name:" in err and "s3cret" not in err
    assert "is complete" in err and (dest / "README.md").exists()
    with pytest.raises(InputError, match="expected ORG/NAME"):
        from rfengine.publish.hub import push

        push(dest, "noslash")
