"""Images tables held as datasets (``rfengine.ingest.sources``): a ``save_to_disk`` folder, a
folder of Parquet files with embedded images, other column names and splits — each gives the
same aggregation as the equivalent JSONL table; bad datasets are one line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rfengine import aggregate
from rfengine.cli import main
from rfengine.errors import InputError
from rfengine.ingest import read_images
from rfengine.ingest.sources import ImageColumns
from rfengine.sim.simulate import simulate

datasets = pytest.importorskip("datasets")


@pytest.fixture(scope="module")
def camp(tmp_path_factory):
    return simulate(tmp_path_factory.mktemp("src") / "camp", n_images=6, seed=4, per_image=4)


def _rows(camp):
    return [json.loads(line) for line in (camp / "images.jsonl").read_text().splitlines()]


def _dataset(camp, embed: bool, names=("image_id", "prompt", "image")):
    from datasets import Dataset, Features, Image, Value
    from datasets.table import embed_table_storage

    rows = _rows(camp)
    feats = Features({names[0]: Value("string"), names[1]: Value("string"), names[2]: Image()})
    ds = Dataset.from_dict(
        {
            names[0]: [r["image_id"] for r in rows],
            names[1]: [r["prompt"] for r in rows],
            names[2]: [str((camp / r["path"]).resolve()) for r in rows],
        },
        features=feats,
    )
    if embed:
        ds = ds.with_format("arrow").map(embed_table_storage, batched=True).with_format(None)
    return ds


def _same_result(a, b) -> None:
    for c in ("style", "coherence", "alignment"):
        np.testing.assert_array_equal(a.scores[c].score, b.scores[c].score)
    np.testing.assert_array_equal(a.words.values, b.words.values)
    for kind in ("coherence", "alignment"):
        for x, y in zip(a.heatmaps[kind], b.heatmaps[kind], strict=True):
            assert (x is None and y is None) or np.array_equal(x, y)


def test_image_paths_are_used_where_they_lie(camp, tmp_path):
    folder = tmp_path / "pq-paths"
    folder.mkdir()
    _dataset(camp, embed=False).to_parquet(str(folder / "train-00000-of-00001.parquet"))
    with pytest.raises(InputError, match=r"row 0: field 'image': .* outside the dataset's folder"):
        read_images(folder)
    images = read_images(folder, allow_outside_paths=True)
    table = read_images(camp / "images.jsonl")
    assert images.paths == table.paths  # no copies
    assert images.ids == table.ids and images.prompts == table.prompts
    np.testing.assert_array_equal(images.width, table.width)
    _same_result(
        aggregate(images, camp / "responses.jsonl"), aggregate(table, camp / "responses.jsonl")
    )


def test_a_save_to_disk_folder(camp, tmp_path, monkeypatch):
    """``save_to_disk`` embeds the bytes and keeps only each file's name: extracted."""
    monkeypatch.setenv("RFENGINE_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "ds"
    _dataset(camp, embed=False).save_to_disk(str(folder))
    images = read_images(folder)
    table = read_images(camp / "images.jsonl")
    assert [p.read_bytes() for p in images.paths] == [p.read_bytes() for p in table.paths]
    _same_result(
        aggregate(images, camp / "responses.jsonl"), aggregate(table, camp / "responses.jsonl")
    )


def test_embedded_images_are_extracted_once_into_the_cache(camp, tmp_path, monkeypatch):
    monkeypatch.setenv("RFENGINE_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "pq"
    (folder / "data").mkdir(parents=True)
    _dataset(camp, embed=True).to_parquet(str(folder / "data" / "train-00000-of-00001.parquet"))
    images = read_images(folder)
    table = read_images(camp / "images.jsonl")
    for got, want in zip(images.paths, table.paths, strict=True):
        assert got.parent.parent == tmp_path / "cache" / "images"
        assert got.read_bytes() == want.read_bytes()
    stamp = [p.stat().st_mtime_ns for p in images.paths]
    assert [p.stat().st_mtime_ns for p in read_images(folder).paths] == stamp  # not rewritten
    _same_result(
        aggregate(images, camp / "responses.jsonl"), aggregate(table, camp / "responses.jsonl")
    )


def test_other_columns_and_splits(camp, tmp_path):
    from datasets import DatasetDict

    folder = tmp_path / "dd"
    ds = _dataset(camp, embed=True, names=("uid", "caption", "img"))
    DatasetDict({"test": ds}).save_to_disk(str(folder))
    with pytest.raises(InputError, match=r"no split 'train' \(splits: test\); .* --split"):
        read_images(folder)
    with pytest.raises(InputError, match=r"no column 'image_id' .* --id-column"):
        read_images(folder, columns=ImageColumns(split="test"))
    cols = ImageColumns(image="img", prompt="caption", image_id="uid", split="test")
    assert read_images(folder, columns=cols).ids == read_images(camp / "images.jsonl").ids


def test_the_command_and_the_manifest(camp, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RFENGINE_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "pq"
    folder.mkdir()
    _dataset(camp, embed=True, names=("uid", "prompt", "picture")).to_parquet(
        str(folder / "part.parquet")
    )
    out = tmp_path / "out"
    assert (
        main(
            [
                "aggregate",
                "--images",
                str(folder),
                "--responses",
                str(camp / "responses.jsonl"),
                "--out",
                str(out),
                "--id-column",
                "uid",
                "--image-column",
                "picture",
                "--quiet",
            ]
        )
        == 0
    )
    manifest = json.loads((out / "manifest.json").read_text())
    first = manifest["inputs"][0]
    assert first["path"] == str(folder.resolve()) and len(first["sha256"]) == 64
    assert (
        main(
            [
                "aggregate",
                "--images",
                str(tmp_path / "empty-dir"),
                "--responses",
                str(camp / "responses.jsonl"),
                "--out",
                str(tmp_path / "o2"),
            ]
        )
        == 1
    )
    (tmp_path / "empty-dir").mkdir()
    assert (
        main(
            [
                "aggregate",
                "--images",
                str(tmp_path / "empty-dir"),
                "--responses",
                str(camp / "responses.jsonl"),
                "--out",
                str(tmp_path / "o2"),
            ]
        )
        == 1
    )
    assert "must be a datasets save_to_disk folder or hold Parquet files" in (
        capsys.readouterr().err
    )


def test_a_hub_dataset_that_cannot_be_fetched_is_one_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InputError, match=r"hf://datasets/org/none: cannot fetch the dataset"):
        read_images("hf://datasets/org/none")
    with pytest.raises(InputError, match="expected hf://datasets/ORG/NAME"):
        read_images("hf://datasets/nope")
