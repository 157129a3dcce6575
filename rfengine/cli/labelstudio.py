"""``rfengine import-labelstudio``: Label Studio JSON exports -> a responses file."""

from __future__ import annotations

import argparse
from pathlib import Path

from rfengine.cli.campaign import report_import
from rfengine.cli.common import OVERWRITE_RESPONSES, add_coherence_scale


def add_import(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import-labelstudio",
        help="convert Label Studio JSON exports into the responses format",
        description="Convert Label Studio JSON exports (Export > JSON in the UI, or the API's "
        "export) into one responses file for rfengine aggregate. Controls named after the "
        "tasks (style, coherence, alignment, words, no_mistake, coherence_points, "
        "alignment_points; image as $image, prompt as $prompt) import without options.",
    )
    p.add_argument("exports", nargs="+", type=Path, metavar="EXPORT.json")
    p.add_argument("--images", required=True, type=Path, help="images table (ids, file names)")
    p.add_argument("--out", required=True, type=Path, help="responses file (.jsonl or .parquet)")
    p.add_argument(
        "--control",
        action="append",
        default=[],
        metavar="TASK=NAME",
        help="the control (or data key, for image and prompt) that holds TASK in another "
        "labeling config; repeat for each",
    )
    add_coherence_scale(p)
    p.add_argument(
        "--on-error",
        choices=["fail", "skip"],
        default="fail",
        help="fail on the first bad annotation (default) or leave bad ones out, into "
        "OUT.rejected.jsonl",
    )
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_RESPONSES)
    p.set_defaults(func=cmd_import)


def cmd_import(args: argparse.Namespace) -> int:
    from rfengine.frontends.labelstudio.importer import Controls, import_labelstudio
    from rfengine.ingest import read_images

    images = read_images(args.images, require_files=False)  # names are matched, not opened
    summary = import_labelstudio(
        images,
        args.exports,
        args.out,
        Controls.parse(args.control),
        args.coherence_scale,
        on_error=args.on_error,
        overwrite=args.overwrite,
    )
    report_import(summary, args.out)
    return 0
