"""Drawn regions through Label Studio: brush masks decode as the SDK's own decoder decodes
them (``label_studio_sdk.converter.brush.decode_rle``, run in Label Studio's environment),
and brush and polygon annotations posted to a real server, exported by rfengine, imported
and aggregated, equal a float64 reference computed from the masks and polygons as posted.
"""

from __future__ import annotations

import json

import ls_server
import numpy as np
import pytest
from PIL import Image
from reference import ref_region_heatmap

from rfengine import aggregate
from rfengine.frontends.config import load_config
from rfengine.frontends.labelstudio.client import LabelStudio
from rfengine.frontends.labelstudio.importer import import_labelstudio
from rfengine.frontends.labelstudio.labeling import stage_two_config, task_data
from rfengine.frontends.labelstudio.results import decode_rle
from rfengine.ingest import read_images
from rfengine.ingest.regions import mask_counts

pytestmark = pytest.mark.slow

ENCODE = """
import numpy as np
from label_studio_sdk.converter.brush import mask2rle
out = [mask2rle(np.array(m, dtype=np.uint8) * 255) for m in data]
"""
DECODE = """
from label_studio_sdk.converter.brush import decode_rle
out = [decode_rle(r).tolist() for r in data]
"""


def _masks(seed: int, shapes: list[tuple[int, int]]) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for h, w in shapes:  # blobs (long runs) and speckle (short runs), as brushes leave them
        m = rng.random((h, w)) < rng.uniform(0.02, 0.6)
        if rng.random() < 0.5:
            yy, xx = np.mgrid[:h, :w]
            m = (yy - h * rng.uniform(0.2, 0.8)) ** 2 + (xx - w * rng.uniform(0.2, 0.8)) ** 2 < (
                rng.uniform(0.1, 0.4) * min(h, w)
            ) ** 2
        m.flat[0] = m.flat[0] or not m.any()
        out.append(m)
    return out


@pytest.fixture(scope="module")
def sdk():
    if ls_server.executable() is None:
        pytest.skip("Label Studio is not installed (.ci/run installs it into .lsvenv)")
    return lambda code, data: ls_server.sdk_call(code, data)


