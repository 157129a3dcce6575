"""The dataset card: YAML metadata written by ``huggingface_hub``'s ``DatasetCardData`` and a
body generated from the output. Every number in it is read from the manifest or the dataset;
the prose says only what the numbers mean and how they were computed."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from rfengine.schema import CRITERIA

PRESETS = {
    "default": "each annotator's clicks become Gaussians of σ = 5% of the image's smaller side "
    "at the output pixel centres, divided by their own maximum; the heatmap is the trust-"
    "weighted mean of the annotators' maps (an annotator without clicks counts as a zero map)",
    "rapidata-2025": "the published dataset's method: each click snapped to its pixel, a "
    "discrete Gaussian filter of σ = min(W, H)/20 (truncated at 3σ, reflect boundaries), "
    "divided by its maximum, and the unweighted mean over annotators at native size",
}
WEIGHTS = {
    "trust": "each response's trust weight as given by the annotation service",
    "uniform": "every response weighs 1",
    "estimate": "each annotator's trust estimated by rfengine from their agreement with the "
    "others (`--weights estimate`)",
}
NORMS = {
    "default": "(score − 1) / 4",
    "rapidata-2025": "(score − min) / (max − min) over the dataset's images, per criterion",
}


def size_category(n: int) -> str:
    """The Hub's ``size_categories`` value for ``n`` rows."""
    for lo, hi, name in (
        (0, 1e3, "n<1K"),
        (1e3, 1e4, "1K<n<10K"),
        (1e4, 1e5, "10K<n<100K"),
        (1e5, 1e6, "100K<n<1M"),
        (1e6, 1e7, "1M<n<10M"),
    ):
        if lo <= n < hi:
            return name
    return "n>1T" if n >= 1e12 else "10M<n<100M" if n < 1e8 else "100M<n<1B"


