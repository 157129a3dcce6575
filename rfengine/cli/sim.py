"""``rfengine simulate`` and ``rfengine demo``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rfengine.cli.common import OVERWRITE_FOLDER, positive


def add_simulate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate",
        help="write a simulated campaign with a known truth",
        description="Draw images with planted defects and simulate annotators of mixed "
        "reliability: DIR/images/, images.jsonl, responses.jsonl, truth.jsonl, annotators.jsonl.",
    )
    p.add_argument("--images", type=positive, default=48, help="number of images (default 48)")
    p.add_argument("--out", required=True, type=Path, help="campaign folder to write")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--per-image", type=positive, default=12, help="annotators per image and task (default 12)"
    )
    p.add_argument(
        "--regions",
        action="store_true",
        help="annotators also draw regions around the defects (polygons and brush masks)",
    )
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_FOLDER.format("simulate"))
    p.set_defaults(func=cmd_simulate)


def cmd_simulate(args: argparse.Namespace) -> int:
    from rfengine.sim.simulate import simulate

    out = simulate(
        args.out,
        args.images,
        args.seed,
        args.per_image,
        regions=args.regions,
        overwrite=args.overwrite,
    )
    print(f"rfengine: simulated {args.images} images -> {out}", file=sys.stderr)
    return 0


def add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="simulate a campaign, aggregate it and write the report (no network, no GPU)",
        description="End to end on an embedded simulated campaign: simulate, aggregate "
        "trust-weighted and unweighted, and write an HTML report with recovery figures.",
    )
    p.add_argument(
        "--out", type=Path, default=Path("rfengine-demo"), help="default ./rfengine-demo"
    )
    p.add_argument("--images", type=positive, default=48, help="number of images (default 48)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--device",
        default="auto",
        choices=["auto", "cpu", "cuda"],
        help="auto (default) takes CUDA when torch sees a GPU",
    )
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_FOLDER.format("demo"))
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from rfengine.sim.demo import run_demo

    report, figures = run_demo(
        args.out,
        args.images,
        args.seed,
        args.device,
        progress=not args.quiet,
        overwrite=args.overwrite,
    )
    t, e, u = figures["trust"], figures["estimate"], figures["uniform"]
    print("recovery of the planted truth: given trust | trust estimated from the data | uniform")
    for key, label in (
        ("coherence_peak_distance", "coherence heatmap peak to defect (x side)"),
        ("alignment_peak_distance", "alignment heatmap peak to defect (x side)"),
        ("alignment_spearman", "alignment score rank correlation"),
        ("top_word_accuracy", "top word is the planted wrong word"),
        ("coherence_mask_cc", "coherence point heatmap ~ object mask"),
        ("coherence_region_mask_cc", "coherence region heatmap ~ object mask"),
        ("alignment_mask_cc", "alignment point heatmap ~ object mask"),
        ("alignment_region_mask_cc", "alignment region heatmap ~ object mask"),
    ):
        if key not in t:
            continue
        print(f"  {label:44s} {t[key]:.3f} | {e[key]:.3f} | {u[key]:.3f}")
    print(f"panels: {(Path(args.out) / 'render').resolve()}")
    print(f"report: {report.resolve()}")
    return 0
