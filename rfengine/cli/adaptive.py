"""``rfengine plan-more``: how many more responses each image needs."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rfengine.cli.common import positive


def add_plan_more(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plan-more",
        help="plan a top-up: more responses only where an estimate is still uncertain",
        description="Read an aggregation output and write, per image and task, how many more "
        "responses bring its interval (or heatmap reliability) within the target; a front-end's "
        "'campaign top-up PLAN' asks for them.",
    )
    p.add_argument("out", type=Path, metavar="OUT", help="an aggregation output folder")
    p.add_argument(
        "--ci-half-width",
        type=float,
        required=True,
        help="target 95%% half-width of each rating score, in Likert points (e.g. 0.25)",
    )
    p.add_argument(
        "--word-ci-half-width",
        type=float,
        default=0.15,
        help="target 95%% half-width of the words' selected shares (default 0.15)",
    )
    p.add_argument(
        "--heatmap-reliability",
        type=float,
        help="target split-half reliability of each heatmap (needs an output aggregated with "
        "--reliability); default: heatmaps are not planned",
    )
    p.add_argument("--max-per-image", type=int, help="at most this many more per image and task")
    p.add_argument(
        "--max-growth",
        type=float,
        help="this round, at most this times the responses an image has (e.g. 1: at most "
        "double), so that the next plan knows the hard images better",
    )
    p.add_argument(
        "--share",
        type=float,
        help="aim at this expected share of images within target (e.g. 0.95), buying "
        "responses where they raise it most, instead of every image to its target",
    )
    p.add_argument("--budget", type=positive, help="at most this many responses in all")
    p.add_argument("--out", dest="plan", required=True, type=Path, help="PLAN (.jsonl or .parquet)")
    p.add_argument(
        "--campaign", type=Path, help="the campaign file to record in the plan (for top-up)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace a plan rfengine wrote")
    p.set_defaults(func=cmd_plan_more)


def cmd_plan_more(args: argparse.Namespace) -> int:
    from rfengine.adaptive.plan import Targets, is_plan, plan_more, write_plan
    from rfengine.store.owned import check_file

    check_file(args.plan, args.overwrite, is_plan, "an rfengine plan")
    targets = Targets(
        args.ci_half_width,
        args.word_ci_half_width,
        args.heatmap_reliability,
        args.max_per_image,
        args.budget,
        args.max_growth,
        args.share,
    )
    table, summary = plan_more(args.out, targets)
    meta = {
        "output": str(args.out.resolve()),
        "campaign": str(args.campaign.resolve()) if args.campaign else None,
        "targets": targets.__dict__,
        "summary": summary,
    }
    write_plan(table, args.plan, meta)
    sys.stdout.write(json.dumps(summary) + "\n")
    for task, s in summary["tasks"].items():
        if s["rows"]:
            print(
                f"rfengine: {task}: {s['within_now']} of {s['rows']} within target now; "
                f"{s['responses_asked']} more responses asked; {s['expected_within']} expected "
                "within after",
                file=sys.stderr,
            )
    print(
        f"rfengine: {summary['responses_asked']} responses asked in all; share within target "
        f"{summary['within_now_share']:.1%} now, {summary['expected_within_share']:.1%} "
        f"expected after (probability-weighted: {summary['expected_share_within']:.1%}) "
        f"-> {args.plan}",
        file=sys.stderr,
    )
    return 0
