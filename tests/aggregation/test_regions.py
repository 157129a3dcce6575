"""Region heatmaps end to end: the aggregated maps equal a float64 reference written in
``reference.py``; their columns exist exactly when a run has region responses, the same in
memory and partitioned on disk; uncertainty, split-half and softening."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fixtures import DEVICES, write_jsonl
from reference import ref_region_heatmap
from safetensors import safe_open

import rfengine
from rfengine.ingest.regions import mask_counts
from rfengine.store.load import load_dataset

IMAGES = [
    {"image_id": "a", "prompt": "a red cube", "width": 24, "height": 16},
    {"image_id": "b", "prompt": "two blue dogs", "width": 12, "height": 20},
    {"image_id": "c", "prompt": "a cat", "width": 16, "height": 16},
]


def _campaign(seed: int) -> list[dict]:
    """Random region responses on images a and b (polygons, masks, none), and ratings on c."""
    rng = np.random.default_rng(seed)
    rows = []
    for im in IMAGES[:2]:
        h, w = im["height"], im["width"]
        for task in ("coherence_regions", "alignment_regions"):
            for a in range(int(rng.integers(2, 6))):
                regions = []
                for _ in range(int(rng.integers(0, 3))):
                    if rng.random() < 0.5:  # a star around its centre: a simple polygon
                        m = int(rng.integers(3, 9))
                        ang = (np.arange(m) + rng.uniform(0, 0.5, m)) / m * 2 * np.pi
                        c = rng.uniform(0.3, 0.7, 2)
                        rad = rng.uniform(0.05, 0.3, m)
                        pts = c + np.stack([np.cos(ang), np.sin(ang)], 1) * rad[:, None]
                        regions.append({"polygon": np.clip(pts, 0, 1).round(4).tolist()})
                    else:
                        mask = rng.random((h, w)) < 0.3
                        mask[0, 0] = True
                        regions.append({"mask": {"size": [h, w], "counts": mask_counts(mask)}})
                rows.append(
                    {
                        "image_id": im["image_id"],
                        "annotator_id": f"u{a}",
                        "task": task,
                        "weight": float(rng.choice([0.0, 0.25, 1.0, 3.0])),
                        "regions": regions,
                    }
                )
    rows.append({"image_id": "c", "annotator_id": "u1", "task": "style", "rating": 3})
    return [rows[k] for k in rng.permutation(len(rows))]


def _reference(rows, kind, im, hw):
    task = f"{kind}s"
    ann = [
        (r["regions"], r["weight"])
        for r in rows
        if r["image_id"] == im["image_id"] and r["task"] == task
    ]
    H, W = hw or (im["height"], im["width"])
    return ref_region_heatmap(ann, im["height"], im["width"], H, W)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("hw", [None, (9, 14)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_region_heatmaps_equal_the_float64_reference(tmp_path, device, hw, seed):
    rows = _campaign(seed)
    images = write_jsonl(tmp_path / "images.jsonl", IMAGES)
    resp = write_jsonl(tmp_path / "r.jsonl", rows)
    size = "native" if hw is None else f"{hw[0]}x{hw[1]}"
    res = rfengine.aggregate(images, resp, heatmap_size=size, dtype="float32", device=device)
    for kind in ("coherence_region", "alignment_region"):
        for k, im in enumerate(IMAGES):
            ref = _reference(rows, kind, im, hw)
            got = res.heatmaps[kind][k]
            if ref is None:
                assert got is None
            else:
                np.testing.assert_allclose(got, ref, rtol=0, atol=2e-7)
        task_rows = [r for r in rows if r["task"] == f"{kind}s"]
        for k, im in enumerate(IMAGES):
            w = np.array([r["weight"] for r in task_rows if r["image_id"] == im["image_id"]])
            want = w.sum() ** 2 / (w**2).sum() if w.size and (w**2).sum() > 0 else np.nan
            np.testing.assert_allclose(res.region_n_eff[kind][k], want, equal_nan=True)


def test_without_region_responses_there_are_no_region_columns(tmp_path):
    rows = [r for r in _campaign(0) if "regions" not in r]
    res = rfengine.aggregate(
        write_jsonl(tmp_path / "i.jsonl", IMAGES), write_jsonl(tmp_path / "r.jsonl", rows)
    )
    assert set(res.heatmaps) == {"coherence", "alignment"} and not res.region_n_eff


def test_partitioned_run_equals_the_in_memory_one(tmp_path):
    """Partitions without region responses still write the region columns (nulls), so the
    dataset's parts agree; the maps equal the in-memory aggregation's."""
    rows = _campaign(3)
    images = write_jsonl(tmp_path / "images.jsonl", IMAGES)
    resp = write_jsonl(tmp_path / "r.jsonl", rows)
    mem = rfengine.aggregate(images, resp, heatmap_size="8x8", dtype="float32", reliability=True)
    out = tmp_path / "out"
    rfengine.aggregate_to_disk(
        images,
        resp,
        out,
        heatmap_size="8x8",
        dtype="float32",
        reliability=True,
        memory_budget=2 * 8 * 8 * 8,  # one image per partition: image c has no regions
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["partitions"]["count"] == 3
    ds = load_dataset(out)
    for kind in ("coherence_region", "alignment_region"):
        for k in range(3):
            got, want = ds[k][f"{kind}_heatmap"], mem.heatmaps[kind][k]
            assert (got is None) == (want is None)
            if want is not None:
                np.testing.assert_array_equal(np.asarray(got), want)
        n_eff = np.array([np.nan if v is None else v for v in ds[f"{kind}_n_eff"]], dtype=float)
        np.testing.assert_allclose(n_eff, mem.region_n_eff[kind], rtol=1e-6, equal_nan=True)
        assert f"{kind}_heatmap_reliability" in ds.column_names
        assert f"{kind}_heatmap" in manifest["reliability"]
    present = {}
    for shard in (out / "targets").glob("*.safetensors"):  # one per partition
        with safe_open(shard, "pt") as fh:
            rows, mask = fh.get_tensor("row"), fh.get_tensor("coherence_region_mask")
            present |= dict(zip(rows.tolist(), mask.tolist(), strict=True))
            assert fh.get_tensor("coherence_region_heatmap").shape[1:] == (8, 8)
    assert [present[k] for k in range(3)] == [
        m is not None for m in mem.heatmaps["coherence_region"]
    ]


def test_soft_edges_blur_the_share_and_keep_it_in_range(tmp_path):
    rows = _campaign(4)
    images = write_jsonl(tmp_path / "images.jsonl", IMAGES)
    resp = write_jsonl(tmp_path / "r.jsonl", rows)
    sharp = rfengine.aggregate(images, resp, heatmap_size="32x32", dtype="float32")
    soft = rfengine.aggregate(
        images, resp, heatmap_size="32x32", dtype="float32", region_sigma=0.05
    )
    from scipy.ndimage import gaussian_filter

    for k in range(2):
        m = sharp.heatmaps["coherence_region"][k]
        if m is None:
            continue
        ref = gaussian_filter(m.astype(np.float64), 0.05 * 32, mode="nearest", truncate=3.0)
        s = soft.heatmaps["coherence_region"][k]
        np.testing.assert_allclose(s, ref, atol=1e-5)
        assert s.min() >= -1e-6 and s.max() <= m.max() + 1e-6
    with pytest.raises(ValueError, match="region sigma"):
        rfengine.AggregateOptions.create(region_sigma=2)
