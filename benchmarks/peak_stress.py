"""Is each annotator's map normalised by its exact grid maximum at the sizes images come in?

    python benchmarks/peak_stress.py [--rev REV] [--seeds 1 2 3] [--float32] [--json PATH]

Batches of 48 images with one annotator each (1-3 clicks around a random point, spread
up to a fifth of the image: merged, flat and truncation-edge configurations), at 300, 512
and 1024 px (``default`` also at 3:4 and resampled to 256x200), six batches per size and
seed, in float64 (or float32, as the engine runs), every annotator with scale 1: each
image's heatmap is then that annotator's normalised map, whose maximum must be 1. A
maximum above 1 means the kernel's peak search stopped below the grid maximum. Reported
per preset: batches and annotators checked, those off by more than the tolerance (1e-12;
float32: 4 ulp of 1), and the worst error. ``--rev`` runs the kernel as it was at a git
revision (``compare_kernels.load_revision``) instead of the working tree's.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import rfengine.kernels.splat as splat_module
import torch
from compare_kernels import load_revision
from heatmaps import splat_call

SIZES = (300, 512, 1024)
BATCHES = 6
IMAGES = 48
TOL = {torch.float64: 1e-12, torch.float32: 4 * torch.finfo(torch.float32).eps}


def stress(module, preset: str, seed: int, dtype: torch.dtype = torch.float64) -> dict:
    """One seed's batches of ``preset``: counts and the worst error of the maps' maxima."""
    gen = torch.Generator().manual_seed(seed)
    out = {"batches": 0, "batches_off": 0, "annotators": 0, "annotators_off": 0, "worst": 0.0}
    for side in SIZES:
        for trial in range(BATCHES):
            k = torch.randint(1, 4, (IMAGES,), generator=gen)
            base = torch.rand(IMAGES, 2, generator=gen, dtype=torch.float64)
            spread = torch.rand(IMAGES, generator=gen, dtype=torch.float64) * 0.2
            image = torch.arange(IMAGES).repeat_interleave(k)
            noise = torch.randn(len(image), 2, generator=gen, dtype=torch.float64)
            pts = (base[image] + noise * spread[image, None]).clamp(0, 1)
            w = torch.full((IMAGES,), side)
            h = torch.full((IMAGES,), side * 3 // 4 if preset == "default" and trial % 2 else side)
            size = (int(h[0]), int(w[0]))
            if preset == "default" and trial % 3 == 2:
                size = (256, 200)
            ones = torch.ones(IMAGES, dtype=dtype)
            px, py = pts[:, 0].to(dtype), pts[:, 1].to(dtype)
            args = (px, py, image, image, torch.arange(IMAGES), ones, w, h, size)
            err = (splat_call(module, args, preset=preset).amax((1, 2)) - 1).abs()
            off = int((err > TOL[dtype]).sum())
            out["batches"] += 1
            out["batches_off"] += off > 0
            out["annotators"] += IMAGES
            out["annotators_off"] += off
            out["worst"] = max(out["worst"], float(err.max()))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rev", help="the kernel at this git revision (default: the working tree)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--float32", action="store_true", help="compute in float32")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        module = load_revision(args.rev, Path(tmp)) if args.rev else splat_module
        dtype = torch.float32 if args.float32 else torch.float64
        report: dict = {
            "rev": args.rev or "working tree",
            "dtype": str(dtype),
            "seeds": args.seeds,
            "presets": {},
        }
        for preset in ("default", "rapidata-2025"):
            runs = [stress(module, preset, seed, dtype) for seed in args.seeds]
            total = {key: sum(r[key] for r in runs) for key in runs[0] if key != "worst"}
            total["worst"] = max(r["worst"] for r in runs)
            report["presets"][preset] = total
            print(preset, total, flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
