"""The splat kernel of the working tree against the one at a git revision, side by side.

    python benchmarks/compare_kernels.py [--rev HEAD] [--workloads 512-60 512-spread 512]
        [--images 64] [--repeats 9] [--json PATH]

Both versions of the splat kernel (``kernels/`` at the revision and in the working tree)
run in one process on the same batches (the workloads of ``heatmaps.py``, one call per
batch as the engine makes them at its default memory budget), alternating, so that the
ratio is not moved by this machine's drift between runs (±15-25%). Reported per workload
and preset: the median ms/image of each and their ratio, and each version's time in its
peak search (``heatmaps.search_breakdown``). Use it for a kernel change before re-running
``heatmaps.py``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from statistics import median
from types import ModuleType

import torch
from heatmaps import engine_batches, make_images, run_engine, search_breakdown

ROOT = Path(__file__).resolve().parent.parent


def load_revision(rev: str, folder: Path) -> ModuleType:
    """The ``splat`` module of ``kernels/`` as it was at ``rev``: the folder's files written
    under ``folder`` as a package of another name, their imports of ``rfengine.kernels``
    pointed into it (so that a revision's ``splat`` uses that revision's other modules)."""
    names = subprocess.run(
        ["git", "-C", str(ROOT), "ls-tree", "--name-only", rev, "kernels/"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    package = folder / "kernels_at_rev"
    package.mkdir()
    for name in names:
        if name.endswith(".py"):
            src = subprocess.run(
                ["git", "-C", str(ROOT), "show", f"{rev}:{name}"],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            (package / Path(name).name).write_text(
                src.replace("rfengine.kernels.", "kernels_at_rev.")
            )
    sys.path.insert(0, str(folder))
    try:
        return importlib.import_module("kernels_at_rev.splat")
    finally:
        sys.path.remove(str(folder))


def timed(mod: ModuleType, batches: list[tuple], preset: str, images: int) -> float:
    """ms/image of one pass of ``mod.splat_heatmaps`` over ``batches``."""
    t0 = time.perf_counter()
    run_engine(batches, preset, mod)
    return (time.perf_counter() - t0) / images * 1000


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rev", default="HEAD")
    ap.add_argument("--workloads", nargs="+", default=["512-60", "512-spread", "512"])
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    from rfengine.kernels import splat as work

    report: dict = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "rev": subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", args.rev],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip(),
        "images_per_call": args.images,
        "results": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        base = load_revision(args.rev, Path(tmp))
        for wl in args.workloads:
            for preset in ("default", "rapidata-2025"):
                batches = engine_batches(make_images(wl, args.images), preset, "cpu")
                for _ in range(2):  # warm-up
                    timed(base, batches, preset, args.images)
                    timed(work, batches, preset, args.images)
                times: dict[str, list[float]] = {"rev": [], "work": []}
                for _ in range(args.repeats):
                    times["rev"].append(timed(base, batches, preset, args.images))
                    times["work"].append(timed(work, batches, preset, args.images))
                med = {k: median(v) for k, v in times.items()}
                row = {
                    "ms_per_image_rev": round(med["rev"], 4),
                    "ms_per_image_work": round(med["work"], 4),
                    "work_over_rev": round(med["work"] / med["rev"], 3),
                    # where each version's call goes (timers around the search functions)
                    "search_rev": search_breakdown(
                        base, partial(run_engine, batches, preset, base)
                    ),
                    "search_work": search_breakdown(
                        work, partial(run_engine, batches, preset, work)
                    ),
                }
                report["results"][f"{wl}/{preset}"] = row
                print(wl, preset, row, flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
