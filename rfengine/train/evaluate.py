"""``evaluate``: a model's predictions scored against an output's targets, as RAHF is.

Three steps, each its own function: the predictions read and checked (``read_predictions``:
a file that is not what it should be is an ``InputError`` naming it and what is wrong),
aligned with the targets by image id (``_align``: a prediction of an image the output does
not hold, or of one image twice, is an error; images the predictions leave out are
counted), and scored (``_score_maps``, ``_score_ratings``, ``_score_words``, with the
metrics of ``train.metrics``). A predicted value that cannot be scored (NaN or infinite,
a negative heatmap value) is an error, or with ``invalid="exclude"`` leaves that image out
of that figure and is counted; every figure says how many images it covers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from rfengine.errors import InputError, json_safe
from rfengine.schema import CRITERIA, HEATMAP_KINDS
from rfengine.store.load import Output, load_output
from rfengine.store.owned import check_file
from rfengine.train.metrics import (
    click_fixations,
    map_auc_judd,
    map_cc,
    map_kld,
    map_mse,
    map_nss,
    map_sim,
    pearson,
    rank_correlation,
    token_prf,
)

Invalid = Literal["error", "exclude"]
#: the first key of a report file: what marks it as written by ``rfengine evaluate``
GENERATOR = "rfengine evaluate"
_HINT = "pass --invalid exclude to leave such images out of that figure and count them"


@dataclass
class Prediction:
    """One predictions file, checked: its image ids and tensors (see ``evaluate``)."""

    path: Path
    ids: list[str]
    tensors: dict[str, torch.Tensor]


@dataclass
class _Tally:
    """What a run of ``evaluate`` left out, per figure, and why."""

    excluded: dict[str, dict[str, int]] = field(default_factory=dict)

    def leave_out(self, figure: str, why: str, n: int) -> None:
        if n:
            rec = self.excluded.setdefault(figure, {})
            rec[why] = rec.get(why, 0) + n


def _pred_files(pred: Path) -> list[Path]:
    files = sorted(pred.glob("*.safetensors")) if pred.is_dir() else [pred]
    if not files:
        raise InputError(f"{pred}: no .safetensors predictions")
    return files


def read_predictions(pred: str | Path) -> list[Prediction]:
    """Every predictions file of ``pred`` (a ``.safetensors`` file or a folder of them),
    read and checked for what ``evaluate`` relies on: metadata ``image_ids`` a JSON list of
    distinct strings, every tensor a float tensor of the documented shape."""
    from safetensors import safe_open

    found = []
    for path in _pred_files(Path(pred)):
        try:
            with safe_open(str(path), framework="pt") as fh:
                meta = fh.metadata() or {}
                tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
        except Exception as exc:  # safetensors raises its own error types for bad files
            raise InputError(f"{path}: not a readable safetensors file ({exc})") from None
        found.append(Prediction(path, _ids(path, meta), tensors))
        _check_shapes(found[-1])
    return found


def _ids(path: Path, meta: dict[str, str]) -> list[str]:
    if "image_ids" not in meta:
        raise InputError(f"{path}: metadata 'image_ids' (a JSON list) is missing")
    try:
        ids = json.loads(meta["image_ids"])
    except (ValueError, RecursionError):
        raise InputError(f"{path}: metadata 'image_ids' is not JSON") from None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise InputError(f"{path}: metadata 'image_ids' must be a JSON list of strings")
    if len(set(ids)) != len(ids):
        twice = next(i for i in ids if ids.count(i) > 1)
        raise InputError(f"{path}: image {twice!r} is predicted twice")
    return ids


def _check_shapes(p: Prediction) -> None:
    n, t = len(p.ids), p.tensors

    def bad(name: str, want: str) -> InputError:
        got = tuple(t[name].shape)
        return InputError(f"{p.path}: '{name}' must be {want} for {n} image_ids, got {got}")

    for name, tensor in t.items():
        if name != "word_offsets" and not tensor.is_floating_point():
            raise InputError(f"{p.path}: '{name}' must be a float tensor, got {tensor.dtype}")
    for kind in HEATMAP_KINDS:
        name = f"{kind}_heatmap"
        if name in t and (t[name].dim() != 3 or t[name].shape[0] != n):
            raise bad(name, "(N, H, W)")
    if "scores_norm" in t and tuple(t["scores_norm"].shape) != (n, len(CRITERIA)):
        raise bad("scores_norm", f"({n}, {len(CRITERIA)})")
    if "word_probs" in t:
        if t["word_probs"].dim() != 1:
            raise bad("word_probs", "1-D (T,)")
        off = t.get("word_offsets")
        if off is None:
            raise InputError(f"{p.path}: 'word_probs' needs 'word_offsets' (N + 1,)")
        if off.is_floating_point() or tuple(off.shape) != (n + 1,):
            raise bad("word_offsets", f"an integer tensor ({n + 1},)")
        if off[0] != 0 or bool((off[1:] < off[:-1]).any()) or off[-1] != len(t["word_probs"]):
            raise InputError(
                f"{p.path}: 'word_offsets' must rise from 0 to len(word_probs) = "
                f"{len(t['word_probs'])}"
            )


def _align(
    out: Output, preds: list[Prediction], target: Any, invalid: Invalid
) -> tuple[dict[str, tuple[int, int]], dict[str, int]]:
    """Where each image of the output is among its targets (``{image_id: (shard, row)}``),
    and the coverage counts; a predicted image the output does not hold, or predicted in
    two files, is an error, and so are images left out unless ``invalid="exclude"``."""
    where = {
        image_id: (s, q) for s, (_, meta) in enumerate(out.targets)
        for q, image_id in enumerate(meta["image_ids"])
    }  # fmt: skip
    seen: dict[str, Path] = {}
    for p in preds:
        unknown = [i for i in p.ids if i not in where]
        if unknown:
            raise InputError(f"{p.path}: image ids not in {target}: {unknown[:5]}")
        for i in p.ids:
            if i in seen:
                raise InputError(f"{p.path}: image {i!r} is predicted in {seen[i]} too")
            seen[i] = p.path
    missing = len(where) - len(seen)
    if missing and invalid == "error":
        absent = [i for i in where if i not in seen][:5]
        raise InputError(
            f"{target}: {missing} of {len(where)} images have no prediction (e.g. {absent}); "
            "pass --invalid exclude to score the others and count them"
        )
    coverage = {"images_in_target": len(where), "images_predicted": len(seen), "missing": missing}
    return where, coverage


def _bad_rows(values: torch.Tensor) -> torch.Tensor:
    """``(N,)`` which rows of maps ``values (N, H, W)`` hold a non-finite or negative value."""
    flat = values.reshape(len(values), -1)
    return ~torch.isfinite(flat).all(1) | (flat < 0).any(1)


def _usable(
    p: Prediction, name: str, rows: torch.Tensor, tally: _Tally, invalid: Invalid
) -> torch.Tensor:
    """Which rows of heatmap ``name`` can be scored: all, or an error naming the first bad
    image, or (``exclude``) the good ones, the others counted."""
    bad = _bad_rows(p.tensors[name][rows])
    if bool(bad.any()):
        if invalid == "error":
            k = int(rows[bad.nonzero()[0, 0]])
            raise InputError(
                f"{p.path}: '{name}' of image {p.ids[k]!r} holds a NaN, infinite or negative "
                f"value; {_HINT}"
            )
        tally.leave_out(name, "non-finite or negative prediction", int(bad.sum()))
    return ~bad


def evaluate(
    target: str | Path,
    pred: str | Path,
    *,
    threshold: float = 0.5,
    invalid: Invalid = "error",
) -> dict[str, Any]:
    """Score predictions against an rfengine output's targets, as RAHF is evaluated.

    ``pred`` is a safetensors file (or a folder of them) with metadata ``image_ids`` (a JSON
    list) and any of: ``coherence_heatmap``, ``alignment_heatmap`` ``(N, H, W)`` at the
    targets' size; ``scores_norm`` ``(N, 3)`` (style, coherence, alignment); ``word_probs``
    ``(T,)`` + ``word_offsets`` ``(N + 1,)``, each token's probability of a mistake.

    Returns per heatmap kind ``mse`` (over images with a target map) and ``cc``, ``kld``,
    ``sim``, ``nss``, ``auc_judd`` (over images whose target is not empty; NSS and
    AUC-Judd take the output pixels holding a click as fixations), with counts; per
    criterion ``plcc`` and ``srcc``; for words ``precision``, ``recall``, ``f1`` of the
    misaligned class, a target token being misaligned when its share of the word-task
    weight is at least ``threshold``. ``coverage`` says how many of the output's images
    were predicted and what was left out of which figure (``invalid="exclude"``); with
    ``invalid="error"`` (the default) a missing image or an unusable value is an error.
    """
    if invalid not in ("error", "exclude"):
        raise ValueError(f"invalid must be 'error' or 'exclude', got {invalid!r}")
    out = load_output(target)
    preds = read_predictions(pred)
    where, coverage = _align(out, preds, target, invalid)
    tally = _Tally()
    maps: dict[str, dict[str, list[torch.Tensor]]] = {}
    pairs: dict[str, list[np.ndarray]] = {c: [] for c in CRITERIA}
    words: tuple[list[np.ndarray], list[np.ndarray]] = ([], [])
    for p in preds:
        loc = [where[i] for i in p.ids]
        for kind in HEATMAP_KINDS:
            if f"{kind}_heatmap" in p.tensors:
                m = maps.setdefault(kind, {})
                _score_maps(out, p, loc, kind, m, tally=tally, invalid=invalid)
        if "scores_norm" in p.tensors:
            _score_ratings(out, p, loc, pairs, tally, invalid)
        if "word_probs" in p.tensors:
            _score_words(out, p, loc, threshold, words)
    return _report(maps, pairs, words, {**coverage, "excluded": tally.excluded})


def _score_maps(
    out: Output, p: Prediction, loc: list, kind: str, m: dict, *, tally: _Tally, invalid: Invalid
) -> None:
    name = f"{kind}_heatmap"
    got = p.tensors[name].double()
    by_shard: dict[int, list[int]] = {}  # predictions' positions per target shard
    for n, (s, _) in enumerate(loc):
        by_shard.setdefault(s, []).append(n)
    for s, pos in sorted(by_shard.items()):
        rows = torch.tensor([loc[n][1] for n in pos])
        t, _ = out.targets[s]
        gt = t[name][rows].double()
        if got.shape[1:] != gt.shape[1:]:
            raise InputError(
                f"{p.path}: {name} is {tuple(got.shape[1:])}, the targets of these images are "
                f"{tuple(gt.shape[1:])}"
            )
        ok = _usable(p, name, torch.tensor(pos), tally, invalid)
        off = t[f"{kind}_click_offsets"]
        clicks = torch.cat([t[f"{kind}_clicks"][off[r] : off[r + 1]] for r in rows])
        counts = torch.tensor([int(off[r + 1] - off[r]) for r in rows])
        offsets = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
        fix = click_fixations(clicks, offsets, tuple(gt.shape[1:]))
        pr = got[pos]
        has = t[f"{kind}_mask"][rows] & torch.isfinite(gt).all(dim=(1, 2)) & ok
        full = has & (gt.sum(dim=(1, 2)) > 0)
        m.setdefault("mse", []).append(map_mse(pr[has], gt[has]))
        for metric, fn in (("cc", map_cc), ("kld", map_kld), ("sim", map_sim)):
            m.setdefault(metric, []).append(fn(pr[full], gt[full]))
        m.setdefault("nss", []).append(map_nss(pr[full], fix[full]))
        m.setdefault("auc_judd", []).append(map_auc_judd(pr[full], fix[full]))


def _score_ratings(
    out: Output, p: Prediction, loc: list, pairs: dict, tally: _Tally, invalid: Invalid
) -> None:
    scores = p.tensors["scores_norm"].double()
    bad = ~torch.isfinite(scores)
    if bool(bad.any()) and invalid == "error":
        n, c = (int(v) for v in bad.nonzero()[0])
        raise InputError(
            f"{p.path}: 'scores_norm' of image {p.ids[n]!r} ({CRITERIA[c]}) is not finite; {_HINT}"
        )
    for c, crit in enumerate(CRITERIA):
        tally.leave_out(f"scores_norm.{crit}", "non-finite prediction", int(bad[:, c].sum()))
    for n, (s, q) in enumerate(loc):
        t, _ = out.targets[s]
        for c, crit in enumerate(CRITERIA):
            if t["scores_mask"][q, c] and not bad[n, c]:
                pairs[crit].append(np.array([float(scores[n, c]), float(t["scores_norm"][q, c])]))


def _score_words(
    out: Output, p: Prediction, loc: list, threshold: float, words: tuple[list, list]
) -> None:
    off = p.tensors["word_offsets"]
    for n, (s, q) in enumerate(loc):
        t, _ = out.targets[s]
        if not t["word_mask"][q]:
            continue
        w_off = t["word_offsets"]
        values = t["word_values"][w_off[q] : w_off[q + 1]]
        labels = (values / t["word_weight_total"][q] >= threshold).numpy().astype(int)
        probs = p.tensors["word_probs"][off[n] : off[n + 1]].numpy()
        if len(probs) != len(labels):
            raise InputError(
                f"{p.path}: image {p.ids[n]!r} has {len(probs)} word probabilities for "
                f"{len(labels)} words"
            )
        words[0].append((probs >= 0.5).astype(int))  # NaN is not >= 0.5: "no mistake"
        words[1].append(labels)


def _report(maps: dict, pairs: dict, words: tuple, coverage: dict) -> dict[str, Any]:
    report: dict[str, Any] = {"coverage": coverage, "heatmaps": {}, "scores": {}, "words": None}
    for kind, m in maps.items():
        vals = {name: torch.cat(v).double() for name, v in m.items()}
        rec: dict[str, Any] = {"mse": _mean(vals["mse"]), "images_with_target": len(vals["mse"])}
        for name in ("cc", "kld", "sim", "nss", "auc_judd"):
            rec[name] = _mean(vals[name])
        rec["images_not_empty"] = len(vals["cc"])
        report["heatmaps"][kind] = rec
    for crit, got in pairs.items():
        if got:
            a = np.stack(got)
            report["scores"][crit] = {
                "plcc": pearson(a[:, 0], a[:, 1]),
                "srcc": rank_correlation(a[:, 0], a[:, 1]),
                "images": len(a),
            }
    if words[1]:
        report["words"] = token_prf(np.concatenate(words[0]), np.concatenate(words[1]))
        report["words"]["images"] = len(words[1])
    return report


def _mean(v: torch.Tensor) -> float | None:
    ok = v[torch.isfinite(v)]
    return float(ok.mean()) if ok.numel() else None


def report_json(report: dict[str, Any]) -> str:
    """An ``evaluate`` report as the text ``rfengine evaluate`` prints and writes: valid
    JSON (a figure that could not be computed is null, never NaN) led by ``generator``.

    >>> print(report_json({"style": {"srcc": float("nan"), "n": 0}}), end="")
    {
      "generator": "rfengine evaluate",
      "style": {
        "srcc": null,
        "n": 0
      }
    }
    """
    doc = {"generator": GENERATOR, **json_safe(report)}
    return json.dumps(doc, indent=2, allow_nan=False) + "\n"


def _is_report(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            doc = json.loads(fh.read(64 << 20))
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and doc.get("generator") == GENERATOR


def check_report_target(path: Path, overwrite: bool) -> None:
    """Refuse ``path`` for a report unless free, or ``overwrite`` and an earlier report."""
    check_file(path, overwrite, _is_report, "a report rfengine evaluate wrote")


__all__ = [
    "GENERATOR",
    "Prediction",
    "check_report_target",
    "evaluate",
    "read_predictions",
    "report_json",
]
