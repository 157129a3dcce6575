"""Label Studio JSON exports -> responses in the interchange format.

Reads the JSON export (a list of tasks, each with ``data``, ``annotations``, ``drafts``,
``predictions``), as the UI's Export > JSON writes it and as ``/api/projects/{id}/export``
returns it. Per task:

* the image: the ``image_id`` a launch writes into the task's data, else the file name of the
  task's image URL (``?d=`` of a local file, or the URL's path; an upload's ``xxxxxxxx-``
  prefix is dropped) matched against the images table's file names (none or several: a
  rejection); a ``prompt`` that differs from the table's (whitespace aside) is a rejection;
* the annotations: cancelled (skipped) ones, drafts and predictions are not responses;
  where one annotator (``completed_by``) has several annotations of a task, the newest
  (highest annotation id) is used and the others counted as superseded;
* the results, by control name (``--control TASK=NAME`` maps other configs): a ``rating``
  1-5 (coherence asked as error severity is flipped, ``6 - N``, as in the seed and the
  Rapidata importer); ``labels`` spans over the prompt -> the indices of every word of
  ``prompt.split()`` the span touches (a part of a word selects the word; punctuation stays
  with its word, as on Rapidata), and the ``no_mistake`` choice -> the ``[No_Mistake]`` slot
  (chosen alone: with a word too, a rejection);
  ``keypointlabels`` ``x``/``y`` in percent of ``original_width``/``original_height`` ->
  fractions ``x / 100``, ``y / 100`` (a click at pixel ``i``'s centre, ``(i + 0.5) / W``,
  stays at that centre after aggregation at native size); at most three points per task;
  ``brushlabels`` and ``polygonlabels`` of the regions controls (``coherence_regions``,
  ``alignment_regions``) -> regions (``results.region``: a brush's RLE decoded into a
  mask at the image's size, a polygon's percent points into fractions).

A words response exists where the annotation has a span or the "no mistake" choice; a
points response where it has points, or where the task is a launch's stage two (there, no
points is an answer: "no flaw"; likewise regions where that stage asked for them). Weights
are 1: Label Studio has no trust score (``aggregate --weights estimate`` weighs annotators
from their agreement). A bad annotation
(unknown control, rating out of range, more than three points, a task that does not match the
images table) is rejected whole, with its position, under ``--on-error``.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from rfengine.errors import InputError, Rejection, shorten
from rfengine.frontends.config import normalise_prompt
from rfengine.frontends.labelstudio.labeling import NO_MISTAKE_CONTROL
from rfengine.frontends.labelstudio.results import Bad, point, rating, region, words
from rfengine.frontends.writer import (
    CoherenceScale,
    check_responses_target,
    load_json,
    write_responses,
)
from rfengine.ingest.columns import OnError
from rfengine.ingest.images import Images
from rfengine.schema import CRITERIA, MAX_POINTS, MAX_REGIONS, POINT_TASKS, REGION_TASKS, TASKS
from rfengine.store.owned import check_file, write_atomic

#: the data keys (``$image``, ``$prompt``) and the words task's "no mistake" choice, which
#: ``--control`` can rename like the six tasks' controls
EXTRA_NAMES = ("image", "prompt", NO_MISTAKE_CONTROL)
_UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-")
_POINTS = tuple(t.label for t in POINT_TASKS)
_REGIONS = tuple(t.label for t in REGION_TASKS)
#: result item types accepted of each task's control
_TYPES = {**dict.fromkeys(CRITERIA, ("rating",)), "words": ("labels",)}
_TYPES.update(dict.fromkeys(_POINTS, ("keypointlabels",)), **{NO_MISTAKE_CONTROL: ("choices",)})
_TYPES.update(dict.fromkeys(_REGIONS, ("brushlabels", "polygonlabels")))


@dataclass(frozen=True)
class Controls:
    """Control names of the six tasks and of ``EXTRA_NAMES`` (default: their own names)."""

    names: dict[str, str] = field(default_factory=dict)

    def __getitem__(self, what: str) -> str:
        return self.names.get(what, what)

    @classmethod
    def parse(cls, specs: Iterable[str]) -> Controls:
        """``["style=quality", ...]`` (``TASK=NAME``) -> Controls; a bad spec is an error."""
        names: dict[str, str] = {}
        for spec in specs:
            what, sep, name = spec.partition("=")
            if not sep or not name or what not in TASKS + EXTRA_NAMES:
                known = ", ".join(TASKS + EXTRA_NAMES)
                raise InputError(
                    f"--control: expected TASK=NAME with TASK one of {known}, got {spec!r}"
                )
            names[what] = name
        return cls(names)

    def by_control(self) -> dict[str, str]:
        """control name -> task (or ``no_mistake``) for result items."""
        return {self[t]: t for t in TASKS + (NO_MISTAKE_CONTROL,)}


def _image_name(url: Any) -> str | None:
    """The file name in an image URL: local files' ``?d=``, else the path's last part."""
    if not isinstance(url, str) or not url:
        return None
    parts = urllib.parse.urlsplit(url)
    d = urllib.parse.parse_qs(parts.query).get("d")
    path = d[0] if d else urllib.parse.unquote(parts.path)
    return PurePosixPath(path).name or None


class _Table:
    """The images table's lookups: by id, and by file name (several images: ambiguous)."""

    def __init__(self, images: Images):
        self.images = images
        self.ids = {im: k for k, im in enumerate(images.ids)}
        self.names: dict[str, list[int]] = {}
        for k, p in enumerate(images.paths):
            if p is not None:
                self.names.setdefault(p.name, []).append(k)

    def row(self, data: dict, controls: Controls) -> int:
        image_id = data.get("image_id")
        if image_id is not None:
            if str(image_id) not in self.ids:
                raise Bad("data.image_id", f"{shorten(image_id)} is not in the images table")
            return self.ids[str(image_id)]
        key = controls["image"]
        name = _image_name(data.get(key))
        if name is None:
            raise Bad(f"data.{key}", "no image_id and no image URL to match by file name")
        rows = self.names.get(name) or self.names.get(_UPLOAD_PREFIX.sub("", name), [])
        if len(rows) != 1:
            why = "matches no image" if not rows else f"matches {len(rows)} images"
            raise Bad(f"data.{key}", f"file name {name!r} {why} of the images table")
        return rows[0]


