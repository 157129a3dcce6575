"""A self-contained static HTML report of an aggregation output (images embedded inline)."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from rfengine.render.overlay import overlay, word_colours
from rfengine.schema import CRITERIA, HEATMAP_KINDS, REGION_KINDS
from rfengine.store.load import (
    as_heatmap,
    as_word_scores,
    load_annotators,
    load_dataset,
    load_manifest,
    read_row,
)
from rfengine.store.owned import check_file, head_contains, write_atomic
from rfengine.train.metrics import recovery

THUMB = 200
#: what marks a report as rfengine's (``--overwrite`` replaces only such a file)
REPORT_MARK = b'<meta name="generator" content="rfengine report">'

_CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{margin-bottom:4px} h2{margin-top:32px;border-bottom:1px solid #ddd}
.summary{color:#555} table{border-collapse:collapse} td,th{padding:4px 10px;border:1px solid #ddd}
th{background:#f4f4f4} .better{font-weight:bold;color:#0a6}
.grid{display:flex;flex-wrap:wrap;gap:14px} .card{border:1px solid #ddd;padding:8px;width:626px}
.card img{margin-right:4px;vertical-align:top} .scores{font-size:13px;color:#444;margin:4px 0}
.w{padding:1px 3px;margin:1px;border-radius:3px;display:inline-block;font-size:14px}
.hist{display:inline-block;margin-right:16px} pre{background:#f7f7f7;padding:10px;overflow:auto}
.null{color:#999}
"""


def _png(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def histogram(
    values: np.ndarray, title: str, bins: int = 16, span: tuple[float, float] = (1, 5)
) -> Image.Image:
    """A bar chart of values in ``span`` (scores: [1, 5]; nulls left out), drawn with Pillow."""
    v = values[np.isfinite(values)]
    counts, edges = np.histogram(v, bins=bins, range=span)
    W, H, pad = 360, 200, 30
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=12)
    top = max(int(counts.max()) if counts.size else 1, 1)
    bw = (W - 2 * pad) / bins
    for k, c in enumerate(counts):
        x0 = pad + k * bw
        y0 = H - pad - (H - 2 * pad) * c / top
        d.rectangle([x0 + 1, y0, x0 + bw - 1, H - pad], fill=(60, 110, 190))
    d.line([pad, H - pad, W - pad, H - pad], fill="black")
    for k in range(5):
        x = pad + k / 4 * (W - 2 * pad)
        tick = span[0] + k / 4 * (span[1] - span[0])
        d.text((x - 3, H - pad + 4), f"{tick:g}", fill="black", font=font)
    d.text((pad, 6), f"{title} (n={v.size}, max bin {top})", fill="black", font=font)
    return img


def _thumb(img: Image.Image) -> Image.Image:
    t = img.copy()
    t.thumbnail((THUMB, THUMB))
    return t


def _prompt_html(prompt: str, word_scores: str | None) -> str:
    words = prompt.split()
    if word_scores is None:
        return (
            " ".join(html.escape(w) for w in words)
            + ' <span class="null">(no word responses)</span>'
        )
    scores = as_word_scores(word_scores)
    spans = []
    for w, s, (r, g, b) in zip(words, scores, word_colours(scores), strict=True):
        style = f"background:rgb({r},{g},{b})"
        spans.append(f'<span class="w" style="{style}" title="{s:.3f}">{html.escape(w)}</span>')
    return "".join(spans)


def _fmt(v: Any) -> str:
    return '<span class="null">null</span>' if v is None or not np.isfinite(v) else f"{v:.2f}"


