"""Small synthetic campaigns written in the interchange format, with their raw rows kept.

The rows are kept as Python structures so that the float64 references in ``reference.py``
can recompute every number independently of the engine's ingest code.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

#: parametrise tests over devices: the CPU always, CUDA where torch sees a GPU
DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=[
            pytest.mark.cuda,
            pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
        ],
    ),
]

SIZES = [(64, 48), (96, 64), (48, 80), (128, 96), (37, 53), (80, 80)]  # (width, height)
WORDS = "a red cube, two green spheres and one tiny blue pyramid".split()


@dataclass
class Campaign:
    images: list[dict]
    responses: list[dict]
    images_path: Path
    responses_path: Path


def make_rows(n_images: int = 40, seed: int = 0, sizes=SIZES) -> tuple[list[dict], list[dict]]:
    """Images and responses with every edge the semantics define.

    Mixed sizes; 0-3 points per annotator (empty lists included); weights in [0, 1] with
    some exact zeros; one image without any responses, one whose alignment ratings all
    weigh 0, images without point responses (null heatmaps).
    """
    rng = np.random.default_rng(seed)
    images, responses = [], []
    for k in range(n_images):
        w, h = sizes[k % len(sizes)]
        n_words = int(rng.integers(3, len(WORDS) + 1))
        images.append(
            {
                "image_id": f"img{k:03d}",
                "prompt": " ".join(WORDS[:n_words]),
                "width": w,
                "height": h,
            }
        )
        if k == 1:
            continue  # no responses at all
        n_ann = int(rng.integers(3, 9))
        for a in range(n_ann):
            ann = f"ann{int(rng.integers(0, 10_000)):05d}-{a}"
            weight = 0.0 if rng.random() < 0.1 else round(float(rng.random()), 6)
            base = {"image_id": images[-1]["image_id"], "annotator_id": ann, "weight": weight}
            for task in ("style", "coherence", "alignment"):
                if task == "style" and k % 7 == 3:
                    continue  # no style ratings
                wt = 0.0 if (task == "alignment" and k == 2) else weight
                rating = int(rng.integers(1, 6))
                responses.append({**base, "weight": wt, "task": task, "rating": rating})
            for task in ("coherence_points", "alignment_points"):
                if k % 5 == 4 and task == "alignment_points":
                    continue  # no alignment heatmap
                n_pts = int(rng.integers(0, 4))
                pts = [[round(float(v), 6) for v in rng.random(2)] for _ in range(n_pts)]
                if rng.random() < 0.1 and pts:
                    pts[0] = [0.0, 1.0]  # corner clicks
                responses.append({**base, "task": task, "points": pts})
            sel = sorted(set(int(v) for v in rng.integers(0, n_words + 1, int(rng.integers(0, 3)))))
            if len(sel) > 1 and n_words in sel:  # [No_Mistake] never goes with a word
                sel.remove(n_words)
            responses.append({**base, "task": "words", "selected": sel})
    perm = rng.permutation(len(responses))
    return images, [responses[i] for i in perm]


def same_tensor(x, y) -> bool:
    """Equal shapes, dtypes and values, NaN where NaN (torch.equal says NaN != NaN)."""
    import torch

    if x.shape != y.shape or x.dtype != y.dtype:
        return False
    if x.is_floating_point():
        return torch.equal(x.isnan(), y.isnan()) and torch.equal(x.nan_to_num(0), y.nan_to_num(0))
    return torch.equal(x, y)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_csv(path: Path, rows: list[dict]) -> Path:
    cols = ["image_id", "annotator_id", "task", "weight", "rating", "points", "selected"]
    cols += ["regions"] if any("regions" in r for r in rows) else []
    with path.open("w", newline="") as fh:
        wr = csv.DictWriter(fh, fieldnames=cols)
        wr.writeheader()
        for r in rows:
            wr.writerow(
                {
                    c: (
                        json.dumps(r[c])
                        if c in ("points", "selected", "regions") and c in r
                        else r.get(c)
                    )
                    for c in cols
                }
            )
    return path


def write_parquet(path: Path, rows: list[dict], row_group_size: int = 100) -> Path:
    schema = pa.schema(
        [
            ("image_id", pa.string()),
            ("annotator_id", pa.string()),
            ("task", pa.string()),
            ("weight", pa.float64()),
            ("rating", pa.int64()),
            ("points", pa.list_(pa.list_(pa.float64()))),
            ("selected", pa.list_(pa.int64())),
        ]
    )
    if any("regions" in r for r in rows):  # the documented Parquet type of the field
        region = pa.struct(
            [
                ("polygon", pa.list_(pa.list_(pa.float64()))),
                (
                    "mask",
                    pa.struct([("size", pa.list_(pa.int64())), ("counts", pa.list_(pa.int64()))]),
                ),
            ]
        )
        schema = schema.append(pa.field("regions", pa.list_(region)))
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path, row_group_size=row_group_size)
    return path


def make_campaign(folder: Path, n_images: int = 40, seed: int = 0, sizes=SIZES) -> Campaign:
    images, responses = make_rows(n_images, seed, sizes)
    ip = write_jsonl(folder / "images.jsonl", images)
    rp = write_jsonl(folder / "responses.jsonl", responses)
    return Campaign(images, responses, ip, rp)


def by_image(responses: list[dict], task: str) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in responses:
        if r["task"] == task:
            out.setdefault(r["image_id"], []).append(r)
    return out


LIKERT = {
    "style": ["1: Very ugly", "2: Ugly", "3: Neutral", "4: Beautiful", "5: Very beautiful"],
    "coherence": [
        "1: No errors",
        "2: A few errors",
        "3: Some errors",
        "4: Many errors",
        "5: Severe errors",
    ],
    "alignment": ["1: Not at all", "2: A little", "3: Moderately", "4: Very well", "5: Perfectly"],
}


def to_rapidata_results(
    rows: list[dict], images: list[dict], task: str, layout: str = "3.x", with_ids: bool = True
) -> dict:
    """The results JSON a Rapidata job would return for ``rows`` of one task.

    3.x: ``results[]`` with ``userDetails.userScores.global``; 2.x: ``results.data[]`` with
    ``userDetails.userScore``. Coherence labels are on the severity scale (as the seed asks).
    """
    names = {im["image_id"]: Path(im.get("path", im["image_id"])).name for im in images}
    prompts = {im["image_id"]: im["prompt"].split() + ["[No_Mistake]"] for im in images}
    items: dict[str, dict] = {}
    for r in rows:
        if r["task"] != task:
            continue
        item = items.setdefault(
            r["image_id"], {"originalFileName": names[r["image_id"]], "detailedResults": []}
        )
        user = {"country": "CH", "language": "en"}
        if layout == "3.x":
            user["userScores"] = {"global": r["weight"]}
        else:
            user["userScore"] = r["weight"]
        detail: dict = {"userDetails": user}
        if with_ids:
            detail["userId"] = r["annotator_id"]
        if task in LIKERT:
            n = 6 - r["rating"] if task == "coherence" else r["rating"]
            detail["selectedCategory"] = LIKERT[task][n - 1]
        elif task == "words":
            words = prompts[r["image_id"]]
            detail["selectedWords"] = [{"word": words[k], "wordIndex": k} for k in r["selected"]]
        else:
            detail["location"] = [{"x": x * 100, "y": y * 100} for x, y in r["points"]]
        item["detailedResults"].append(detail)
    results = list(items.values())
    if layout == "3.x":
        return {"info": {"type": task, "version": "3.0.0"}, "results": results, "summary": {}}
    return {"results": {"globalAggregatedData": {}, "data": results}}


def cli_aggregate(images: Path, responses: list[Path], out: Path, *extra: str) -> dict:
    """``rfengine aggregate`` through the CLI (quiet); returns the manifest."""
    from rfengine.cli import main

    args = ["aggregate", "--images", str(images), "--responses", *map(str, responses)]
    assert main([*args, "--out", str(out), "--quiet", *extra]) == 0
    return json.loads((out / "manifest.json").read_text())


def interrupt_at_partition(monkeypatch, at: int) -> None:
    """Make the local engine raise KeyboardInterrupt when it starts computing partition
    ``at`` (the ones before it finish and are recorded), as a Ctrl-C would."""
    import rfengine.run.local as local

    real = local.compute_part

    def interrupted(run, p, *rest):
        if p == at:
            raise KeyboardInterrupt
        return real(run, p, *rest)

    monkeypatch.setattr(local, "compute_part", interrupted)