def _annotator(ann: dict) -> str:
    who = ann.get("completed_by")
    if isinstance(who, dict):
        who = who.get("id", who.get("email"))
    if not isinstance(who, (int, str)) or isinstance(who, bool) or who == "":
        raise Bad("completed_by", f"expected a user id, got {shorten(who)}")
    return str(who)


def _responses(ann: dict, data: dict, ctx: _Context, row: int) -> list[dict[str, Any]]:
    """One annotation of image ``row`` -> its responses (or Bad naming the field)."""
    items = ann.get("result")
    if not isinstance(items, list):
        raise Bad("result", f"expected a list, got {shorten(items)}")
    by_control = ctx.controls.by_control()
    ratings: dict[str, int] = {}
    spans: list[dict] = []
    points: dict[str, list[list[float]]] = {}
    regions: dict[str, list[dict[str, Any]]] = {}
    size = (int(ctx.table.images.height[row]), int(ctx.table.images.width[row]))
    no_mistake = False
    for k, item in enumerate(items):
        name = item.get("from_name") if isinstance(item, dict) else None
        task = by_control.get(name)
        value = item.get("value") if isinstance(item, dict) else None
        if task is None:
            known = ", ".join(sorted(by_control))
            raise Bad(
                f"result[{k}].from_name",
                f"unknown control {shorten(name)} (known: "
                f"{known}; map others with --control TASK=NAME)",
            )
        if item.get("type") not in _TYPES[task] or not isinstance(value, dict):
            kinds = " or ".join(_TYPES[task])
            why = f"expected a {kinds} result, got type {shorten(item.get('type'))}"
            raise Bad(f"result[{k}].type", why)
        if task in CRITERIA:
            if task in ratings:
                raise Bad(f"result[{k}]", f"a second rating of {task}")
            ratings[task] = rating(value, task, ctx.scale)
        elif task == "words":
            spans.append(value)
        elif task == NO_MISTAKE_CONTROL:
            no_mistake = bool(value.get("choices"))
        elif task in _REGIONS:
            regions.setdefault(task, []).append(region(item, value, name, size))
        else:
            points.setdefault(task, []).append(point(item, value, name))
    annotator = _annotator(ann)
    out: list[dict[str, Any]] = [{"task": t, "rating": r} for t, r in ratings.items()]
    if spans or no_mistake:
        text = data.get(ctx.controls["prompt"])
        if not isinstance(text, str):
            raise Bad(f"data.{ctx.controls['prompt']}", "words selected but the task has no prompt")
        if spans and no_mistake:
            why = "chosen together with a word selected (no mistake is chosen alone)"
            raise Bad(ctx.controls[NO_MISTAKE_CONTROL], why)
        selected = words(spans, text, ctx.controls["words"])
        if no_mistake:
            selected.add(len(text.split()))
        out.append({"task": "words", "selected": sorted(selected)})
    stage_two = data.get("rfengine_stage") == 2
    for task in _POINTS:
        pts = points.get(task, [])
        if len(pts) > MAX_POINTS:
            raise Bad(ctx.controls[task], f"{len(pts)} points; at most {MAX_POINTS} per task")
        if pts or stage_two:
            out.append({"task": task, "points": pts})
    for task in _REGIONS:  # in a stage two that asked for regions, none drawn is an answer
        regs = regions.get(task, [])
        if len(regs) > MAX_REGIONS:
            raise Bad(ctx.controls[task], f"{len(regs)} regions; at most {MAX_REGIONS} per task")
        if regs or (stage_two and data.get("rfengine_regions")):
            out.append({"task": task, "regions": regs})
    return [{"annotator_id": annotator, "weight": 1.0, **r} for r in out]


