"""Rapidata job results -> responses in the interchange format.

Reads the results JSON of rapidata 3.x (``job.get_results()`` / the download: ``results[]``
with ``originalFileName`` and ``detailedResults[]``, trust in
``userDetails.userScores.global``) and of 2.x (``results.data[]``, trust in
``userDetails.userScore``):

* classification (style, coherence, alignment): ``selectedCategory`` "N: text" -> rating N;
  coherence is asked as error severity in the seed (5 = most errors), so it becomes 6 - N
  unless the job asked on the coherence scale (``coherence_scale="coherence"``);
* locate (coherence_points, alignment_points): ``location`` or ``coordinates`` ``[{x, y}]``
  in percent of the image (``point_units="ratio"``: fractions) -> ``[[x, y]]`` fractions; a
  file whose every coordinate is at most 1 percent is refused as probably ratios;
* select words: ``selectedWords`` ``[{word, wordIndex}]`` -> indices into
  ``prompt.split()`` (+ "[No_Mistake]"), each word checked against the prompt.

A result without its key (``location``/``coordinates``, ``selectedWords``) is an error,
never a silent "nothing": no public document confirms the 3.x download's keys or units.

Results are matched to images by ``originalFileName``: the basename of the images table's
``path``, or the ``image_id``. Names from results are matched only, never opened as paths.
Where results carry no annotator id, each response gets a stable id of its own, so
duplicate detection cannot work for that file.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from pathlib import Path
from typing import Any, Literal

from rfengine.errors import InputError, shorten
from rfengine.frontends.writer import (
    CoherenceScale,
    check_responses_target,
    load_json,
    write_responses,
)
from rfengine.ingest.formats import as_float
from rfengine.ingest.images import Images
from rfengine.schema import CRITERIA, MAX_WEIGHT, MIN_WEIGHT, NO_MISTAKE, TASKS

PointUnits = Literal["percent", "ratio"]
#: where a locate result holds its clicks: 2.x downloads and Rapidata's 2025 script use
#: ``location``, the 3.x SDK's typed locate result ``coordinates``; either is read, the same
POINT_KEYS = ("location", "coordinates")
_LABEL = re.compile(r"^\s*([1-5])\s*(?::|$)")
_ID_KEYS = ("userId", "user_id", "annotatorId", "id")
MAX_LISTED = 10


def _bad(at: str, field: str, why: str) -> InputError:
    return InputError(f"{at}: field '{field}': {why}")


def _rating(detail: dict, task: str, scale: CoherenceScale, at: str) -> int:
    """A Likert label "N: text" -> N (coherence asked as severity -> 6 - N)."""
    label = detail.get("selectedCategory")
    m = _LABEL.match(label) if isinstance(label, str) else None
    if m is None:
        why = f"expected a label 'N: text' with N in 1-5, got {label!r}"
        raise _bad(at, "selectedCategory", why)
    n = int(m[1])
    return 6 - n if task == "coherence" and scale == "severity" else n


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _points(detail: dict, at: str, units: PointUnits) -> list[list[float]]:
    """``location`` or ``coordinates`` (either key; a list of ``{x, y}`` or one) in
    ``units`` of the image's sides -> ``[[x, y]]`` fractions. A result with neither key is
    an error: it is not 'clicked nothing' (that is an empty list)."""
    key = next((k for k in POINT_KEYS if k in detail), None)
    if key is None:
        raise _bad(at, "location", f"missing (a locate result carries one of {POINT_KEYS})")
    loc = detail[key]
    loc = [loc] if isinstance(loc, dict) else loc
    if not isinstance(loc, list):
        raise _bad(at, key, f"expected a list of {{x, y}}, got {shorten(loc)}")
    top = 100 if units == "percent" else 1
    pts = []
    for p in loc:
        x, y = (p.get("x"), p.get("y")) if isinstance(p, dict) else (None, None)
        if not all(_number(v) and 0 <= v <= top for v in (x, y)):
            why = f"expected {{x, y}} in {units} (0-{top}), got {shorten(p)}"
            if units == "ratio" and all(_number(v) and 0 <= v <= 100 for v in (x, y)):
                why += "; are these percent? pass --point-units percent"
            raise _bad(at, key, why)
        pts.append([x / top, y / top])
    return pts


def _words(detail: dict, tokens: list[str], at: str) -> list[int]:
    """``selectedWords`` [{word, wordIndex}] -> indices, each word checked against the prompt.

    A result without the key is an error; an empty list is a real "nothing selected"."""
    if "selectedWords" not in detail:
        raise _bad(at, "selectedWords", "missing (a select-words result carries it)")
    words = detail["selectedWords"]
    if not isinstance(words, list):
        raise _bad(at, "selectedWords", f"expected a list, got {shorten(words)}")
    sel = []
    for w in words:
        idx, word = (w.get("wordIndex"), w.get("word")) if isinstance(w, dict) else (None, None)
        if not isinstance(idx, int) or isinstance(idx, bool) or not 0 <= idx < len(tokens):
            why = (
                f"word index {shorten(idx)} outside the prompt's {len(tokens) - 1} words + "
                f"{NO_MISTAKE}"
            )
            raise _bad(at, "selectedWords", why)
        if word != tokens[idx]:
            why = f"word {shorten(word)} at index {idx}, but the prompt has {tokens[idx]!r} there"
            raise _bad(at, "selectedWords", why)
        sel.append(idx)
    return sel


def _as_dict(v: Any, at: str, field: str) -> dict:
    """``v`` if it is an object (None -> {}), else an InputError naming the field."""
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise _bad(at, field, f"expected an object, got {shorten(v)}")
    return v


def _results_items(doc: Any, path: Path) -> tuple[list[dict], str]:
    """The per-datapoint result items and the layout name ('3.x' or '2.x')."""
    if isinstance(doc, dict) and isinstance(doc.get("results"), list):
        return doc["results"], "3.x"
    if isinstance(doc, dict) and isinstance(doc.get("results"), dict):
        data = doc["results"].get("data")
        if isinstance(data, list):
            return data, "2.x"
    raise InputError(f"{path}: not a Rapidata results file (no results[] or results.data[])")


def _annotator(detail: dict, task: str, name: str, k: int, at: str) -> tuple[str, bool]:
    """The annotator id the results carry, else a stable id for this response (``task``
    carries the job's round after the first, so that rounds never share one)."""
    user = _as_dict(detail.get("userDetails"), at, "userDetails")
    for src in (detail, user):
        for key in _ID_KEYS:
            v = src.get(key)
            if isinstance(v, (str, int)) and not isinstance(v, bool) and str(v):
                return str(v), True
    digest = hashlib.sha1(f"{task}\0{name}\0{k}".encode()).hexdigest()[:16]
    return f"anon-{digest}", False


def _weight(detail: dict, layout: str, at: str) -> float | None:
    user = _as_dict(detail.get("userDetails"), at, "userDetails")
    scores = _as_dict(user.get("userScores"), at, "userDetails.userScores")
    w = scores.get("global") if layout == "3.x" else user.get("userScore")
    if w is None:  # accept either key in either layout
        w = user.get("userScore", scores.get("global"))
    if w is None:
        return None
    if not _number(w):
        raise _bad(at, "userDetails", f"expected a numeric trust score, got {shorten(w)}")
    x = as_float(w)
    if not math.isfinite(x) or not 0 <= x <= MAX_WEIGHT or 0 < x < MIN_WEIGHT:
        raise _bad(
            at,
            "userDetails",
            f"trust score {shorten(w, 60)} is not 0 or in [{MIN_WEIGHT:g}, {MAX_WEIGHT:g}]",
        )
    return x


def convert_results(
    doc: Any,
    task: str,
    images: Images,
    path: Path,
    coherence_scale: CoherenceScale = "severity",
    point_units: PointUnits = "percent",
    *,
    job: int = 0,
) -> tuple[list[dict], dict[str, Any]]:
    """One job's results document -> (interchange rows, notes). ``job``: how many jobs of
    this task came before it (a top-up round's), which anonymous ids take in.

    ``notes`` counts responses without a trust score (weighted 1.0) and without an
    annotator id, and lists the result names that match no image.
    """
    if task not in TASKS:
        raise InputError(f"{path}: unknown task {task!r}; expected one of {', '.join(TASKS)}")
    items, layout = _results_items(doc, path)
    by_name: dict[str, int] = {}
    for k, (image_id, p) in enumerate(zip(images.ids, images.paths, strict=True)):
        by_name.setdefault(image_id, k)
        if p is not None:
            by_name[p.name] = k
    rows: list[dict] = []
    unmatched: list[str] = []
    notes = {"layout": layout, "no_weight": 0, "no_annotator_id": 0}
    for i, item in enumerate(items):
        where = f"{path}: results[{i}]" if layout == "3.x" else f"{path}: results.data[{i}]"
        name = item.get("originalFileName") if isinstance(item, dict) else None
        if not isinstance(name, str):
            raise InputError(f"{where}: field 'originalFileName': missing")
        row = by_name.get(name, by_name.get(os.path.basename(name)))
        if row is None:
            unmatched.append(name)
            continue
        tokens = images.tokens[row] + [NO_MISTAKE]
        details = item.get("detailedResults")
        if not isinstance(details, list):
            raise _bad(where, "detailedResults", f"expected a list, got {shorten(details)}")
        for k, detail in enumerate(details):
            at = f"{where} ({name!r}).detailedResults[{k}]"
            if not isinstance(detail, dict):
                raise InputError(f"{at}: expected an object, got {shorten(detail)}")
            ann, has_id = _annotator(detail, f"{task}#{job}" if job else task, name, k, at)
            weight = _weight(detail, layout, at)
            notes["no_weight"] += weight is None
            notes["no_annotator_id"] += not has_id
            out: dict[str, Any] = {
                "image_id": images.ids[row],
                "annotator_id": ann,
                "task": task,
                "weight": 1.0 if weight is None else weight,
            }
            if task in CRITERIA:
                out["rating"] = _rating(detail, task, coherence_scale, at)
            elif task in ("coherence_points", "alignment_points"):
                out["points"] = _points(detail, at, point_units)
            else:
                out["selected"] = _words(detail, tokens, at)
            rows.append(out)
    notes["unmatched"] = unmatched
    coords = [c for r in rows for p in r.get("points", ()) for c in p]
    if point_units == "percent" and coords and max(coords) <= 0.01:
        raise InputError(
            f"{path}: every coordinate is at most 1 percent of the image: these look like "
            "ratios in [0, 1]; pass --point-units ratio (or percent if they truly are)"
        )
    return rows, notes


def import_rapidata(
    images: Images,
    jobs: dict[str, str | Path] | list[tuple[str, str | Path]],
    out: str | Path,
    coherence_scale: CoherenceScale = "severity",
    point_units: PointUnits = "percent",
    *,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Convert Rapidata results files (``task -> results.json``) into one responses file.

    ``out`` ends in .jsonl or .parquet and appears atomically; an existing one is refused
    unless ``overwrite``, and then replaced only if rfengine wrote it
    (``check_responses_target``). Returns a summary: rows per
    task and the notes of ``convert_results``. Names matching no image are an error listing
    them (up to ten) and their count.
    """
    out = Path(out)
    check_responses_target(out, overwrite)
    pairs = list(jobs.items()) if isinstance(jobs, dict) else list(jobs)
    rows: list[dict] = []
    summary: dict[str, Any] = {"jobs": []}
    seen: set[tuple[str, str, str]] = set()  # (image, annotator, task) of earlier jobs
    for task, p in pairs:
        path = Path(p)
        doc = load_json(path)
        before = sum(1 for t, _ in pairs[: len(summary["jobs"])] if t == task)
        got, notes = convert_results(
            doc, task, images, path, coherence_scale, point_units, job=before
        )
        if notes["unmatched"]:
            names = notes["unmatched"]
            listed = ", ".join(repr(n) for n in names[:MAX_LISTED])
            more = f" and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else ""
            raise InputError(
                f"{path}: {len(names)} result(s) match no image by originalFileName (the basename "
                f"of the images table's path, or its image_id): {listed}{more}"
            )
        # a top-up round's job may reach an annotator of an earlier one: their first answer
        # stays, a later one is counted (repeats within one job are left to the validation)
        keys = [(r["image_id"], r["annotator_id"], r["task"]) for r in got]
        fresh = [r for r, k in zip(got, keys, strict=True) if k not in seen]
        seen.update(keys)
        rows += fresh
        summary["jobs"].append(
            {
                "task": task,
                "path": str(path),
                "rows": len(fresh),
                "repeated_from_earlier_jobs": len(got) - len(fresh),
                **{k: v for k, v in notes.items() if k != "unmatched"},
            }
        )
    write_responses(rows, out)
    summary["rows"] = len(rows)
    return summary
