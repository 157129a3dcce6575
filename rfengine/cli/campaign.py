"""The front-ends' commands: ``import-rapidata`` and ``campaign`` (launch, status,
next-stage, fetch) on Rapidata or Label Studio (``--frontend``; later verbs read it from the
campaign file)."""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import redirect_stdout
from pathlib import Path

from rfengine.cli.common import (
    OVERWRITE_RESPONSES,
    UsageError,
    add_coherence_scale,
    add_images_columns,
    image_columns,
    print_json,
)
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
    add_coherence_scale(p)
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
        help="launch, track and fetch a rich-feedback campaign on Rapidata or Label Studio",
        description="The seed's campaign on Rapidata (needs: pip install 'rfengine[rapidata]'; "
        "credentials from RAPIDATA_CLIENT_ID / RAPIDATA_CLIENT_SECRET or rapidata's "
        "credentials file) or on a Label Studio server (--frontend labelstudio; the server "
        "from LABEL_STUDIO_URL, its key from LABEL_STUDIO_API_KEY).",
    )
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    launch = verbs.add_parser("launch", help="create the stage-one jobs (or plan all six)")
    how = launch.add_mutually_exclusive_group(required=True)
    how.add_argument(
        "--images", help="images table with paths, or a dataset (see the column options)"
    )
    how.add_argument(
        "--resume",
        type=Path,
        metavar="CAMPAIGN",
        help="continue an interrupted launch from its campaign file; nothing is created twice",
    )
    launch.add_argument("--out", type=Path, help="campaign file to write (with --images)")
    launch.add_argument("--config", type=Path, help="JSON overriding the seed's job settings")
    launch.add_argument(
        "--frontend",
        choices=["rapidata", "labelstudio"],
        default="rapidata",
        help="where the campaign runs (default rapidata); later verbs read it from the file",
    )
    via = launch.add_mutually_exclusive_group()
    via.add_argument(
        "--local-files-root",
        type=Path,
        metavar="ROOT",
        help="labelstudio: the server's LOCAL_FILES_DOCUMENT_ROOT; the images, in a sub-folder "
        "of it, are served as local files (default: $LOCAL_FILES_DOCUMENT_ROOT)",
    )
    via.add_argument(
        "--image-url-prefix",
        metavar="URL",
        help="labelstudio: the images are at URL + their path relative to the images table "
        "(cloud storage, a web server)",
    )
    launch.add_argument(
        "--regions",
        choices=["brush", "polygon"],
        help="labelstudio: stage two also asks annotators to draw the flawed areas, with a "
        "brush or as polygons (controls coherence_regions, alignment_regions)",
    )
    launch.add_argument(
        "--dry-run", action="store_true", help="print the jobs as JSON; no credentials, no network"
    )
    add_images_columns(launch)
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
    fetch.add_argument(
        "--on-error",
        choices=["fail", "skip"],
        default="fail",
        help="labelstudio: fail on the first bad annotation (default) or leave bad ones out, "
        "into RESPONSES.rejected.jsonl",
    )
    fetch.set_defaults(func=cmd_campaign_fetch)
    top = verbs.add_parser(
        "top-up",
        help="ask for the responses a plan-more plan asks for (a new round)",
        description="Rapidata: a job per task and number of responses still needed, on just "
        "those images. Label Studio: those tasks' overlap raised, back in the labeling stream. "
        "'fetch' then returns every round; one 'aggregate' over them gives the final output.",
    )
    top.add_argument("plan", type=Path, metavar="PLAN", help="a plan written by plan-more")
    top.add_argument(
        "--campaign",
        type=Path,
        help="the campaign file (default: the one plan-more --campaign recorded in the plan)",
    )
    top.add_argument(
        "--dry-run", action="store_true", help="print what would be asked; create nothing"
    )
    top.set_defaults(func=cmd_campaign_top_up)


def _frontend(path: Path):
    """The campaign file and the module of its front-end."""
    from rfengine.frontends.state import Campaign

    campaign = Campaign.load(path)
    if campaign.state.get("frontend", "rapidata") == "labelstudio":
        from rfengine.frontends import labelstudio as mod
    else:
        from rfengine.frontends import rapidata as mod
    return campaign, mod


def _via(args: argparse.Namespace) -> dict | None:
    if args.image_url_prefix:
        return {"mode": "url", "prefix": args.image_url_prefix}
    root = args.local_files_root or os.environ.get("LOCAL_FILES_DOCUMENT_ROOT")
    return {"mode": "local-files", "root": str(Path(root).resolve())} if root else None


