"""Commands on an aggregation output: ``render``, ``report``, ``export``, ``evaluate``,
``annotators``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rfengine.cli.common import OVERWRITE_FOLDER, fractions, positive, print_json, typed
from rfengine.schema import TASKS


def add_render(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "render",
        help="PNG panels: heatmap overlays and coloured prompts",
        description="One PNG per image of an aggregation output: the image, its coherence and "
        "alignment heatmaps over it, and its prompt with words coloured by score.",
    )
    p.add_argument("output", type=Path, help="an rfengine aggregate output folder")
    p.add_argument("--image", nargs="+", metavar="ID", help="only these image ids")
    p.add_argument("--out", type=Path, help="folder for the PNGs (default OUTPUT/render)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace existing panels (in a folder render wrote; any other folder is refused)",
    )
    p.set_defaults(func=cmd_render)


def cmd_render(args: argparse.Namespace) -> int:
    from rfengine.render import render_output

    dest = args.out or args.output / "render"
    files = render_output(args.output, dest, args.image, overwrite=args.overwrite)
    print(
        f"rfengine: {len(files)} panel(s) -> {files[0].parent if files else args.out}",
        file=sys.stderr,
    )
    return 0


def add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="a self-contained HTML report of an aggregation output",
        description="Score histograms, images with overlays and coloured prompts, the "
        "lowest-scoring images, the manifest, and recovery figures when a truth is given.",
    )
    p.add_argument("output", type=Path, help="an rfengine aggregate output folder")
    p.add_argument("--truth", type=Path, help="truth.jsonl of a simulated campaign")
    p.add_argument("--baseline", type=Path, help="an output of the same responses to compare")
    p.add_argument("--html", type=Path, help="report path (default OUTPUT/report.html)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing report (only a file rfengine report wrote)",
    )
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from rfengine.render import write_report
    from rfengine.sim.simulate import read_truth

    truth = read_truth(args.truth) if args.truth else None
    path, _ = write_report(
        args.output, args.html, truth=truth, baseline=args.baseline, overwrite=args.overwrite
    )
    print(f"rfengine: report -> {path}", file=sys.stderr)
    return 0


def add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="an output in another tool's layout (richhf: what a RAHF trainer reads)",
        description="Write an aggregation output as the RichHF-18K-style DatasetDict "
        "(train/dev/test) that youweiliang/RichHF's trainer loads: 512x512 8-bit maps "
        "(artifact = coherence, misalignment = alignment), scores in [0, 1], clean and "
        "labeled prompts, the image bytes.",
    )
    p.add_argument("output", type=Path, help="an rfengine aggregate output folder")
    p.add_argument("--format", choices=["richhf"], required=True)
    p.add_argument("--out", type=Path, required=True, help="folder to write (save_to_disk)")
    p.add_argument(
        "--split",
        type=typed(fractions),
        default=(0.9, 0.05, 0.05),
        help="train,dev,test fractions (default 0.9,0.05,0.05), by a seeded hash of the id",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the split's hash (default 0)")
    p.add_argument(
        "--threshold", type=float, default=0.5, help="word share for '_0' labels (default 0.5)"
    )
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_FOLDER.format("export"))
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from rfengine.train.richhf import export_richhf

    counts = export_richhf(
        args.output,
        args.out,
        fractions=args.split,
        seed=args.seed,
        threshold=args.threshold,
        overwrite=args.overwrite,
    )
    print(f"rfengine: richhf {counts} -> {args.out}", file=sys.stderr)
    return 0


def add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="score a model's predictions against an output's targets (RAHF's metrics)",
        description="Heatmaps: MSE, CC, KLD, SIM, NSS, AUC-Judd; scores: PLCC, SRCC; words: "
        "precision, recall, F1 of misaligned tokens. PRED: a safetensors file or folder "
        "with metadata image_ids and coherence_heatmap / alignment_heatmap (N, H, W), "
        "scores_norm (N, 3), word_probs + word_offsets.",
    )
    p.add_argument("--target", type=Path, required=True, help="an rfengine output folder")
    p.add_argument("--pred", type=Path, required=True, help="predictions (.safetensors)")
    p.add_argument("--json", type=Path, help="also write the report here")
    p.add_argument(
        "--threshold", type=float, default=0.5, help="word share = misaligned (default 0.5)"
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing --json file (only a report rfengine evaluate wrote)",
    )
    p.add_argument(
        "--invalid",
        choices=["error", "exclude"],
        default="error",
        help="a missing image or a prediction that cannot be scored (NaN, infinite, a "
        "negative heatmap value): an error (default), or left out of its figure and counted "
        "in the report's coverage",
    )
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from rfengine.train.evaluate import check_report_target, evaluate, report_json

    if args.json:
        check_report_target(args.json, args.overwrite)  # before any work
    report = evaluate(args.target, args.pred, threshold=args.threshold, invalid=args.invalid)
    text = report_json(report)
    print(text, end="")
    if args.json:
        from rfengine.store.owned import write_atomic

        write_atomic(args.json, text)
    return 0


def add_annotators(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "annotators",
        help="the least and most trusted annotators of an output (--weights estimate)",
        description="Print the annotators of OUT/annotators.parquet, least trusted first and "
        "most trusted last, with their responses, given and estimated weights and agreement.",
    )
    p.add_argument("out", type=Path, help="an rfengine output written with --weights estimate")
    p.add_argument("-n", type=positive, default=10, help="how many at each end (default 10)")
    p.add_argument("--json", action="store_true", help="one JSON object per annotator instead")
    p.set_defaults(func=cmd_annotators)


def cmd_annotators(args: argparse.Namespace) -> int:
    from rfengine.store.load import load_annotators

    table = load_annotators(args.out)
    rows = sorted(table.to_pylist(), key=lambda r: (r["weight_estimated"], r["annotator_id"]))
    picked = rows if len(rows) <= 2 * args.n else rows[: args.n] + rows[-args.n :]
    if args.json:
        print_json(picked)
        return 0
    agree = [t for t in TASKS if f"agreement_{t}" in table.column_names]
    head = f"{'annotator_id':24s} {'responses':>9s} {'given':>7s} {'estimated':>9s}  " + " ".join(
        f"{t[:12]:>12s}" for t in agree
    )
    print(f"{len(rows)} annotators, least trusted first (agreement: chance-corrected, per task)")
    print(head)
    for k, r in enumerate(picked):
        if len(rows) > 2 * args.n and k == args.n:
            print(f"{'...':24s}")
        n = sum(r[f"responses_{t}"] for t in TASKS if f"responses_{t}" in r)
        cells = " ".join(
            f"{'-':>12s}" if r[f"agreement_{t}"] is None else f"{r[f'agreement_{t}']:12.3f}"
            for t in agree
        )
        name = r["annotator_id"] if len(r["annotator_id"]) <= 24 else r["annotator_id"][:23] + "…"
        print(f"{name:24s} {n:9d} {r['weight_given']:7.3f} {r['weight_estimated']:9.3f}  {cells}")
    return 0
