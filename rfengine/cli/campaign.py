"""The Rapidata front-end's commands: ``import-rapidata`` and ``campaign`` (launch, status,
next-stage, fetch)."""

from __future__ import annotations

import argparse
import sys
from contextlib import redirect_stdout
from pathlib import Path

from rfengine.cli.common import OVERWRITE_RESPONSES, UsageError, print_json
from rfengine.schema import TASKS


def add_import(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import-rapidata",
        help="convert Rapidata job results into the responses format",
        description="Convert the results JSON of Rapidata jobs (rapidata 3.x download or "
        "get_results(), or the 2.x layout) into one responses file for rfengine aggregate.",
    )
    p.add_argument("--images", required=True, type=Path, help="images table (paths give names)")
    p.add_argument("--out", required=True, type=Path, help="responses file (.jsonl or .parquet)")
    p.add_argument(
        "--coherence-scale",
        action="store_const",
        const="coherence",
        default="severity",
        help="the coherence job was asked on the coherence scale (5 = coherent); by default "
        "it is taken as error severity, as in the seed (5 = most errors), and flipped",
    )
    p.add_argument(
        "--point-units",
        choices=["percent", "ratio"],
        default="percent",
        help="units of locate coordinates: percent of the image's sides (default; Rapidata's "
        "2025 script read them so) or ratios in [0, 1]",
    )
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_RESPONSES)
    p.add_argument(
        "jobs", nargs="+", metavar="TASK=RESULTS.json", help=f"tasks: {', '.join(TASKS)}"
    )
    p.set_defaults(func=cmd_import)


def cmd_import(args: argparse.Namespace) -> int:
    from rfengine.frontends.rapidata.importer import import_rapidata
    from rfengine.ingest import read_images

    jobs = []
    for spec in args.jobs:
        task, sep, path = spec.partition("=")
        if not sep or task not in TASKS or not path:
            raise UsageError(
                f"expected TASK=RESULTS.json with TASK one of {', '.join(TASKS)}, got {spec!r}"
            )
        jobs.append((task, Path(path)))
    images = read_images(args.images, require_files=False)  # names are matched, not opened
    summary = import_rapidata(
        images, jobs, args.out, args.coherence_scale, args.point_units, overwrite=args.overwrite
    )
    for job in summary["jobs"]:
        extra = []
        if job["no_weight"]:
            extra.append(f"{job['no_weight']} without a trust score (weighted 1.0)")
        if job["no_annotator_id"]:
            extra.append(
                f"{job['no_annotator_id']} without an annotator id (duplicate detection off)"
            )
        tail = f" ({'; '.join(extra)})" if extra else ""
        head = f"rfengine: {job['task']}: {job['rows']} responses from {job['path']}"
        print(f"{head} [{job['layout']}]{tail}", file=sys.stderr)
    print(f"rfengine: {summary['rows']} responses -> {args.out}", file=sys.stderr)
    return 0


def add_campaign(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "campaign",
        help="launch, track and fetch a rich-feedback campaign on Rapidata",
        description="The seed's campaign on Rapidata (needs: pip install 'rfengine[rapidata]'; "
        "credentials from RAPIDATA_CLIENT_ID / RAPIDATA_CLIENT_SECRET or rapidata's "
        "credentials file).",
    )
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    launch = verbs.add_parser("launch", help="create the stage-one jobs (or plan all six)")
    how = launch.add_mutually_exclusive_group(required=True)
    how.add_argument("--images", type=Path, help="images table with paths")
    how.add_argument(
        "--resume",
        type=Path,
        metavar="CAMPAIGN",
        help="continue an interrupted launch from its campaign file; nothing is created twice",
    )
    launch.add_argument("--out", type=Path, help="campaign file to write (with --images)")
    launch.add_argument("--config", type=Path, help="JSON overriding the seed's job settings")
    launch.add_argument(
        "--dry-run", action="store_true", help="print the jobs as JSON; no credentials, no network"
    )
    launch.set_defaults(func=cmd_campaign_launch)
    st = verbs.add_parser("status", help="the state of each job")
    st.add_argument("campaign", type=Path)
    st.set_defaults(func=cmd_campaign_status)
    nxt = verbs.add_parser("next-stage", help="locate jobs for the poorly rated images")
    nxt.add_argument("campaign", type=Path)
    nxt.add_argument("--threshold", type=float, help="score below which an image is located")
    nxt.set_defaults(func=cmd_campaign_next)
    fetch = verbs.add_parser("fetch", help="download results as a responses file")
    fetch.add_argument("campaign", type=Path)
    fetch.add_argument("--out", required=True, type=Path, help="responses (.jsonl or .parquet)")
    fetch.add_argument("--overwrite", action="store_true", help=OVERWRITE_RESPONSES)
    fetch.set_defaults(func=cmd_campaign_fetch)


def cmd_campaign_launch(args: argparse.Namespace) -> int:
    from rfengine.frontends import rapidata as rd

    if args.resume is None and args.out is None and not args.dry_run:
        raise UsageError("campaign launch --images needs --out (the campaign file to write)")
    out = args.resume or args.out
    with redirect_stdout(sys.stderr):  # the SDK prints progress; stdout carries the JSON
        plans = rd.launch(
            args.images,
            out,
            rd.load_config(args.config),
            dry_run=args.dry_run,
            resume=args.resume is not None,
        )
    for warning in dict.fromkeys(w for plan in plans for w in plan["warnings"]):
        print(f"rfengine: warning: {warning}", file=sys.stderr)
    print_json(plans)
    if not args.dry_run:
        print(f"rfengine: stage one launched; campaign file {out}", file=sys.stderr)
    return 0


def cmd_campaign_status(args: argparse.Namespace) -> int:
    from rfengine.frontends import rapidata as rd

    with redirect_stdout(sys.stderr):
        rows = rd.status(rd.Campaign.load(args.campaign))
    print_json(rows)
    return 0


def cmd_campaign_next(args: argparse.Namespace) -> int:
    from rfengine.frontends import rapidata as rd

    with redirect_stdout(sys.stderr):
        plans = rd.next_stage(rd.Campaign.load(args.campaign), threshold=args.threshold)
    print_json(plans)
    return 0


def cmd_campaign_fetch(args: argparse.Namespace) -> int:
    from rfengine.frontends import rapidata as rd

    with redirect_stdout(sys.stderr):
        summary = rd.fetch(rd.Campaign.load(args.campaign), args.out, overwrite=args.overwrite)
    print(f"rfengine: {summary['rows']} responses -> {args.out}", file=sys.stderr)
    return 0