@dataclass
class _Context:
    table: _Table
    controls: Controls
    scale: CoherenceScale
    notes: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            ("tasks", "annotations", "cancelled", "superseded", "empty", "drafts", "predictions"), 0
        )
    )


def _kept(annotations: list, ctx: _Context) -> list[tuple[int, dict]]:
    """(position, annotation) of the newest non-cancelled annotation of each annotator."""
    newest: dict[Any, tuple[int, dict]] = {}
    for j, ann in enumerate(annotations):
        ctx.notes["annotations"] += 1
        if not isinstance(ann, dict):
            newest[("bad", j)] = (j, ann)
            continue
        if ann.get("was_cancelled"):
            ctx.notes["cancelled"] += 1
            continue
        who = json.dumps(ann.get("completed_by"), sort_keys=True, default=str)
        old = newest.get(who)
        if old is not None:
            ctx.notes["superseded"] += 1
            if _id(old[1]) > _id(ann):
                continue
        newest[who] = (j, ann)
    return sorted(newest.values(), key=lambda p: p[0])


def _id(ann: dict) -> float:
    got = ann.get("id")
    return got if isinstance(got, (int, float)) and not isinstance(got, bool) else -1


def convert_export(
    doc: Any, images: Images, path: Path, ctx: _Context
) -> tuple[list[dict], list[Rejection]]:
    """One export -> (responses rows, rejections in input order); ``ctx.notes`` counts."""
    if not isinstance(doc, list):
        raise InputError(f"{path}: not a Label Studio JSON export (expected a list of tasks)")
    rows: list[dict] = []
    rejected: list[Rejection] = []
    for i, task in enumerate(doc):
        ctx.notes["tasks"] += 1
        if not isinstance(task, dict):
            rejected.append(Rejection(str(path), f"task {i}", "", "not an object", task, (0, i)))
            continue
        ctx.notes["drafts"] += len(task.get("drafts") or ())
        ctx.notes["predictions"] += len(task.get("predictions") or ())
        anns = task.get("annotations") or []
        where = f"task {i} (id {task.get('id')})"
        data = task.get("data")
        kept = _kept(anns if isinstance(anns, list) else [anns], ctx)
        if not kept:
            continue
        try:
            if not isinstance(data, dict):
                raise Bad("data", f"expected an object, got {shorten(data)}")
            row = ctx.table.row(data, ctx.controls)
            prompt = data.get(ctx.controls["prompt"])
            want = ctx.table.images.prompts[row]
            if prompt is not None and normalise_prompt(str(prompt)) != normalise_prompt(want):
                raise Bad(
                    f"data.{ctx.controls['prompt']}",
                    f"{shorten(prompt)} is not the "
                    f"images table's prompt of {ctx.table.images.ids[row]!r}",
                )
        except Bad as bad:
            rejected.append(Rejection(str(path), where, bad.field, bad.why, task, (0, i)))
            continue
        for j, ann in kept:
            at = f"{where}, annotation {j} (id {ann.get('id') if isinstance(ann, dict) else None})"
            try:
                if not isinstance(ann, dict):
                    raise Bad("", "not an object")
                got = _responses(ann, data, ctx, row)
            except Bad as bad:
                rejected.append(Rejection(str(path), at, bad.field, bad.why, ann, (0, i)))
                continue
            ctx.notes["empty"] += not got
            rows += [{"image_id": ctx.table.images.ids[row], **r} for r in got]
    return rows, rejected