def test_brush_rle_decodes_as_the_sdk_decodes_it(sdk):
    shapes = [(1, 1), (3, 5), (17, 23), (64, 48), (130, 257), (300, 200)]
    masks = _masks(0, shapes)
    rles = sdk(ENCODE, [m.astype(int).tolist() for m in masks])
    theirs = sdk(DECODE, rles)
    for m, rle, ref in zip(masks, rles, theirs, strict=True):
        ours = decode_rle(rle)
        np.testing.assert_array_equal(ours, np.array(ref, dtype=np.uint8))
        np.testing.assert_array_equal(ours.reshape(*m.shape, 4)[:, :, 3] > 0, m)
    with pytest.raises(ValueError, match="ends early"):
        decode_rle(rles[3][: len(rles[3]) // 2])
    with pytest.raises(ValueError, match="list of bytes"):
        decode_rle([1, 2, 300])


IMAGES = [("r0", 48, 32), ("r1", 30, 40)]  # (image_id, width, height)


def _polygon(pts_px: list[tuple[float, float]], w: int, h: int) -> dict:
    return {
        "from_name": "alignment_regions",
        "to_name": "image",
        "type": "polygonlabels",
        "original_width": w,
        "original_height": h,
        "image_rotation": 0,
        "value": {
            "points": [[x / w * 100, y / h * 100] for x, y in pts_px],
            "closed": True,
            "polygonlabels": ["Mismatch area"],
        },
    }


def _brush(rle: list[int], w: int, h: int) -> dict:
    return {
        "from_name": "coherence_regions",
        "to_name": "image",
        "type": "brushlabels",
        "original_width": w,
        "original_height": h,
        "image_rotation": 0,
        "value": {"format": "rle", "rle": rle, "brushlabels": ["Error area"]},
    }


def test_regions_round_trip_a_real_server(label_studio, sdk, tmp_path):
    server = label_studio
    folder = server.root / "regions"
    folder.mkdir()
    rows = []
    for im, w, h in IMAGES:
        Image.new("RGB", (w, h), (90, 140, 200)).save(folder / f"{im}.png")
        rows.append(
            {"image_id": im, "prompt": "a cat", "width": w, "height": h, "path": f"{im}.png"}
        )
    (folder / "images.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    images = read_images(folder / "images.jsonl")
    ls = LabelStudio(server.url, server.token)
    config = {**load_config(None), "regions": "brush"}
    label_config = stage_two_config(config)
    project = ls.create_project("rfengine regions", label_config, "test")
    parsed = server.api("GET", f"/api/projects/{project['id']}/")["parsed_label_config"]
    assert parsed["coherence_regions"]["type"] == "BrushLabels"
    assert parsed["alignment_regions"]["type"] == "BrushLabels"
    urls = [f"/data/local-files/?d=regions/{im}.png" for im, _, _ in IMAGES]
    ls.import_tasks(project["id"], task_data(images, [0, 1], urls, 2, regions=True))
    tasks = {
        t["data"]["image_id"]: t["id"]
        for t in server.api("GET", f"/api/tasks/?project={project['id']}")["tasks"]
    }
    users = [
        server.api("POST", "/api/users/", {"email": f"r{k}@example.com", "username": f"r{k}"})["id"]
        for k in range(3)
    ]
    masks = _masks(1, [(h, w) for _, w, h in IMAGES for _ in range(2)])
    rles = sdk(ENCODE, [m.astype(int).tolist() for m in masks])
    posted = {}  # (image, user) -> the regions as posted, per task
    for i, (im, w, h) in enumerate(IMAGES):
        plans = [
            ([rles[2 * i], rles[2 * i + 1]], [[(2, 3), (w - 3, 4.5), (w / 2, h - 2)]]),
            ([], [[(1, 1), (w - 1, 1), (w - 1, h - 1), (1, h - 1)]]),
            ([], []),  # looked, marked nothing: still an answer in this stage
        ]
        for user, (brushes, polys) in zip(users, plans, strict=True):
            result = [_brush(r, w, h) for r in brushes] + [_polygon(p, w, h) for p in polys]
            server.api(
                "POST",
                f"/api/tasks/{tasks[im]}/annotations/",
                {"result": result, "completed_by": user},
            )
            posted[(im, user)] = (
                [masks[2 * i + k] for k in range(len(brushes))],
                [[(x / w, y / h) for x, y in p] for p in polys],
            )
    export = tmp_path / "export.json"
    export.write_text(json.dumps(ls.export(project["id"])))
    # what the server exported decodes as the SDK decodes it
    exported = [
        r["value"]["rle"]
        for t in json.loads(export.read_text())
        for a in t["annotations"]
        for r in a["result"]
        if r["type"] == "brushlabels"
    ]
    assert len(exported) == 4
    for rle, ref in zip(exported, sdk(DECODE, exported), strict=True):
        np.testing.assert_array_equal(decode_rle(rle), np.array(ref, dtype=np.uint8))
    out = tmp_path / "responses.jsonl"
    summary = import_labelstudio(images, [export], out)
    assert summary["per_task"]["coherence_regions"] == 6
    assert summary["per_task"]["alignment_regions"] == 6
    assert summary["per_task"]["coherence_points"] == 6  # stage two: no points is an answer
    res = aggregate(folder / "images.jsonl", out, device="cpu", dtype="float32")
    for k, (im, w, h) in enumerate(IMAGES):
        coh = [
            ([{"mask": {"counts": mask_counts(m)}} for m in posted[(im, u)][0]], 1.0) for u in users
        ]
        ali = [([{"polygon": p} for p in posted[(im, u)][1]], 1.0) for u in users]
        np.testing.assert_allclose(
            res.heatmaps["coherence_region"][k], ref_region_heatmap(coh, h, w, h, w), atol=1e-6
        )
        np.testing.assert_allclose(
            res.heatmaps["alignment_region"][k], ref_region_heatmap(ali, h, w, h, w), atol=1e-6
        )
