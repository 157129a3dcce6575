"""Ingestion at scale: rows/s for JSONL and Parquet, peak RSS against input size, and exactness.

For each size (default 1M, 2M, 4M responses, shuffled over several files) it runs
``rfengine aggregate --heatmap-size 128x128`` in a child process and records the wall time,
the read-and-partition time (from the manifest) and the child's peak RSS (``wait4``). It
then checks that a sample of images comes out bit-identical when the same rows are
aggregated from one small sorted file.

    python benchmarks/ingest.py [--sizes 1e6 2e6 4e6] [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import synthetic

RESULTS = Path(__file__).parent / "results"


_CHILD = """
import atexit, re, sys
def _hwm():
    kb = re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1)
    open(sys.argv[1], "w").write(kb)
atexit.register(_hwm)
from rfengine.cli import main
sys.exit(main(sys.argv[2:]))
"""


def run_child(args: list[str]) -> tuple[float, int, int]:
    """Run ``rfengine`` with ``args``; (seconds, peak RSS bytes, exit code).

    The peak is the child's own VmHWM, read at its exit: ``ru_maxrss`` would also count the
    pages a fork shares with this (large) parent before exec.
    """
    with tempfile.NamedTemporaryFile(suffix=".hwm") as hwm:
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", _CHILD, hwm.name, *args], capture_output=True)
        secs = time.perf_counter() - t0
        if proc.returncode:
            print(proc.stderr.decode(), file=sys.stderr)
        kb = Path(hwm.name).read_text() or "0"
    return secs, int(kb) * 1024, proc.returncode


def aggregate_cmd(images: Path, files: list[Path], out: Path, extra: list[str]) -> list[str]:
    return [
        "aggregate",
        "--images",
        str(images),
        "--responses",
        *map(str, files),
        "--out",
        str(out),
        "--heatmap-size",
        "128x128",
        "--quiet",
        "--overwrite",
        *extra,
    ]


def exact_sample(root: Path, images: list[dict], table: pa.Table, out: Path, k: int = 25) -> bool:
    """Aggregate the rows of ``k`` sampled images from one sorted file; compare exactly."""
    import datasets

    rng = np.random.default_rng(0)
    pick = sorted(rng.choice(len(images), size=min(k, len(images)), replace=False).tolist())
    ids = [images[i]["image_id"] for i in pick]
    sub = table.filter(pc.is_in(table["image_id"], value_set=pa.array(ids)))
    sub = sub.sort_by([("image_id", "ascending"), ("task", "ascending")])
    small = root / "sample"
    small.mkdir(exist_ok=True)
    ip = synthetic.write_images([images[i] for i in pick], small / "images.jsonl")
    rp = synthetic.write_jsonl(sub, small / "responses.jsonl")
    _, _, code = run_child(aggregate_cmd(ip, [rp], small / "out", []))
    big = datasets.load_from_disk(str(out / "dataset")).select(pick).flatten_indices().data.table
    ref = datasets.load_from_disk(str(small / "out" / "dataset")).data.table
    return code == 0 and big.equals(ref)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sizes", type=float, nargs="+", default=[1e6, 2e6, 4e6])
    ap.add_argument("--quick", action="store_true", help="sizes 2e5 and 4e5 only")
    ap.add_argument("--json", type=Path, default=RESULTS / "ingest.json")
    ap.add_argument("--budget", default="512MB")
    args = ap.parse_args()
    sizes = [2e5, 4e5] if args.quick else args.sizes
    per_image_rows = 6 * 20  # 20 responses per task and image
    report = {
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "budget": args.budget,
        "runs": [],
    }
    with tempfile.TemporaryDirectory(prefix="rfengine-ingest-") as tmp:
        root = Path(tmp)
        for n in sizes:
            n_img = max(1, int(n) // per_image_rows)
            images = synthetic.make_images(n_img, [(1024, 1024), (1024, 768), (768, 1344)])
            table = synthetic.make_responses(images, 20)
            ip = synthetic.write_images(images, root / "images.jsonl")
            for fmt in ("jsonl", "parquet"):
                files = synthetic.write_files(table, root / f"in-{fmt}", 4, (fmt,))
                out = root / f"out-{fmt}"
                secs, rss, code = run_child(
                    aggregate_cmd(ip, files, out, ["--memory-budget", args.budget])
                )
                m = json.loads((out / "manifest.json").read_text()) if code == 0 else {}
                read_s = m["run"]["timings_s"].get("read_partition", float("nan"))
                run = {
                    "rows": table.num_rows,
                    "images": n_img,
                    "format": fmt,
                    "exit": code,
                    "wall_s": round(secs, 2),
                    "read_partition_s": read_s,
                    "ingest_rows_per_s": round(table.num_rows / read_s) if read_s else None,
                    "peak_rss_gb": round(rss / 1e9, 3),
                    "bytes": sum(p.stat().st_size for p in files),
                }
                if fmt == "jsonl":
                    run["exact_sample"] = exact_sample(root, images, table, out)
                report["runs"].append(run)
                print(json.dumps(run), flush=True)
            del table
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written {args.json}")


if __name__ == "__main__":
    main()
