"""The ``rfengine`` command line: argument parsing and reporting only."""

from __future__ import annotations

import argparse
import errno
import json
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any, get_args

from rfengine.errors import InputError
from rfengine.options import (
    DEFAULT_BUDGET,
    DTYPES,
    OUTPUTS,
    AggregateOptions,
    Engine,
    OnError,
    Preset,
    Prior,
    Weights,
    parse_bytes,
    parse_heatmap_size,
    parse_outputs,
)
from rfengine.schema import TASKS


def _typed(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse ``type=``: the parser's ValueError becomes a usage error (exit 2)."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = parse.__name__
    return convert


OVERWRITE_FOLDER = "replace an existing OUT, only one rfengine {} wrote and holding nothing else"
OVERWRITE_RESPONSES = (
    "replace an existing responses file, only a .parquet one rfengine wrote (a .jsonl is never "
    "replaced)"
)


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
    p.add_argument("--preset", choices=get_args(Preset), default="default")
    p.add_argument(
        "--heatmap-size",
        type=_typed(parse_heatmap_size),
        default=None,
        help="'native' (default) or HxW, e.g. 512x512",
    )
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--dtype", default="float16", choices=list(DTYPES))
    p.add_argument(
        "--on-error",
        default="fail",
        choices=get_args(OnError),
        help="fail on the first bad row (default) or skip bad rows into OUT/rejected.jsonl",
    )
    p.add_argument(
        "--weights",
        default="trust",
        choices=get_args(Weights),
        help="use each response's trust weight (default), weigh all responses equally, or "
        "estimate each annotator's trust from their agreement with the others "
        "(writes OUT/annotators.parquet)",
    )
    p.add_argument(
        "--prior",
        default="trust",
        choices=get_args(Prior),
        help="with --weights estimate: start from the given weights (default) or from 1.0",
    )
    p.add_argument(
        "--reliability",
        action="store_true",
        help="also compute each heatmap's split-half reliability per image (two more splats)",
    )
    p.add_argument(
        "--memory-budget",
        type=_typed(parse_bytes),
        default=DEFAULT_BUDGET,
        help="memory for a partition's work (e.g. 1GB); sets partition and batch sizes, so "
        "peak memory follows it, not the input size",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing OUT, if it is an rfengine output and holds nothing else",
    )
    p.add_argument(
        "--outputs",
        type=_typed(parse_outputs),
        default=OUTPUTS,
        help="what to write: dataset,targets (default both), or one of them",
    )
    p.add_argument(
        "--dataset-heatmaps",
        choices=["yes", "no"],
        default="yes",
        help="'no' leaves the heatmap columns out of the dataset (train from the targets)",
    )
    p.add_argument(
        "--allow-outside-paths",
        action="store_true",
        help="let the images table name files outside its own folder (refused by default)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="reuse the finished stages of an interrupted run with the same inputs and options",
    )
    p.add_argument(
        "--engine",
        default="local",
        choices=["local", "ray"],
        help="run on this machine (default) or on Ray (pip install 'rfengine[ray]'): a local "
        "Ray runtime, or the cluster at --ray-address; the outputs are identical",
    )
    p.add_argument(
        "--ray-address",
        default=None,
        help="with --engine ray: the cluster to join (e.g. auto, or ray://head:10001)",
    )
    p.add_argument(
        "--gpus-per-task",
        type=float,
        default=0.0,
        help="with --engine ray: GPUs each partition task requests (default 0: CPU)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=cmd_aggregate)


def cmd_aggregate(args: argparse.Namespace) -> int:
    from rfengine.pipeline import aggregate_to_disk

    t0 = time.perf_counter()
    try:
        options = AggregateOptions.create(
            preset=args.preset,
            heatmap_size=args.heatmap_size,
            device=args.device,
            dtype=args.dtype,
            on_error=args.on_error,
            weights=args.weights,
            prior=args.prior,
            reliability=args.reliability,
            memory_budget=args.memory_budget,
            outputs=args.outputs,
            dataset_heatmaps=args.dataset_heatmaps == "yes",
        )
        engine = Engine.create(args.engine, args.ray_address, args.gpus_per_task)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    manifest = aggregate_to_disk(
        args.images,
        args.responses,
        args.out,
        options,
        overwrite=args.overwrite,
        allow_outside_paths=args.allow_outside_paths,
        resume=args.resume,
        progress=not args.quiet,
        engine=engine,
    )
    c = manifest["counts"]
    if not args.quiet:
        print(
            f"rfengine: {c['images']} images, {c['rows_read']} rows read ({c['rows_used']} used, "
            f"{c['rows_rejected']} rejected) -> {args.out} in {time.perf_counter() - t0:.1f} s",
            file=sys.stderr,
        )
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _add_simulate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate",
        help="write a simulated campaign with a known truth",
        description="Draw images with planted defects and simulate annotators of mixed "
        "reliability: DIR/images/, images.jsonl, responses.jsonl, truth.jsonl, annotators.jsonl.",
    )
    p.add_argument("--images", type=_positive, default=48, help="number of images (default 48)")
    p.add_argument("--out", required=True, type=Path, help="campaign folder to write")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--per-image", type=_positive, default=12, help="annotators per image and task (default 12)"
    )
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_FOLDER.format("simulate"))
    p.set_defaults(func=cmd_simulate)


