"""The Ray engine's overhead on one machine, and a model of a cluster run.

Measured, side by side in one run on the same ~1M-response synthetic campaign (the seed's
shape: ~19 responses per image and task, 128x128 targets only): ``rfengine aggregate``
with ``--engine local`` and with ``--engine ray`` (a local Ray runtime started and stopped
by the command, as a user would run it), each in a child process; their outputs are
compared file by file (sha256). Ray's start and stop alone are timed too.

Modelled (assumptions written into the JSON next to the numbers): a cluster of N nodes
re-aggregating M images at 512x512, from the per-partition times measured here:

    T ≈ read / N + shuffle_bytes / (N · link) + M · per_image_512 / N
        + M · bytes_per_image / (N · disk) + finalize(M)

    python benchmarks/scale.py [--images 8800] [--nodes 10] [--model-images 1000000]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import synthetic
from ingest import aggregate_cmd, run_child

RESULTS = Path(__file__).parent / "results"


def _digest(out: Path) -> dict[str, str]:
    return {
        str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name != "manifest.json"
    }


def _ray_start_stop() -> float:
    import ray

    t0 = time.perf_counter()
    ray.init(include_dashboard=False, logging_level="ERROR")
    ray.get(ray.remote(lambda: 1).remote())
    ray.shutdown()
    return time.perf_counter() - t0


def _splat_ms_512() -> float:
    """The CPU engine's ms/image at 512x512 with 60 clicks, from ``results/heatmaps.json``."""
    report = json.loads((RESULTS / "heatmaps.json").read_text())
    return report["workloads"]["512-60"]["methods"]["engine-default-cpu"]["ms_per_image"]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--images", type=int, default=8_800)
    ap.add_argument("--per-task", type=int, default=19)
    ap.add_argument("--budget", default="512MB")
    ap.add_argument("--nodes", type=int, default=10)
    ap.add_argument("--model-images", type=int, default=1_000_000)
    ap.add_argument("--json", type=Path, default=RESULTS / "scale.json")
    args = ap.parse_args()
    runs = {}
    with tempfile.TemporaryDirectory(prefix="rfengine-scale-") as tmp:
        root = Path(tmp)
        ip, files, rows, arrow_bytes = synthetic.write_campaign(root, args.images, args.per_task)
        digests = {}
        for engine in ("local", "ray"):
            out = root / engine
            extra = ["--memory-budget", args.budget, "--outputs", "targets", "--engine", engine]
            secs, rss, code = run_child(aggregate_cmd(ip, files, out, extra))
            if code:
                raise SystemExit(f"--engine {engine} failed with exit code {code}")
            m = json.loads((out / "manifest.json").read_text())
            runs[engine] = {
                "wall_s": round(secs, 2),
                "peak_rss_driver_gb": round(rss / 1e9, 3),
                "stages_s": m["run"]["timings_s"],
                "partitions": m["partitions"],
            }
            digests[engine] = _digest(out)
            out_bytes = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    start_stop = _ray_start_stop()
    local, on_ray = runs["local"], runs["ray"]
    n_parts = local["partitions"]["count"]
    t = local["stages_s"]
    per_part = (t["aggregate_write"]) / n_parts
    # the model: per-image figures at 512x512 from this machine's measurements
    assumptions = {
        "node": "like this machine: 2 CPU cores, its measured splat rate at 512x512",
        # two kinds, default preset, 60 clicks: as heatmaps.py last measured it
        "per_image_splat_512_ms": 2 * _splat_ms_512(),
        "bytes_per_image_512_per_format": 2 * 512 * 512 * 2,  # 2 kinds, float16
        "disk_write_gbps_per_node": 0.5,  # this disk measured 0.29-1.5 GB/s synced (dd)
        "link_gbps": 1.25,  # 10 Gb/s between nodes
        "responses_per_image": 6 * args.per_task,
        "read_s_per_million_responses": round(t["read_partition"] / rows * 1e6, 2),
        "finalize_s_per_image": round(t["finalize"] / args.images, 6),
    }
    m_img, n = args.model_images, args.nodes
    responses = m_img * assumptions["responses_per_image"]
    shuffle_gb = arrow_bytes / rows * responses / 1e9
    model = {
        "images": m_img,
        "nodes": n,
        "read_s": assumptions["read_s_per_million_responses"] * responses / 1e6 / n,
        "shuffle_gb": round(shuffle_gb, 2),
        "shuffle_s": shuffle_gb / (n * assumptions["link_gbps"]),
        "splat_s": m_img * assumptions["per_image_splat_512_ms"] / 1e3 / n,
        # each node writes its partitions' dataset parts and shards (both formats)
        "write_tb": round(2 * m_img * assumptions["bytes_per_image_512_per_format"] / 1e12, 2),
        "write_s": 2
        * m_img
        * assumptions["bytes_per_image_512_per_format"]
        / 1e9
        / (n * assumptions["disk_write_gbps_per_node"]),
        # the driver alone: save_to_disk rewrites the dataset's bytes once (not with
        # --outputs targets), plus the per-image bookkeeping measured here
        "finalize_dataset_s": m_img
        * assumptions["bytes_per_image_512_per_format"]
        / 1e9
        / assumptions["disk_write_gbps_per_node"],
        "finalize_s": assumptions["finalize_s_per_image"] * m_img,
    }
    model["total_h"] = round(sum(v for k, v in model.items() if k.endswith("_s")) / 3600, 2)
    model = {
        k: round(v, 1) if isinstance(v, float) and k.endswith("_s") else v for k, v in model.items()
    }
    report = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.processor()}".strip(),
        "cpus": os.cpu_count(),
        "images": args.images,
        "responses": rows,
        "heatmap_size": "128x128",
        "outputs": "targets",
        "output_gb": round(out_bytes / 1e9, 3),
        "runs": runs,
        "ray_overhead_ratio": round(on_ray["wall_s"] / local["wall_s"], 3),
        "ray_start_stop_s": round(start_stop, 2),
        "identical_outputs": digests["local"] == digests["ray"],
        "local_seconds_per_partition": round(per_part, 3),
        "model": model,
        "assumptions": assumptions,
    }
    print(json.dumps(report, indent=2))
    args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