def cmd_campaign_launch(args: argparse.Namespace) -> int:
    from rfengine.frontends import rapidata as rd

    if args.resume is None and args.out is None and not args.dry_run:
        raise UsageError("campaign launch --images needs --out (the campaign file to write)")
    out = args.resume or args.out
    frontend = args.frontend
    if args.resume is not None:
        frontend = _frontend(args.resume)[0].state.get("frontend", "rapidata")
    elif frontend == "rapidata" and (
        args.local_files_root or args.image_url_prefix or args.regions
    ):
        raise UsageError(
            "--local-files-root, --image-url-prefix and --regions are for --frontend labelstudio"
        )
    if frontend == "labelstudio":
        from rfengine.frontends import labelstudio as ls

        plans = ls.launch(
            args.images,
            out,
            _via(args),
            rd.load_config(args.config),
            dry_run=args.dry_run,
            resume=args.resume is not None,
            columns=image_columns(args),
            regions=args.regions,
        )
        print_json(plans)
        if not args.dry_run:
            print(
                f"rfengine: stage one created on Label Studio; campaign file {out}", file=sys.stderr
            )
        return 0
    with redirect_stdout(sys.stderr):  # the SDK prints progress; stdout carries the JSON
        plans = rd.launch(
            args.images,
            out,
            rd.load_config(args.config),
            dry_run=args.dry_run,
            resume=args.resume is not None,
            columns=image_columns(args),
        )
    for warning in dict.fromkeys(w for plan in plans for w in plan["warnings"]):
        print(f"rfengine: warning: {warning}", file=sys.stderr)
    print_json(plans)
    if not args.dry_run:
        print(f"rfengine: stage one launched; campaign file {out}", file=sys.stderr)
    return 0


def cmd_campaign_status(args: argparse.Namespace) -> int:
    campaign, mod = _frontend(args.campaign)
    with redirect_stdout(sys.stderr):
        rows = mod.status(campaign)
    print_json(rows)
    return 0


def cmd_campaign_next(args: argparse.Namespace) -> int:
    campaign, mod = _frontend(args.campaign)
    with redirect_stdout(sys.stderr):
        plans = mod.next_stage(campaign, threshold=args.threshold)
    print_json(plans)
    return 0


def cmd_campaign_fetch(args: argparse.Namespace) -> int:
    campaign, mod = _frontend(args.campaign)
    if mod.__name__.endswith("labelstudio"):
        summary = mod.fetch(campaign, args.out, on_error=args.on_error, overwrite=args.overwrite)
        report_import(summary, args.out)
        return 0
    if args.on_error != "fail":
        raise UsageError("--on-error skip is for Label Studio campaigns")
    with redirect_stdout(sys.stderr):
        summary = mod.fetch(campaign, args.out, overwrite=args.overwrite)
    print(f"rfengine: {summary['rows']} responses -> {args.out}", file=sys.stderr)
    return 0


def cmd_campaign_top_up(args: argparse.Namespace) -> int:
    from rfengine.frontends.topup import plan_campaign

    campaign, mod = _frontend(plan_campaign(args.plan, args.campaign))
    if mod.__name__.endswith("labelstudio"):
        done = mod.top_up(campaign, args.plan, dry_run=args.dry_run)
    else:
        with redirect_stdout(sys.stderr):  # the SDK prints progress; stdout carries the JSON
            done = mod.top_up(campaign, args.plan, dry_run=args.dry_run)
    print_json(done)
    if not args.dry_run:
        rounds = campaign.state.get("top_ups", [])
        print(
            f"rfengine: top-up round {rounds[-1]['round'] if rounds else '?'} recorded in "
            f"{campaign.path}; 'campaign fetch' returns every round",
            file=sys.stderr,
        )
    return 0


def report_import(summary: dict, out: Path) -> None:
    """A Label Studio import's counts, on stderr: every annotation read is used or reported."""
    per = ", ".join(f"{t} {n}" for t, n in summary["per_task"].items() if n)
    print(
        f"rfengine: {summary['tasks']} tasks, {summary['annotations']} annotations: "
        f"{summary['cancelled']} skipped by the annotator, {summary['superseded']} superseded "
        f"by the same annotator's newer one, {summary['empty']} empty, "
        f"{summary['rejected']} rejected; drafts ({summary['drafts']}) and predictions "
        f"({summary['predictions']}) are not responses",
        file=sys.stderr,
    )
    if summary["rejections"] and summary["rejected"]:
        print(f"rfengine: rejections -> {summary['rejections']}", file=sys.stderr)
    print(f"rfengine: {summary['rows']} responses ({per or 'none'}) -> {out}", file=sys.stderr)