def card_data(ds: Any, pretty_name: str, license: str, shards: list[Path]) -> Any:
    """The YAML metadata: name, license, categories, the data files and the features."""
    from datasets import DatasetInfo, SplitDict, SplitInfo
    from datasets.info import DatasetInfosDict
    from huggingface_hub import DatasetCardData

    data = DatasetCardData(
        pretty_name=pretty_name,
        license=license,
        task_categories=["text-to-image"],
        size_categories=[size_category(len(ds))],
        tags=["human-feedback", "rich-human-feedback", "heatmaps", "rfengine"],
        configs=[
            {"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}
        ],
    )
    splits = SplitDict()
    splits.add(
        SplitInfo(
            name="train", num_examples=len(ds), num_bytes=sum(p.stat().st_size for p in shards)
        )
    )
    info = DatasetInfo(features=ds.features, splits=splits)
    DatasetInfosDict({"default": info}).to_dataset_card_data(data)
    return data


def _f(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def _score_table(ds: Any) -> list[str]:
    rows = [
        "| criterion | images rated | responses | mean score | median | mean CI half-width |",
        "|---|---|---|---|---|---|",
    ]
    for c in CRITERIA:
        s = np.asarray(ds[f"{c}_score"], dtype=np.float64)
        n = np.asarray(ds[f"{c}_count"], dtype=np.int64)
        lo = np.asarray(ds[f"{c}_ci_low"], dtype=np.float64)
        hi = np.asarray(ds[f"{c}_ci_high"], dtype=np.float64)
        ok = np.isfinite(s)
        half = (hi - lo)[np.isfinite(hi - lo)] / 2
        rows.append(
            f"| {c} | {int(ok.sum())} | {int(n.sum())} | "
            f"{_f(float(s[ok].mean()) if ok.any() else None)} | "
            f"{_f(float(np.median(s[ok])) if ok.any() else None)} | "
            f"{_f(float(half.mean()) if half.size else None)} |"
        )
    return rows


def card_body(
    ds: Any,
    manifest: dict[str, Any],
    names: tuple[str, str],
    figures: dict[str, list[str]],
    campaign: dict[str, Any] | None,
) -> str:
    """The card's Markdown body, from the dataset, its manifest and the figures' paths;
    ``names`` is (title, what ``load_dataset`` is given: the repository or the folder)."""
    pretty_name, repo_id = names
    counts, config = manifest["counts"], manifest["config"]
    preset = config["preset"]
    lines = [
        f"# {pretty_name}",
        "",
        "Rich human feedback on text-to-image generations: per image, trust-weighted Likert "
        "scores (1–5) for style, coherence and prompt alignment, the prompt words annotators "
        "marked as not matching the image, and heatmaps of the areas they clicked as "
        "incoherent or misaligned. Aggregated and published by "
        f"rfengine {manifest['versions']['rfengine']}.",
        "",
        "```python",
        "from datasets import load_dataset",
        "",
        f'ds = load_dataset("{repo_id}", split="train")',
        "```",
        "",
        "## Counts",
        "",
        "| | |",
        "|---|---|",
        f"| images | {counts['images']} |",
        f"| responses read | {counts['rows_read']} |",
        f"| responses used | {counts['rows_used']} |",
        f"| responses rejected | {counts['rows_rejected']} |",
    ]
    trust = manifest.get("trust")
    if trust:
        lines.append(f"| annotators (trust estimated) | {trust['annotators']} |")
    lines += ["", *_score_table(ds), "", "## Method", ""]
    lines += [
        f"- **Scores**: the weighted mean of the ratings; `*_score_norm` = {NORMS[preset]}; "
        "`*_std`, `*_n_eff`, `*_se` and `*_ci_low`/`*_ci_high` give each score's spread, "
        "effective sample size and 95% interval.",
        f"- **Weights**: {WEIGHTS[config['weights']]}.",
        "- **Word scores** (`word_scores`): per prompt word, the summed weight of the "
        'annotators who selected it; `no_mistake_score` for the explicit "no mistake"; '
        "`word_weight_total` is the total weight of the image's word responses.",
        f"- **Heatmaps** (preset `{preset}`, size {config['heatmap_size']}, "
        f"{config['dtype']}): {PRESETS[preset]}.",
    ]
    if campaign is not None:
        lines.append(
            f"- **Collection**: on {campaign.get('frontend', 'rapidata')}; the point tasks "
            f"were asked for images scoring below {_f(campaign.get('threshold_used'), 2)} on "
            "coherence or alignment in stage one."
        )
    rel = manifest.get("reliability") or {}
    if rel:
        lines += [
            "",
            "## Reliability",
            "",
            "| criterion | Krippendorff's α (ordinal) | α (interval) | pairable ratings |",
            "|---|---|---|---|",
        ]
        for c in CRITERIA:
            r = rel.get(c) or {}
            lines.append(
                f"| {c} | {_f(r.get('krippendorff_alpha_ordinal'))} | "
                f"{_f(r.get('krippendorff_alpha_interval'))} | {r.get('pairable_ratings', '–')} |"
            )
        heat = {k: v for k, v in sorted(rel.items()) if k.endswith("_heatmap")}
        if heat:
            lines += ["", "| heatmap | split-half reliability (median) | images |", "|---|---|---|"]
            lines += [
                f"| `{k}` | {_f(v.get('split_half_median'))} | {v.get('images', '–')} |"
                for k, v in heat.items()
            ]
    if figures.get("histograms"):
        lines += ["", "## Score distributions", ""]
        lines += [f"![{Path(p).stem}]({p})" for p in figures["histograms"]]
    if figures.get("examples"):
        lines += [
            "",
            "## Examples",
            "",
            "Each image, its coherence and alignment heatmaps, and the prompt coloured "
            "by word score (rendered by `rfengine render`).",
            "",
        ]
        lines += [f"![{Path(p).stem}]({p})" for p in figures["examples"]]
    lines += ["", "## Columns", "", "| column | type | meaning |", "|---|---|---|"]
    lines += [
        f"| `{name}` | {_type(feat)} | {meaning(name)} |" for name, feat in ds.features.items()
    ]
    lines += [
        "",
        "## Provenance",
        "",
        f"rfengine {manifest['versions']['rfengine']}, "
        f"created {manifest.get('run', {}).get('created', '–')}; inputs:",
        "",
    ]
    lines += [
        f"- `{Path(i['path']).name}`: {i['bytes']} bytes, sha256 `{i['sha256']}`"
        for i in manifest.get("inputs", [])
    ]
    return "\n".join(lines) + "\n"


_SUFFIXES = {
    "_score_norm": "the score mapped to [0, 1] (see Method)",
    "_score": "trust-weighted mean rating, 1–5 (null: no ratings)",
    "_heatmap": "(H, W) heatmap in [0, 1] (see Method; null: not collected)",
    "_count": "number of ratings",
    "_weight": "sum of the ratings' weights",
    "_std": "weighted standard deviation of the ratings",
    "_n_eff": "effective sample size, (Σw)² / Σw²",
    "_se": "standard error of the score",
    "_ci_low": "95% confidence interval, lower end",
    "_ci_high": "95% confidence interval, upper end",
}
_NAMES = {
    "image": "the generated image",
    "prompt": "the prompt it was generated from",
    "image_id": "the image's id in the campaign",
    "word_scores": "JSON [[word, score], ...]: each prompt word's summed selection weight",
    "no_mistake_score": "summed weight of the annotators who found no wrong word",
    "word_weight_total": "total weight of the image's word responses",
}


def meaning(name: str) -> str:
    """What a dataset column holds, in a few words (by name, or by its suffix)."""
    if name in _NAMES:
        return _NAMES[name]
    head = name.split("_")[0]
    for suffix, text in _SUFFIXES.items():
        if name.endswith(suffix):
            about = "no-mistake share" if head == "no" else head
            return f"{about}: {text}"
    return ""


def _type(feat: Any) -> str:
    text = repr(feat)
    return text.replace("|", "\\|") if len(text) < 80 else type(feat).__name__