def _card(row: dict[str, Any]) -> str:
    imgs = []
    image = row.get("image")
    for kind in (k for k in HEATMAP_KINDS + REGION_KINDS if f"{k}_heatmap" in row):
        heat = as_heatmap(row[f"{kind}_heatmap"])
        if image is not None and heat is not None:
            imgs.append((kind, _thumb(overlay(image, heat))))
        elif heat is not None:
            imgs.append((kind, _thumb(Image.fromarray(np.uint8(np.clip(heat, 0, 1) * 255)))))
    tiles = ([("image", _thumb(image))] if image is not None else []) + imgs
    pics = "".join(f'<img src="{_png(t)}" title="{k}" alt="{k}">' for k, t in tiles)
    scores = " · ".join(f"{c} {_fmt(row[f'{c}_score'])}" for c in CRITERIA)
    name = html.escape(str(row["image_id"]))
    prompt = _prompt_html(str(row["prompt"]), row["word_scores"])
    return (
        f'<div class="card"><div>{pics}</div><div class="scores"><b>{name}</b> · {scores}</div>'
        f"<div>{prompt}</div></div>"
    )


#: the report's names of the weightings it compares
WEIGHTING_LABELS = {
    "trust": "trust-weighted",
    "estimate": "estimated trust",
    "uniform": "unweighted",
}


def _recovery_table(figures: dict[str, dict[str, float]]) -> str:
    """One column per output compared, the best of each row marked."""
    rows = [
        ("coherence_peak_distance", "coherence heatmap peak → planted defect (× smaller side)", -1),
        ("alignment_peak_distance", "alignment heatmap peak → planted defect (× smaller side)", -1),
        ("style_spearman", "style score rank correlation with truth", 1),
        ("coherence_spearman", "coherence score rank correlation with truth", 1),
        ("alignment_spearman", "alignment score rank correlation with truth", 1),
        ("top_word_accuracy", "top-scoring word = planted wrong word", 1),
    ]
    for c in ("coherence", "alignment"):  # where the truth and the output have regions
        rows += [
            (f"{c}_mask_cc", f"{c} point heatmap ~ planted object mask (Pearson)", 1),
            (f"{c}_region_mask_cc", f"{c} region heatmap ~ planted object mask (Pearson)", 1),
        ]
    names = list(figures)
    rows = [r for r in rows if all(r[0] in figures[n] for n in names)]
    head = "<tr><th>figure</th>" + "".join(f"<th>{html.escape(n)}</th>" for n in names) + "</tr>"
    body = []
    for key, label, sign in rows:
        vals = np.array([figures[n][key] for n in names], dtype=np.float64)
        best = np.nanmax(sign * vals) if np.isfinite(vals).any() else np.nan
        cells = f"<td>{label}</td>"
        for v in vals:
            mark = "better" if len(vals) > 1 and np.isfinite(v) and sign * v == best else ""
            cells += f'<td class="{mark}">{v:.3f}</td>'
        body.append(f"<tr>{cells}</tr>")
    return f"<table>{head}{''.join(body)}</table>"


def _annotators_section(label: str, out: Path) -> str:
    """The distribution of an output's estimated (and given) annotator weights."""
    table = load_annotators(out)
    parts = [f"<h3>{html.escape(label)}: {table.num_rows} annotators</h3>"]
    for col in ("weight_estimated", "weight_given"):
        v = table[col].to_numpy().astype(np.float64)
        span = (0.0, max(1.0, float(np.nanmax(v)) if v.size else 1.0))
        pic = histogram(v, col.replace("_", " "), bins=20, span=span)
        parts.append(f'<img class="hist" src="{_png(pic)}" alt="{col} histogram">')
    return "".join(parts)


