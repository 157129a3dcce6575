"""What users run against what the kernel benchmark measures (issue 31): the aggregation's
splat stage (``rfengine.aggregation.compute.all_heatmaps``, as ``rfengine aggregate``
calls it) against ``kernels.splat_heatmaps`` on a prepared batch of the same clicks, side
by side in one run, with the FLOP floor at the GEMM rate measured in the same run, and
the CLI's start-up.

Workload: the seed's shape (``heatmaps.py``'s ``512-spread``): 450 images of 512x512, 20
annotators x 3 clicks anywhere, both point tasks, so 900 maps. The kernel side splats each
kind's 450 images in calls of 64 into a reused float32 buffer (``heatmaps.py``'s setting);
the stage side is the engine's own batching, float16 (the default) and float32 outputs,
each into new output blocks (a run's first partition) and into blocks given back by the
previous call (``_pooled``: its later partitions, ``BlockPool``). Timings: the median of
``--repeats`` after one warm-up.

    python benchmarks/engine_stage.py [--images 450] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

import heatmaps as hm
import torch

from rfengine.aggregation.compute import all_heatmaps
from rfengine.aggregation.result import BlockPool
from rfengine.ingest import read_images
from rfengine.ingest.responses import read_responses
from rfengine.options import AggregateOptions


def workload(n: int, tmp: Path):  # noqa: ANN201
    """The images (``heatmaps.make_images`` records) and the same as an images table and
    responses, read by rfengine."""
    ims = hm.make_images("512-spread", n, seed=0)
    rows, table = [], []
    for k, im in enumerate(ims):
        table.append({"image_id": f"i{k}", "prompt": "a cat", "width": im["w"], "height": im["h"]})
        for a, (pts, w) in enumerate(im["annotators"]):
            for task in ("coherence_points", "alignment_points"):
                rows.append({"image_id": f"i{k}", "annotator_id": f"a{a}", "task": task,
                             "weight": w, "points": pts.tolist()})  # fmt: skip
    (tmp / "images.jsonl").write_text("".join(json.dumps(r) + "\n" for r in table))
    (tmp / "responses.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    images = read_images(tmp / "images.jsonl")
    resp, _, _ = read_responses([tmp / "responses.jsonl"], images)
    return ims, images, resp


def timed(fn, repeats: int) -> float:  # noqa: ANN001
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return median(times)


def start_up(args: list[str], repeats: int = 5) -> float:
    """Median wall seconds of ``rfengine ARGS`` in a new process."""
    cmd = [sys.executable, "-m", "rfengine.cli", *args]
    return timed(lambda: subprocess.run(cmd, capture_output=True, check=False), repeats)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=450)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ims, images, resp = workload(args.images, Path(tmp))
    maps = 2 * len(ims)
    chunks = [ims[lo : lo + 64] for lo in range(0, len(ims), 64)]
    batches = [b for c in chunks for b in hm.engine_batches(c, "default", "cpu")]
    kernel = timed(lambda: [hm.run_engine(batches, "default") for _ in range(2)], args.repeats)
    stage = {}
    for dtype in ("float16", "float32"):
        opts = AggregateOptions.create(heatmap_size="512x512", device="cpu", dtype=dtype)
        stage[dtype] = timed(lambda o=opts: all_heatmaps(images, resp, o, o.dtype), args.repeats)
        # as a run's partitions after the first: into the blocks the previous write gave back
        pool = BlockPool()

        def pooled(o: AggregateOptions = opts, pool: BlockPool = pool) -> None:
            pool.give(all_heatmaps(images, resp, o, o.dtype, pool=pool))

        stage[f"{dtype}_pooled"] = timed(pooled, args.repeats)
    gflops = hm.gemm_gflops("cpu")
    clicks = sum(len(p) for im in ims for p, _ in im["annotators"])
    floor = 2 * 2 * clicks * 512 * 512 / (gflops * 1e9)  # both kinds: 2 n H W per image
    res = {
        "machine": platform.machine(),
        "threads": torch.get_num_threads(),
        "maps": maps,
        "kernel_ms_per_map": round(kernel / maps * 1e3, 3),
        **{f"stage_{d}_ms_per_map": round(s / maps * 1e3, 3) for d, s in stage.items()},
        **{f"stage_{d}_to_kernel": round(s / kernel, 2) for d, s in stage.items()},
        "gemm_gflops": round(gflops, 1),
        "flop_floor_ms_per_map": round(floor / maps * 1e3, 3),
        "stage_float32_to_floor": round(stage["float32"] / floor, 2),
        "stage_float32_pooled_to_floor": round(stage["float32_pooled"] / floor, 2),
        "help_s": round(start_up(["--help"]), 3),
        "aggregate_help_s": round(start_up(["aggregate", "--help"]), 3),
    }
    print(json.dumps(res, indent=1))
    if args.json:
        args.json.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
