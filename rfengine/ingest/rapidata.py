"""Rapidata job results -> responses in the interchange format.

Reads the results JSON of rapidata 3.x (``job.get_results()`` / the download: ``results[]``
with ``originalFileName`` and ``detailedResults[]``, trust in
``userDetails.userScores.global``) and of 2.x (``results.data[]``, trust in
``userDetails.userScore``):

* classification (style, coherence, alignment): ``selectedCategory`` "N: text" -> rating N;
  coherence is asked as error severity in the seed (5 = most errors), so it becomes 6 - N
  unless the job asked on the coherence scale (``coherence_scale="coherence"``);
* locate (coherence_points, alignment_points): ``location`` ``[{x, y}]`` in percent of the
  image -> ``[[x, y]]`` fractions;
* select words: ``selectedWords`` ``[{word, wordIndex}]`` -> indices into
  ``prompt.split()`` (+ "[No_Mistake]"), each word checked against the prompt.

Results are matched to images by ``originalFileName``: the basename of the images table's
``path``, or the ``image_id``. Names from results are matched only, never opened as paths.
Where results carry no annotator id, each response gets a stable id of its own, so
duplicate detection cannot work for that file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from rfengine.errors import InputError
from rfengine.ingest.images import Images
from rfengine.schema import CRITERIA, NO_MISTAKE, TASKS

CoherenceScale = Literal["severity", "coherence"]
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


def _points(detail: dict, at: str) -> list[list[float]]:
    """``location`` [{x, y}] in percent -> [[x, y]] image fractions."""
    loc = detail.get("location", [])
    loc = [loc] if isinstance(loc, dict) else loc
    pts = []
    for p in loc if isinstance(loc, list) else [None]:
        x, y = (p.get("x"), p.get("y")) if isinstance(p, dict) else (None, None)
        if not all(isinstance(v, (int, float)) and 0 <= v <= 100 for v in (x, y)):
            raise _bad(at, "location", f"expected {{x, y}} in percent (0-100), got {p!r}")
        pts.append([x / 100, y / 100])
    return pts


def _words(detail: dict, tokens: list[str], at: str) -> list[int]:
    """``selectedWords`` [{word, wordIndex}] -> indices, each word checked against the prompt."""
    sel = []
    for w in detail.get("selectedWords") or []:
        idx, word = (w.get("wordIndex"), w.get("word")) if isinstance(w, dict) else (None, None)
        if not isinstance(idx, int) or not 0 <= idx < len(tokens):
            why = f"word index {idx!r} outside the prompt's {len(tokens) - 1} words + {NO_MISTAKE}"
            raise _bad(at, "selectedWords", why)
        if word != tokens[idx]:
            why = f"word {word!r} at index {idx}, but the prompt has {tokens[idx]!r} there"
            raise _bad(at, "selectedWords", why)
        sel.append(idx)
    return sel


def _results_items(doc: Any, path: Path) -> tuple[list[dict], str]:
    """The per-datapoint result items and the layout name ('3.x' or '2.x')."""
    if isinstance(doc, dict) and isinstance(doc.get("results"), list):
        return doc["results"], "3.x"
    if isinstance(doc, dict) and isinstance(doc.get("results"), dict):
        data = doc["results"].get("data")
        if isinstance(data, list):
            return data, "2.x"
    raise InputError(f"{path}: not a Rapidata results file (no results[] or results.data[])")


def _annotator(detail: dict, task: str, name: str, k: int) -> tuple[str, bool]:
    """The annotator id the results carry, else a stable id for this response."""
    user = detail.get("userDetails") or {}
    for src in (detail, user):
        for key in _ID_KEYS:
            v = src.get(key)
            if isinstance(v, (str, int)) and not isinstance(v, bool) and str(v):
                return str(v), True
    digest = hashlib.sha1(f"{task}\0{name}\0{k}".encode()).hexdigest()[:16]
    return f"anon-{digest}", False


def _weight(detail: dict, layout: str) -> float | None:
    user = detail.get("userDetails") or {}
    w = (user.get("userScores") or {}).get("global") if layout == "3.x" else user.get("userScore")
    if w is None:  # accept either key in either layout
        w = user.get("userScore", (user.get("userScores") or {}).get("global"))
    return float(w) if isinstance(w, (int, float)) and not isinstance(w, bool) else None


def convert_results(
    doc: Any,
    task: str,
    images: Images,
    path: Path,
    coherence_scale: CoherenceScale = "severity",
) -> tuple[list[dict], dict[str, Any]]:
    """One job's results document -> (interchange rows, notes).

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
        for k, detail in enumerate(item.get("detailedResults") or []):
            at = f"{where}.detailedResults[{k}]"
            ann, has_id = _annotator(detail, task, name, k)
            weight = _weight(detail, layout)
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
                out["points"] = _points(detail, at)
            else:
                out["selected"] = _words(detail, tokens, at)
            rows.append(out)
    notes["unmatched"] = unmatched
    return rows, notes


def import_rapidata(
    images: Images,
    jobs: dict[str, str | Path] | list[tuple[str, str | Path]],
    out: str | Path,
    coherence_scale: CoherenceScale = "severity",
) -> dict[str, Any]:
    """Convert Rapidata results files (``task -> results.json``) into one responses file.

    ``out`` ends in .jsonl or .parquet and appears atomically. Returns a summary: rows per
    task and the notes of ``convert_results``. Names matching no image are an error listing
    them (up to ten) and their count.
    """
    out = Path(out)
    if out.suffix.lower() not in (".jsonl", ".parquet"):
        raise InputError(f"{out}: the responses file must end in .jsonl or .parquet")
    pairs = list(jobs.items()) if isinstance(jobs, dict) else list(jobs)
    rows: list[dict] = []
    summary: dict[str, Any] = {"jobs": []}
    for task, p in pairs:
        path = Path(p)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(f"{path}: no such file") from None
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: line {exc.lineno}: malformed JSON: {exc.msg}") from None
        got, notes = convert_results(doc, task, images, path, coherence_scale)
        if notes["unmatched"]:
            names = notes["unmatched"]
            listed = ", ".join(repr(n) for n in names[:MAX_LISTED])
            more = f" and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else ""
            raise InputError(
                f"{path}: {len(names)} result(s) match no image by originalFileName (the basename "
                f"of the images table's path, or its image_id): {listed}{more}"
            )
        rows += got
        summary["jobs"].append(
            {
                "task": task,
                "path": str(path),
                "rows": len(got),
                **{k: v for k, v in notes.items() if k != "unmatched"},
            }
        )
    tmp = out.with_name(f".{out.name}.partial")
    if out.suffix.lower() == ".parquet":
        from rfengine.ingest.responses import SCHEMA

        pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), tmp)
    else:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    tmp.replace(out)
    summary["rows"] = len(rows)
    return summary