def rejections_path(out: Path) -> Path:
    """Where ``--on-error skip`` writes an import's rejections: beside the responses."""
    return out.with_name(out.name + ".rejected.jsonl")


def _is_rejections(path: Path) -> bool:
    try:
        with path.open(encoding="utf-8") as fh:
            first = fh.readline()
        return not first or set(json.loads(first)) == {"file", "where", "field", "reason", "row"}
    except (OSError, ValueError, TypeError):
        return False


def import_labelstudio(
    images: Images,
    exports: Iterable[str | Path],
    out: str | Path,
    controls: Controls | None = None,
    coherence_scale: CoherenceScale = "severity",
    *,
    on_error: OnError = "fail",
    overwrite: bool = False,
) -> dict[str, Any]:
    """Convert Label Studio JSON exports into one responses file ``out`` (.jsonl/.parquet,
    written atomically; an existing one replaced only with ``overwrite`` and only if
    rfengine wrote it). ``on_error="fail"`` stops at the first bad annotation; ``"skip"``
    leaves it out and writes every rejection to ``OUT.rejected.jsonl``. Returns counts."""
    out = Path(out)
    check_responses_target(out, overwrite)
    rej_path = rejections_path(out)
    if on_error == "skip":
        check_file(rej_path, overwrite, _is_rejections, "an rfengine rejections file")
    ctx = _Context(_Table(images), controls or Controls(), coherence_scale)
    rows: list[dict] = []
    rejected: list[Rejection] = []
    for p in exports:
        got, bad = convert_export(load_json(Path(p)), images, Path(p), ctx)
        rows += got
        rejected += bad
    if rejected and on_error == "fail":
        raise InputError.from_rejection(rejected[0], len(rejected) - 1)
    write_responses(rows, out)
    if on_error == "skip":
        write_atomic(
            rej_path,
            "".join(json.dumps(r.to_json(), default=str, allow_nan=False) + "\n" for r in rejected),
        )
    per_task = {t: sum(r["task"] == t for r in rows) for t in TASKS}
    return {
        "rows": len(rows),
        "per_task": per_task,
        "rejected": len(rejected),
        "rejections": str(rej_path) if on_error == "skip" else None,
        **ctx.notes,
    }
