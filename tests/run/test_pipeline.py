"""The streaming pipeline against the in-memory path, rejections at scale, and resume."""

import json

import datasets
import numpy as np
import pytest
from fixtures import make_rows, same_tensor, write_csv, write_jsonl, write_parquet
from safetensors.torch import load_file

import rfengine.run.local as local
import rfengine.run.pipeline as pipeline
from rfengine import InputError, aggregate, aggregate_to_disk, save_output


def assert_same_output(a, b):
    da = datasets.load_from_disk(str(a / "dataset"))
    db = datasets.load_from_disk(str(b / "dataset"))
    assert da.features == db.features and da.num_rows == db.num_rows
    assert da.data.table.equals(db.data.table)
    ia = json.loads((a / "targets" / "index.json").read_text())
    ib = json.loads((b / "targets" / "index.json").read_text())
    groups = {}
    for idx, root in ((ia, a), (ib, b)):
        for s in idx["shards"]:
            t = load_file(str(root / "targets" / s["file"]))
            groups.setdefault((s["height"], s["width"]), []).append((root, t))
    for key, shards in groups.items():
        cat = {}
        for root, t in shards:
            for name, v in t.items():
                cat.setdefault((root, name), []).append(v)
        for name in shards[0][1]:
            if name.endswith("offsets"):
                continue  # per-shard offsets; the values they index are compared instead
            import torch

            x = torch.cat(cat[(a, name)]) if (a, name) in cat else None
            y = torch.cat(cat[(b, name)]) if (b, name) in cat else None
            assert x is not None and y is not None and same_tensor(x, y), (key, name)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipe")
    images, rows = make_rows(40, seed=9)
    ip = write_jsonl(root / "images.jsonl", images)
    sorted_path = write_jsonl(
        root / "sorted.jsonl", sorted(rows, key=lambda r: (r["image_id"], r["task"]))
    )
    rng = np.random.default_rng(1)
    shuffled = [rows[i] for i in rng.permutation(len(rows))]
    k = len(shuffled) // 3
    files = [
        write_jsonl(root / "a.jsonl", shuffled[:k]),
        write_parquet(root / "b.parquet", shuffled[k : 2 * k], row_group_size=37),
        write_csv(root / "c.csv", shuffled[2 * k :]),
    ]
    return root, ip, sorted_path, files


@pytest.mark.parametrize("size", ["native", "24x32"])
def test_partitioned_equals_in_memory(inputs, tmp_path, size):
    root, ip, sorted_path, files = inputs
    ref = save_output(aggregate(ip, sorted_path, heatmap_size=size), tmp_path / "ref")
    # a tiny budget: several partitions, each chunk split across them
    m = aggregate_to_disk(ip, files, tmp_path / "out", heatmap_size=size, memory_budget="200KB")
    assert m["partitions"]["count"] > 3
    assert_same_output(ref, tmp_path / "out")
    assert (
        m["counts"]["rows_read"]
        == m["counts"]["rows_used"]
        == len(sorted_path.read_text().splitlines())
    )


def test_rejections_are_counted_across_partitions(inputs, tmp_path):
    root, ip, sorted_path, files = inputs
    rows = [json.loads(x) for x in sorted_path.read_text().splitlines()]
    bad = [
        dict(rows[0], rating=9, task="style"),
        dict(rows[5]),
        dict(rows[-1]),
    ]  # 1 bad + 2 duplicates
    extra = write_jsonl(tmp_path / "extra.jsonl", bad)
    with pytest.raises(InputError, match=r"extra.jsonl: line 1: field 'rating'"):
        aggregate_to_disk(ip, [*files, extra], tmp_path / "o1", memory_budget="200KB")
    assert not (tmp_path / "o1").exists()
    m = aggregate_to_disk(
        ip, [*files, extra], tmp_path / "o2", memory_budget="200KB", on_error="skip"
    )
    c = m["counts"]
    assert c["rows_read"] == len(rows) + 3
    assert c["rows_rejected"] == 3 and c["rows_read"] == c["rows_used"] + c["rows_rejected"]
    lines = [json.loads(x) for x in (tmp_path / "o2" / "rejected.jsonl").read_text().splitlines()]
    assert sorted(r["field"] for r in lines) == ["annotator_id", "annotator_id", "rating"]
    assert all("duplicate" in r["reason"] for r in lines if r["field"] == "annotator_id")
    assert c["files"][-1] == {"path": str(extra), "read": 3, "used": 0, "rejected": 3}


def test_resume_reuses_finished_work(inputs, tmp_path, monkeypatch):
    root, ip, sorted_path, files = inputs
    out = tmp_path / "out"
    real = local.compute_part
    calls = []

    def flaky(run, p, *rest):
        calls.append(p)
        if p == 2:
            raise KeyboardInterrupt  # interrupted in the middle of the third partition
        return real(run, p, *rest)

    monkeypatch.setattr(local, "compute_part", flaky)
    with pytest.raises(KeyboardInterrupt):
        aggregate_to_disk(ip, files, out, memory_budget="200KB")
    assert not out.exists() and (tmp_path / ".out.rfengine-work" / "progress.json").exists()

    def no_partition(*a, **k):
        raise AssertionError("the partition stage should have been reused")

    monkeypatch.setattr(local, "compute_part", lambda *a: calls.append(a[1]) or real(*a))
    monkeypatch.setattr(local, "read_partitions", no_partition)
    calls.clear()
    aggregate_to_disk(ip, files, out, memory_budget="200KB", resume=True)
    assert calls[0] == 2  # partitions 0 and 1 were reused
    assert not (tmp_path / ".out.rfengine-work").exists()
    assert_same_output(save_output(aggregate(ip, sorted_path), tmp_path / "ref"), out)


def test_resume_with_changed_inputs_starts_over(inputs, tmp_path, monkeypatch, capsys):
    root, ip, sorted_path, files = inputs
    out = tmp_path / "out"
    monkeypatch.setattr(local, "compute_part", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        aggregate_to_disk(ip, files, out, memory_budget="200KB")
    monkeypatch.undo()
    changed = write_jsonl(
        tmp_path / "changed.jsonl", [json.loads(sorted_path.read_text().splitlines()[0])]
    )
    aggregate_to_disk(
        ip, [*files[:1], changed], out, resume=True, progress=True, memory_budget="200KB"
    )
    assert "(its input tables changed)" in capsys.readouterr().err


def test_resume_after_an_interrupted_finalisation(inputs, tmp_path, monkeypatch):
    root, ip, sorted_path, files = inputs
    out = tmp_path / "out"

    def interrupted(*a, **k):
        raise KeyboardInterrupt  # after the dataset parts were placed, before the shards

    monkeypatch.setattr(pipeline, "finalize_targets", interrupted)
    with pytest.raises(KeyboardInterrupt):
        aggregate_to_disk(ip, files, out, memory_budget="200KB")
    monkeypatch.undo()
    m = aggregate_to_disk(ip, files, out, memory_budget="200KB", resume=True)
    assert m["counts"]["rows_used"] == len(sorted_path.read_text().splitlines())
    assert_same_output(save_output(aggregate(ip, sorted_path), tmp_path / "ref"), out)