def cmd_simulate(args: argparse.Namespace) -> int:
    from rfengine.simulate import simulate

    out = simulate(args.out, args.images, args.seed, args.per_image, overwrite=args.overwrite)
    print(f"rfengine: simulated {args.images} images -> {out}", file=sys.stderr)
    return 0


def _add_render(sub: argparse._SubParsersAction) -> None:
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


def _add_report(sub: argparse._SubParsersAction) -> None:
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
    from rfengine.simulate import read_truth

    truth = read_truth(args.truth) if args.truth else None
    path, _ = write_report(
        args.output, args.html, truth=truth, baseline=args.baseline, overwrite=args.overwrite
    )
    print(f"rfengine: report -> {path}", file=sys.stderr)
    return 0


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="simulate a campaign, aggregate it and write the report (no network, no GPU)",
        description="End to end on an embedded simulated campaign: simulate, aggregate "
        "trust-weighted and unweighted, and write an HTML report with recovery figures.",
    )
    p.add_argument(
        "--out", type=Path, default=Path("rfengine-demo"), help="default ./rfengine-demo"
    )
    p.add_argument("--images", type=_positive, default=48, help="number of images (default 48)")
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
    from rfengine.demo import run_demo

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
    ):
        print(f"  {label:44s} {t[key]:.3f} | {e[key]:.3f} | {u[key]:.3f}")
    print(f"panels: {(Path(args.out) / 'render').resolve()}")
    print(f"report: {report.resolve()}")
    return 0


def _add_import(sub: argparse._SubParsersAction) -> None:
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
    from rfengine.ingest import read_images
    from rfengine.ingest.rapidata import import_rapidata

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


def _add_campaign(sub: argparse._SubParsersAction) -> None:
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
    from rfengine import campaign as rd

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
    _print_json(plans)
    if not args.dry_run:
        print(f"rfengine: stage one launched; campaign file {out}", file=sys.stderr)
    return 0


def cmd_campaign_status(args: argparse.Namespace) -> int:
    from rfengine import campaign as rd

    with redirect_stdout(sys.stderr):
        rows = rd.status(rd.Campaign.load(args.campaign))
    _print_json(rows)
    return 0


def cmd_campaign_next(args: argparse.Namespace) -> int:
    from rfengine import campaign as rd

    with redirect_stdout(sys.stderr):
        plans = rd.next_stage(rd.Campaign.load(args.campaign), threshold=args.threshold)
    _print_json(plans)
    return 0


def cmd_campaign_fetch(args: argparse.Namespace) -> int:
    from rfengine import campaign as rd

    with redirect_stdout(sys.stderr):
        summary = rd.fetch(rd.Campaign.load(args.campaign), args.out, overwrite=args.overwrite)
    print(f"rfengine: {summary['rows']} responses -> {args.out}", file=sys.stderr)
    return 0


