"""``rfengine aggregate`` at the seed's scale: time per stage and peak RSS.

A synthetic campaign like the published one (13k images, ~1.5M responses: ~19 per image for
each of the six tasks; sizes 1024x1024 and a few other aspect ratios), shuffled over four
JSONL files, aggregated with 256x256 heatmap targets in a child process. Stages are read from
the manifest: read+partition, reduce (scores, words), splat (heatmaps), write (dataset parts
and shards), finalise; peak RSS is the child's own VmHWM.

    python benchmarks/end_to_end.py [--images 13000] [--per-task 19] [--device cpu|cuda]
        [--outputs dataset,targets|targets|dataset] [--weights trust,estimate]

With several ``--weights`` (comma-separated), each runs on the same inputs one after the
other, and the report gives each one's wall time as a ratio to the first (what
``--weights estimate`` costs over a plain aggregate, measured side by side).
"""

from __future__ import annotations

import argparse
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


def disk_write_gbs(folder: Path, gb: float = 2.0, block: int = 64 << 20) -> float:
    """This disk's synced write speed (what ``dd bs=64M conv=fdatasync`` measures): ``gb``
    of incompressible bytes written to ``folder`` and flushed with fdatasync, after a
    ``sync`` (untimed) so that the writeback of what was written before (the inputs, a
    run's output) does not share the disk with the measurement."""
    data = os.urandom(block)
    os.sync()
    path = folder / "disk-speed.bin"
    t0 = time.perf_counter()
    with path.open("wb") as fh:
        for _ in range(int(gb * 1e9) // block):
            fh.write(data)
        fh.flush()
        os.fdatasync(fh.fileno())
    secs = time.perf_counter() - t0
    written = path.stat().st_size
    path.unlink()
    return written / secs / 1e9


def _run(
    args: argparse.Namespace, ip: Path, files: list[Path], out: Path, weights: str, rows: int
) -> dict:
    """One ``rfengine aggregate`` child on the campaign; its report."""
    cmd = aggregate_cmd(
        ip,
        files,
        out,
        [
            "--device", args.device, "--memory-budget", args.budget, "--outputs", args.outputs,
            "--weights", weights,
        ],
    )  # fmt: skip
    cmd[cmd.index("128x128")] = args.size
    secs, rss, code = run_child(cmd)
    if code:
        raise SystemExit(f"aggregate failed with exit code {code}")
    m = json.loads((out / "manifest.json").read_text())
    t = m["run"]["timings_s"]
    stages = {
        "hash_inputs": t["hash"],
        "read_partition": t["read_partition"],
        "estimate": t.get("estimate", 0.0),
        "reduce": t["reduce"],
        "splat": t["splat"],
        "write_parts": round(t["aggregate_write"] - t["reduce"] - t["splat"], 4),
        "finalize": t["finalize"],
    }
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.processor()}".strip(),
        "cpus": os.cpu_count(),
        "device": m["config"]["device"],
        "images": args.images,
        "responses": rows,
        "heatmap_size": args.size,
        "outputs": args.outputs,
        "weights": weights,
        "wall_s": round(secs, 2),
        "peak_rss_gb": round(rss / 1e9, 3),
        "stages_s": stages,
        "partitions": m["partitions"],
        "output_gb": round(size / 1e9, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--images", type=int, default=13_000)
    ap.add_argument("--per-task", type=int, default=19, help="responses per image and task")
    ap.add_argument("--size", default="256x256")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--budget", default="512MB")
    ap.add_argument("--outputs", default="dataset,targets", help="passed to --outputs")
    ap.add_argument("--weights", default="trust", help="comma-separated: run each, compare")
    ap.add_argument("--json", type=Path, default=RESULTS / "end_to_end.json")
    args = ap.parse_args()
    runs = {}
    with tempfile.TemporaryDirectory(prefix="rfengine-e2e-") as tmp:
        root = Path(tmp)
        ip, files, rows, _ = synthetic.write_campaign(root, args.images, args.per_task)
        disk_before = disk_write_gbs(root)
        for weights in args.weights.split(","):
            runs[weights] = _run(args, ip, files, root / f"out-{weights}", weights, rows)
        disk_after = disk_write_gbs(root)
    # the floor: the output's bytes at each synced disk speed (this disk varies a lot)
    for r in runs.values():
        speeds = {"before": disk_before, "after": disk_after}
        r["disk_write_gbs"] = {k: round(v, 3) for k, v in speeds.items()}
        r["write_floor_s"] = {k: round(r["output_gb"] / v, 2) for k, v in speeds.items()}
        r["x_write_floor"] = {
            k: round(r["wall_s"] * v / r["output_gb"], 2) for k, v in speeds.items()
        }
    report = (
        runs[args.weights.split(",")[0]]
        if len(runs) == 1
        else {
            "runs": runs,
            "wall_ratio_to_first": {
                w: round(r["wall_s"] / next(iter(runs.values()))["wall_s"], 3)
                for w, r in runs.items()
            },
        }
    )
    print(json.dumps(report, indent=2))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
