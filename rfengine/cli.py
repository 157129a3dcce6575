"""The ``rfengine`` command line: argument parsing and reporting only."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from rfengine.errors import InputError


def _add_aggregate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "aggregate",
        help="aggregate responses into scores, word scores and heatmaps",
        description="Aggregate responses (interchange format) into OUT/dataset (Hugging Face), "
        "OUT/targets (safetensors) and OUT/manifest.json.",
    )
    p.add_argument("--images", required=True, type=Path, help="images table (JSONL, CSV, Parquet)")
    p.add_argument(
        "--responses", required=True, nargs="+", type=Path, metavar="RESP", help="responses files"
    )
    p.add_argument("--out", required=True, type=Path, help="output folder (written atomically)")
    p.add_argument("--preset", choices=["default", "rapidata-2025"], default="default")
    p.add_argument(
        "--heatmap-size", default="native", help="'native' (default) or HxW, e.g. 512x512"
    )
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--dtype", default="float16", choices=["float16", "float32"])
    p.add_argument(
        "--on-error",
        default="fail",
        choices=["fail", "skip"],
        help="fail on the first bad row (default) or skip bad rows into OUT/rejected.jsonl",
    )
    p.add_argument("--memory-budget", default="512MB", help="heatmap buffer budget (e.g. 1GB)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=cmd_aggregate)


def cmd_aggregate(args: argparse.Namespace) -> int:
    from rfengine.aggregate import aggregate

    t0 = time.perf_counter()
    progress = not args.quiet
    result = aggregate(
        args.images,
        args.responses,
        preset=args.preset,
        heatmap_size=args.heatmap_size,
        device=args.device,
        dtype=args.dtype,
        on_error=args.on_error,
        memory_budget=args.memory_budget,
        progress=progress,
    )
    out = result.save(args.out, overwrite=args.overwrite, progress=progress)
    s = result.stats
    if not args.quiet:
        print(
            f"rfengine: {len(result.images)} images, {s.read} rows read "
            f"({s.used} used, {s.rejected} rejected) -> {out} in {time.perf_counter() - t0:.1f} s",
            file=sys.stderr,
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rfengine",
        description="Aggregate rich human feedback on text-to-image generation.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_aggregate(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: returns 0 on success, 1 on bad input or a failed run, 2 on usage errors."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (InputError, FileExistsError, FileNotFoundError, ValueError) as exc:
        print(f"rfengine: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("rfengine: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