def _fractions(text: str) -> tuple[float, float, float]:
    parts = [float(v) for v in text.split(",")]
    if len(parts) != 3 or min(parts) < 0 or abs(sum(parts) - 1) > 1e-9:
        raise ValueError(f"expected three fractions summing to 1, e.g. 0.9,0.05,0.05, got {text!r}")
    return parts[0], parts[1], parts[2]


def _add_export(sub: argparse._SubParsersAction) -> None:
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
        type=_typed(_fractions),
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
    from rfengine.export import export_richhf

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


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
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
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from rfengine.metrics import check_report_target, evaluate, report_json

    if args.json:
        check_report_target(args.json, args.overwrite)  # before any work
    text = report_json(evaluate(args.target, args.pred, threshold=args.threshold))
    print(text, end="")
    if args.json:
        from rfengine.write.owned import write_atomic

        write_atomic(args.json, text)
    return 0


def _add_annotators(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "annotators",
        help="the least and most trusted annotators of an output (--weights estimate)",
        description="Print the annotators of OUT/annotators.parquet, least trusted first and "
        "most trusted last, with their responses, given and estimated weights and agreement.",
    )
    p.add_argument("out", type=Path, help="an rfengine output written with --weights estimate")
    p.add_argument("-n", type=_positive, default=10, help="how many at each end (default 10)")
    p.add_argument("--json", action="store_true", help="one JSON object per annotator instead")
    p.set_defaults(func=cmd_annotators)


def cmd_annotators(args: argparse.Namespace) -> int:
    from rfengine.output import load_annotators

    table = load_annotators(args.out)
    rows = sorted(table.to_pylist(), key=lambda r: (r["weight_estimated"], r["annotator_id"]))
    picked = rows if len(rows) <= 2 * args.n else rows[: args.n] + rows[-args.n :]
    if args.json:
        _print_json(picked)
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
        n = sum(r[f"responses_{t}"] for t in TASKS)
        cells = " ".join(
            f"{'-':>12s}" if r[f"agreement_{t}"] is None else f"{r[f'agreement_{t}']:12.3f}"
            for t in agree
        )
        name = r["annotator_id"] if len(r["annotator_id"]) <= 24 else r["annotator_id"][:23] + "…"
        print(f"{name:24s} {n:9d} {r['weight_given']:7.3f} {r['weight_estimated']:9.3f}  {cells}")
    return 0


def _print_json(rows: list[dict[str, Any]]) -> None:
    """One JSON object per line on stdout."""
    for row in rows:
        sys.stdout.write(json.dumps(row) + "\n")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rfengine",
        description="Aggregate rich human feedback on text-to-image generation.",
    )
    from rfengine import __version__

    parser.add_argument("--version", action="version", version=f"rfengine {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of any error (for bug reports)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_aggregate(sub)
    _add_import(sub)
    _add_simulate(sub)
    _add_render(sub)
    _add_report(sub)
    _add_demo(sub)
    _add_export(sub)
    _add_evaluate(sub)
    _add_annotators(sub)
    _add_campaign(sub)
    return parser


class UsageError(ValueError):
    """An option value the parser could not check alone (e.g. two options that conflict)."""


def _os_error(exc: OSError) -> str:
    """One line for a failed file operation: what failed, and on which path."""
    where = exc.filename if exc.filename is not None else ""
    what = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        what = f"{what} (the disk is full; free space or choose another --out)"
    return f"{where}: {what}" if where else what


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point. Exit codes: 0 done; 1 bad input or a file that cannot be read or
    written (one line naming it); 2 usage errors (argparse's message); 3 an internal
    error, i.e. a bug (one line, the traceback with ``--debug``); 130 interrupted."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UsageError as exc:
        parser.error(str(exc))  # exits with 2
    except (InputError, FileExistsError) as exc:
        if args.debug:
            raise
        print(f"rfengine: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        if args.debug:
            raise
        print(f"rfengine: error: {_os_error(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("rfengine: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        print(
            f"rfengine: internal error: {type(exc).__name__}: {exc} -- this is a bug, not "
            "bad input; rerun with --debug for the traceback and report it",
            file=sys.stderr,
        )
        return 3


if __name__ == "__main__":
    sys.exit(main())