def write_report(
    out: str | Path,
    html_path: str | Path | None = None,
    *,
    truth: dict[str, dict] | None = None,
    baseline: str | Path | dict[str, Path] | None = None,
    lowest: int = 6,
    overwrite: bool = False,
) -> tuple[Path, dict[str, Any]]:
    """Write the HTML report of output folder ``out``; returns its path and the figures.

    With ``truth`` (a simulated campaign's truth.jsonl, read by
    ``rfengine.sim.simulate.read_truth``) the report has recovery figures; with ``baseline``
    (another output of the same responses, e.g. ``--weights uniform``, or several as
    ``{name: folder}``) they are compared, and figures are keyed by ``"trust"`` (``out``)
    and each baseline's name (a single folder: ``"uniform"``). Outputs with
    ``annotators.parquet`` show their weights' distribution. An existing report is never
    replaced unless ``overwrite``.
    """
    out = Path(out)
    html_path = Path(html_path) if html_path else out / "report.html"
    check_file(html_path, overwrite, _is_report, "an rfengine report")
    ds = load_dataset(out)
    manifest = load_manifest(out)
    rows = [read_row(ds, k, out) for k in range(len(ds))]
    figures: dict[str, Any] = {}
    parts = [f"<h1>rfengine report</h1><p class='summary'>{html.escape(_summary(manifest))}</p>"]
    if isinstance(baseline, (str, Path)):
        baseline = {"uniform": Path(baseline)}
    others = {name: Path(f) for name, f in (baseline or {}).items()}
    if truth is not None:
        figures["trust"] = recovery(ds, truth)
        for name, folder in others.items():
            figures[name] = recovery(load_dataset(folder), truth)
        labels = {WEIGHTING_LABELS.get(n, n): f for n, f in figures.items()}
        parts.append("<h2>Recovery of the planted truth</h2>")
        parts.append(_recovery_table(labels))
    with_trust = [
        n for n, f in {"trust": out, **others}.items() if (f / "annotators.parquet").is_file()
    ]
    if with_trust:
        parts.append("<h2>Annotators</h2>")
        for name in with_trust:
            folder = out if name == "trust" else others[name]
            parts.append(_annotators_section(WEIGHTING_LABELS.get(name, name), folder))
    parts.append("<h2>Scores</h2>")
    for c in CRITERIA:
        vals = np.array(
            [np.nan if r[f"{c}_score"] is None else r[f"{c}_score"] for r in rows], dtype=np.float64
        )
        parts.append(f'<img class="hist" src="{_png(histogram(vals, c))}" alt="{c} histogram">')
    rendered: dict[int, str] = {}  # an image can be among the lowest and in the grid

    def card(k: int) -> str:
        if k not in rendered:
            rendered[k] = _card(rows[k])
        return rendered[k]

    parts.append("<h2>Lowest-scoring images</h2>")
    for c in ("alignment", "coherence"):
        scored = [k for k, r in enumerate(rows) if r[f"{c}_score"] is not None]
        worst = sorted(scored, key=lambda k: rows[k][f"{c}_score"])[:lowest]
        parts.append(f"<h3>{c}</h3><div class='grid'>{''.join(card(k) for k in worst)}</div>")
    cards = "".join(card(k) for k in range(len(rows)))
    parts.append(f"<h2>All images ({len(rows)})</h2><div class='grid'>{cards}</div>")
    parts.append(f"<h2>Manifest</h2><pre>{html.escape(json.dumps(manifest, indent=2))}</pre>")
    doc = (
        f"<!doctype html><html><head><meta charset='utf-8'>{REPORT_MARK.decode()}"
        "<title>rfengine report</title>"
        f"<style>{_CSS}</style></head><body>{''.join(parts)}</body></html>"
    )
    write_atomic(html_path, doc)
    return html_path, figures


def _is_report(path: Path) -> bool:
    return head_contains(path, REPORT_MARK)


def _summary(m: dict[str, Any]) -> str:
    c, cfg, run = m["counts"], m["config"], m["run"]
    secs = sum(run["timings_s"].values())
    return (
        f"{c['images']} images · {c['rows_read']} responses read ({c['rows_used']} used, "
        f"{c['rows_rejected']} rejected) · preset {cfg['preset']} · "
        f"heatmaps {cfg['heatmap_size']} · weights {cfg.get('weights', 'trust')} · "
        f"device {cfg['device']} · {secs:.1f} s · {run['created']}"
    )
