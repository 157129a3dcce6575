"""``--preset rapidata-2025`` reproduces the published dataset's method, quirks included.

Clicks come from Rapidata results in percent (the 2025 script's input), go through
``import-rapidata`` and ``aggregate``, and are compared with a transcription of the script
(``reference.ref_rapidata_heatmap``) and the published columns' conventions.
"""

import json

import datasets
import numpy as np
import pytest
from fixtures import write_jsonl
from reference import ref_rapidata_heatmap

from rfengine import aggregate, aggregate_to_disk, load_output, save_output
from rfengine.cli import main
from rfengine.store.dataset import PUBLISHED_ORDER

SIZES = [(256, 256), (200, 120), (97, 131)]  # (W, H)
PROMPT = "a red car beside two green trees"


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    """Images, and Rapidata 2.x-style results whose locations are percent values, some on
    whole native pixels and whole percents (where float32 snapping and int(y) bite)."""
    root = tmp_path_factory.mktemp("rp")
    rng = np.random.default_rng(7)
    images, clicks = [], {}
    for k in range(9):
        w, h = SIZES[k % 3]
        images.append({"image_id": f"im{k}", "prompt": PROMPT, "width": w, "height": h})
        anns = []
        for a in range(int(rng.integers(2, 6))):
            n = 0 if (k == 4 and a == 1) else int(rng.integers(1, 4))  # image 4: NaN map
            pts = []
            for _ in range(n):
                if rng.random() < 0.4:  # on a whole pixel: x = i / W * 100 percent
                    x = float(rng.integers(0, w)) / w * 100
                    y = float(rng.integers(0, 100))  # a whole percent, e.g. 29
                else:
                    x, y = (float(np.round(v, 3)) for v in rng.uniform(0, 100, 2))
                pts.append({"x": x, "y": y})
            anns.append(pts)
        clicks[f"im{k}"] = anns
    ip = write_jsonl(root / "images.jsonl", images)
    jobs = []
    for task in ("coherence_points", "alignment_points"):
        results = [
            {
                "originalFileName": im["image_id"],
                "detailedResults": [
                    {"userId": f"u{a}", "userDetails": {"userScore": 0.5 + a / 10}, "location": p}
                    for a, p in enumerate(clicks[im["image_id"]])
                ],
            }
            for im in images
        ]
        path = root / f"{task}.json"
        path.write_text(json.dumps({"results": {"data": results}}))
        jobs.append(f"{task}={path}")
    words, style = [], []
    for k, im in enumerate(images):
        for a in range(3):
            sel = [int(rng.integers(0, 7))] if (k + a) % 3 else []
            words.append({"userId": f"u{a}", "selectedWords": sel, "img": im["image_id"]})
            style.append(
                {"userId": f"u{a}", "rating": int(rng.integers(1, 6)), "img": im["image_id"]}
            )
    tokens = PROMPT.split() + ["[No_Mistake]"]
    for task, recs in (("words", words), ("style", style)):
        results = [
            {
                "originalFileName": im["image_id"],
                "detailedResults": [
                    {"userId": r["userId"], "userDetails": {"userScore": 0.9}}
                    | (
                        {
                            "selectedWords": [
                                {"word": tokens[i], "wordIndex": i} for i in r["selectedWords"]
                            ]
                        }
                        if task == "words"
                        else {"selectedCategory": f"{r['rating']}: x"}
                    )
                    for r in recs
                    if r["img"] == im["image_id"]
                ],
            }
            for im in images
        ]
        path = root / f"{task}.json"
        path.write_text(json.dumps({"results": {"data": results}}))
        jobs.append(f"{task}={path}")
    resp = root / "responses.jsonl"
    assert main(["import-rapidata", "--images", str(ip), "--out", str(resp), *jobs]) == 0
    return root, images, clicks, ip, resp


def test_heatmaps_equal_rapidatas_script(campaign):
    _, images, clicks, ip, resp = campaign
    res = aggregate(ip, resp, preset="rapidata-2025", dtype="float32")
    nan_images = 0
    for kind in ("coherence", "alignment"):
        for k, im in enumerate(images):
            ref = ref_rapidata_heatmap(clicks[im["image_id"]], im["width"], im["height"])
            got = res.heatmaps[kind][k]
            assert np.isnan(got).all() == np.isnan(ref).all()
            nan_images += np.isnan(ref).all()
            np.testing.assert_allclose(got, ref, atol=1e-6)  # float32 of the same maps
    assert nan_images == 2  # image 4, both kinds
    f16 = aggregate(ip, resp, preset="rapidata-2025")
    ref = ref_rapidata_heatmap(clicks["im0"], 256, 256)
    np.testing.assert_allclose(f16.heatmaps["coherence"][0], ref, atol=5e-4)  # float16


def test_norms_are_the_runs_min_max(campaign):
    _, _, _, ip, resp = campaign
    res = aggregate(ip, resp, preset="rapidata-2025")
    s = res.scores["style"].score
    lo, hi = np.nanmin(s), np.nanmax(s)
    np.testing.assert_allclose(res.score_norm("style"), (s - lo) / (hi - lo), rtol=1e-15)
    assert np.nanmin(res.score_norm("style")) == 0 and np.nanmax(res.score_norm("style")) == 1
    default = aggregate(ip, resp)
    np.testing.assert_array_equal(default.score_norm("style"), (s - 1) / 4)


def test_published_columns_and_rounding(campaign, tmp_path):
    _, _, _, ip, resp = campaign
    out = save_output(aggregate(ip, resp, preset="rapidata-2025"), tmp_path / "o")
    ds = datasets.load_from_disk(str(out / "dataset"))
    published = [c for c in PUBLISHED_ORDER if c != "image"]  # no image paths here
    assert ds.column_names[: len(published)] == published
    for text in ds["word_scores"]:
        if text is None:
            continue
        for _, v in json.loads(text):
            assert v == round(v, 4) and (v != 0 or isinstance(v, int))


def test_streaming_gives_the_same_columns(campaign, tmp_path):
    _, _, _, ip, resp = campaign
    one = save_output(aggregate(ip, resp, preset="rapidata-2025"), tmp_path / "mem")
    m = aggregate_to_disk(
        ip, resp, tmp_path / "disk", preset="rapidata-2025", memory_budget="600KB"
    )
    assert m["partitions"]["count"] > 1
    a, b = load_output(one).dataset.data.table, load_output(tmp_path / "disk").dataset.data.table
    assert a.schema == b.schema
    for name in a.column_names:
        x, y = a[name].combine_chunks(), b[name].combine_chunks()
        if name.endswith("_heatmap"):  # NaN maps: Arrow's equality says NaN != NaN
            assert x.is_null().equals(y.is_null())
            fx, fy = x.flatten().flatten().to_numpy(), y.flatten().flatten().to_numpy()
            np.testing.assert_array_equal(fx, fy)  # NaN where NaN
        else:
            assert x.equals(y), name
