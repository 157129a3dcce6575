"""Region heatmaps at 512x512: rfengine's span kernel (``kernels.raster.region_coverage``)
against a per-region Pillow rasterise-and-average loop, side by side in one run.

Workload (issue 28): per image 20 annotators x 2 polygons of 10-50 vertices (random star-
shaped outlines around a random centre), weights in [0.1, 1]. The kernel is timed from the
same Python lists of vertices to the maps, on the CPU's threads. The Pillow loop draws each
annotator's polygons into an 'L' image (their union) and accumulates the weighted mean in
float64, as a user without rfengine would; both give the same maps up to pixels whose
centre lies on an outline (Pillow fills its outline), which are counted and reported.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from rfengine.kernels.raster import polygon_spans, region_coverage


def workload(n_images: int, seed: int, annotators: int = 20, per: int = 2):
    rng = np.random.default_rng(seed)
    polys, reg_ann, ann_img, ann_w = [], [], [], []
    for n in range(n_images):
        for _ in range(annotators):
            a = len(ann_img)
            ann_img.append(n)
            ann_w.append(float(rng.uniform(0.1, 1.0)))
            for _ in range(per):
                m = int(rng.integers(10, 51))
                c = rng.uniform(0.25, 0.75, 2)
                ang = np.sort(rng.uniform(0, 2 * np.pi, m))
                rad = rng.uniform(0.05, 0.2, m)
                pts = np.clip(c + np.stack([np.cos(ang), np.sin(ang)], 1) * rad[:, None], 0, 1)
                polys.append(pts)
                reg_ann.append(a)
    return polys, np.array(reg_ann), np.array(ann_img), np.array(ann_w)


def pillow_loop(polys, reg_ann, ann_img, ann_w, n_images, size):
    H = W = size
    out = np.zeros((n_images, H, W))
    tot = np.zeros(n_images)
    by_ann: dict[int, list[np.ndarray]] = {}
    for p, a in zip(polys, reg_ann, strict=True):
        by_ann.setdefault(int(a), []).append(p)
    for a, (n, w) in enumerate(zip(ann_img, ann_w, strict=True)):
        img = Image.new("L", (W, H), 0)
        draw = ImageDraw.Draw(img)
        for p in by_ann.get(a, []):  # pixel-centre coordinates: fraction * size - 0.5
            draw.polygon([(x * W - 0.5, y * H - 0.5) for x, y in p], fill=1)
        out[n] += w * np.asarray(img, dtype=np.float64)
        tot[n] += w
    return out / tot[:, None, None]


def kernel(polys, reg_ann, ann_img, ann_w, n_images, size):
    v = torch.tensor(np.concatenate(polys), dtype=torch.float64)
    off = torch.tensor(np.cumsum([0] + [len(p) for p in polys]))
    spans = polygon_spans(v, off, torch.tensor(reg_ann), size, size)
    return region_coverage(
        spans,
        torch.tensor(ann_img),
        torch.tensor(ann_w, dtype=torch.float32),
        (n_images, size, size),
    )


def recovery(n_images: int, seed: int) -> dict:
    """On a simulated campaign with drawn regions (``simulate --regions``), the mean Pearson
    correlation of the point and of the region heatmaps with the planted objects' mask, on
    the same images (trust-weighted, native size)."""
    import tempfile

    import rfengine
    from rfengine.sim.simulate import read_truth, simulate
    from rfengine.store.load import load_dataset
    from rfengine.train.metrics import region_recovery

    with tempfile.TemporaryDirectory() as tmp:
        camp = simulate(Path(tmp) / "camp", n_images, seed, regions=True)
        res = rfengine.aggregate(camp / "images.jsonl", camp / "responses.jsonl", device="cpu")
        rfengine.save_output(res, Path(tmp) / "out")
        got = region_recovery(load_dataset(Path(tmp) / "out"), read_truth(camp / "truth.jsonl"))
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in got.items()}


def best(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = fn()
        times.append(time.perf_counter() - t0)
    return min(times), res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--recovery-images", type=int, default=192)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    w = workload(args.images, seed=0)
    t_pil, ref = best(lambda: pillow_loop(*w, args.images, args.size), args.repeats)
    t_ker, got = best(lambda: kernel(*w, args.images, args.size), args.repeats)
    diff = np.abs(got.double().numpy() - ref)
    res = {
        "machine": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "images": args.images,
        "size": args.size,
        "regions": len(w[0]),
        "pillow_loop_s": round(t_pil, 4),
        "kernel_s": round(t_ker, 4),
        "ratio": round(t_pil / t_ker, 1),
        "pixels_differing": int((diff > 1e-6).sum()),
        "pixels": int(diff.size),
        "max_abs_diff": float(diff.max()),
        "recovery": {
            "images": args.recovery_images,
            **recovery(args.recovery_images, seed=0),
        },
    }
    print(json.dumps(res, indent=1))
    if args.json:
        args.json.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
