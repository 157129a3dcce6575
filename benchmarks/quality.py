"""Annotator quality without given trust: rfengine's estimate vs uniform vs crowd-kit.

Simulated campaigns (``rfengine.sim.simulate``) with planted reliable, noisy and spamming
annotators, plus a share turned *biased* here (every rating shifted down by 1.5 and
rounded, clicks and words untouched); the given trust is removed. Side by side in one run:

* rfengine ``--weights estimate --prior uniform`` and ``--weights uniform``;
* crowd-kit's MajorityVote, Wawa, DawidSkene, GLAD and MACE on what they take: each
  criterion's Likert ratings as 5 categories, and the word task as one binary label per
  (image, option): selected or not.

Figures per method: Spearman correlation of each criterion's score with the planted truth
(crowd-kit: the expected category under its posterior), rating accuracy (rounded score =
rounded truth), word-label accuracy and F1 (a token is "wrong" when at least half the
weight selected it; the planted wrong word, or No_Mistake on a clean image, is the truth),
heatmap peak distance to the planted defect (rfengine only: crowd-kit has no click model),
and the AUC of separating spammers from reliable annotators by the method's worker skill
(rfengine: the estimated weight; Wawa: skills; GLAD: alpha; DawidSkene: mean diagonal of
the confusion matrix; MACE: P(knowing); each pooled over the tasks it ran on by mean).

    pip install crowd-kit "scikit-learn<1.6"   # not dependencies of rfengine; crowd-kit
                                               # 1.4.2 fails with scikit-learn 1.9
    python benchmarks/quality.py [--images 200] [--seeds 3] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import datasets
import numpy as np
from scipy.stats import spearmanr

from rfengine import aggregate, load_dataset, save_output
from rfengine.sim.simulate import read_truth, simulate
from rfengine.train.metrics import recovery

CRITERIA = ("style", "coherence", "alignment")
BIASED_SHARE = 0.15


def _auc(low: np.ndarray, high: np.ndarray) -> float:
    """P(a spammer's skill < a reliable annotator's), ties counted half."""
    if not len(low) or not len(high):
        return float("nan")
    return float((low[:, None] < high[None, :]).mean() + 0.5 * (low[:, None] == high).mean())


def make_campaign(folder: Path, n_images: int, seed: int) -> tuple[Path, dict, dict, list]:
    """The simulated campaign with biased annotators planted and the trust removed."""
    camp = simulate(folder, n_images, seed)
    rng = np.random.default_rng(10_000 + seed)
    pool = [json.loads(x) for x in (camp / "annotators.jsonl").read_text().splitlines()]
    kinds = {a["id"]: a["kind"] for a in pool}
    for a in pool:
        if a["kind"] != "spammer" and rng.random() < BIASED_SHARE:
            kinds[a["id"]] = "biased"
    rows = [json.loads(x) for x in (camp / "responses.jsonl").read_text().splitlines()]
    for r in rows:
        r.pop("weight", None)
        if kinds[r["annotator_id"]] == "biased" and "rating" in r:
            r["rating"] = int(np.clip(np.rint(r["rating"] - 1.5), 1, 5))
    path = camp / "no-trust.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path, kinds, read_truth(camp / "truth.jsonl"), rows


def _word_truth(images: list[dict], truth: dict) -> dict[tuple[str, int], int]:
    """(image, option) -> 1 if that option is the planted wrong one (No_Mistake = last)."""
    out = {}
    for im in images:
        n = len(im["prompt"].split())
        mis = truth[im["image_id"]]["misalignment"]
        right = mis["word_index"] if mis else n
        for k in range(n + 1):
            out[(im["image_id"], k)] = int(k == right)
    return out


def _binary(pred: dict, gold: dict) -> dict[str, float]:
    keys = sorted(gold)
    p = np.array([pred.get(k, 0) for k in keys])
    g = np.array([gold[k] for k in keys])
    tp = int(((p == 1) & (g == 1)).sum())
    prec = tp / max(int((p == 1).sum()), 1)
    rec = tp / max(int((g == 1).sum()), 1)
    return {
        "word_accuracy": float((p == g).mean()),
        "word_f1": 2 * prec * rec / (prec + rec) if prec + rec else 0.0,
    }


def _ratings(scores: dict[str, dict[str, float]], truth: dict) -> dict[str, float]:
    out = {}
    for c in CRITERIA:
        ids = [i for i in truth if i in scores[c] and np.isfinite(scores[c][i])]
        s = np.array([scores[c][i] for i in ids])
        t = np.array([truth[i][c] for i in ids])
        out[f"{c}_spearman"] = float(spearmanr(s, t)[0])
        out[f"{c}_accuracy"] = float(
            (np.clip(np.rint(s), 1, 5) == np.clip(np.rint(t), 1, 5)).mean()
        )
    return out


def run_rfengine(
    images: Path, responses: Path, truth: dict, kinds: dict, weights: str, tmp: Path
) -> dict:
    t0 = time.perf_counter()
    res = aggregate(images, responses, weights=weights, prior="uniform", heatmap_size="64x64")
    seconds = time.perf_counter() - t0
    out = save_output(res, tmp / weights)
    ds = load_dataset(out)
    rec = recovery(ds, truth)
    scores = {c: dict(zip(ds["image_id"], ds[f"{c}_score"], strict=True)) for c in CRITERIA}
    scores = {c: {k: np.nan if v is None else v for k, v in s.items()} for c, s in scores.items()}
    pred = {}
    for row in ds.select_columns(
        ["image_id", "word_scores", "no_mistake_score", "word_weight_total"]
    ):
        if row["word_scores"] is None:
            continue
        total = row["word_weight_total"]
        values = [v for _, v in json.loads(row["word_scores"])] + [row["no_mistake_score"]]
        for k, v in enumerate(values):
            pred[(row["image_id"], k)] = int(total > 0 and v / total >= 0.5)
    figures = {
        **_ratings(scores, truth),
        "coherence_peak_distance": rec["coherence_peak_distance"],
        "alignment_peak_distance": rec["alignment_peak_distance"],
        "seconds": seconds,
    }
    if res.trust is not None:
        w = dict(zip(res.trust.annotator_ids, res.trust.weight, strict=True))
        figures["spammer_auc"] = _auc(
            np.array([w[a] for a, k in kinds.items() if k == "spammer" and a in w]),
            np.array([w[a] for a, k in kinds.items() if k == "reliable" and a in w]),
        )
    return figures, pred


def run_crowdkit(rows: list[dict], kinds: dict, truth: dict, images: list[dict]) -> dict:
    import pandas as pd
    from crowdkit.aggregation import GLAD, MACE, DawidSkene, MajorityVote, Wawa

    methods = {
        "MajorityVote": MajorityVote,
        "Wawa": Wawa,
        "DawidSkene": lambda: DawidSkene(n_iter=100),
        "GLAD": lambda: GLAD(n_iter=50, silent=True),
        "MACE": lambda: MACE(n_iter=50, random_state=0),
    }
    word_rows = []
    n_opts = {im["image_id"]: len(im["prompt"].split()) + 1 for im in images}
    for r in rows:
        if r["task"] == "words":
            chosen = set(r["selected"])
            for k in range(n_opts[r["image_id"]]):
                word_rows.append((f"{r['image_id']}|{k}", r["annotator_id"], int(k in chosen)))
    words = pd.DataFrame(word_rows, columns=["task", "worker", "label"])
    out = {}
    for name, make in methods.items():
        t0 = time.perf_counter()
        skills: dict[str, list[float]] = {}
        scores = {}
        for c in CRITERIA:
            df = pd.DataFrame(
                [
                    (r["image_id"], r["annotator_id"], int(r["rating"]))
                    for r in rows
                    if r["task"] == c
                ],
                columns=["task", "worker", "label"],
            )
            model = make()
            probs = model.fit_predict_proba(df)
            expected = (probs * probs.columns.to_numpy(dtype=float)).sum(axis=1) / probs.sum(axis=1)
            scores[c] = expected.to_dict()
            _collect_skills(name, model, df, skills)
        model = make()
        labels = model.fit_predict(words)
        pred = {(t.split("|")[0], int(t.split("|")[1])): int(v) for t, v in labels.items()}
        _collect_skills(name, model, words, skills)
        figures = {**_ratings(scores, truth), **_binary(pred, _word_truth(images, truth))}
        if skills:
            mean = {a: float(np.mean(v)) for a, v in skills.items()}
            figures["spammer_auc"] = _auc(
                np.array([mean[a] for a, k in kinds.items() if k == "spammer" and a in mean]),
                np.array([mean[a] for a, k in kinds.items() if k == "reliable" and a in mean]),
            )
        figures["seconds"] = time.perf_counter() - t0
        out[name] = figures
    return out


def _collect_skills(name: str, model, df, skills: dict[str, list[float]]) -> None:
    """Each worker's skill under ``model`` (see the module docstring), appended per task."""
    import pandas as pd

    if name == "Wawa" or name == "MajorityVote":
        s = model.skills_ if model.skills_ is not None else None
        if s is None or name == "MajorityVote":
            return
        items = s.items()
    elif name == "GLAD":
        items = model.alphas_.items()
    elif name == "DawidSkene":
        err = model.errors_  # index (worker, observed label), columns true label
        diag = {}
        for worker, block in err.groupby(level=0):
            m = block.droplevel(0)
            common = [k for k in m.columns if k in m.index]
            diag[worker] = float(np.mean([m.loc[k, k] for k in common]))
        items = diag.items()
    elif name == "MACE":
        _, names = pd.factorize(df["worker"])
        items = zip(names, model.spamming_[:, 1], strict=True)
    else:
        return
    for a, v in items:
        skills.setdefault(a, []).append(float(v))


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for name in ("rfengine", "crowd-kit", "scikit-learn", "numpy", "torch"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "quality.json")
    args = ap.parse_args()
    datasets.disable_progress_bars()
    runs = []
    for seed in range(args.seeds):
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            responses, kinds, truth, rows = make_campaign(tmp / "c", args.images, seed)
            images_path = tmp / "c" / "images.jsonl"
            images = [json.loads(x) for x in images_path.read_text().splitlines()]
            gold = _word_truth(images, truth)
            run = {
                "seed": seed,
                "annotators": {k: list(kinds.values()).count(k) for k in set(kinds.values())},
            }
            for w in ("estimate", "uniform"):
                figures, pred = run_rfengine(images_path, responses, truth, kinds, w, tmp)
                run[f"rfengine-{w}"] = {**figures, **_binary(pred, gold)}
            try:
                run.update(run_crowdkit(rows, kinds, truth, images))
            except ImportError:
                run["crowd-kit"] = "not installed (pip install crowd-kit)"
            runs.append(run)
            print(json.dumps(run, indent=1), flush=True)
    methods = [m for m in runs[0] if isinstance(runs[0][m], dict) and m != "annotators"]
    keys = sorted({k for r in runs for m in methods for k in r[m]})
    mean = {
        m: {k: float(np.nanmean([r[m].get(k, np.nan) for r in runs])) for k in keys}
        for m in methods
    }
    report = {
        "machine": f"{platform.machine()}, {platform.platform()}",
        "versions": _versions(),
        "images": args.images,
        "seeds": args.seeds,
        "mean": mean,
        "runs": runs,
    }
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    cols = ["style_spearman", "coherence_spearman", "alignment_spearman", "word_f1", "spammer_auc"]
    print(f"{'method':22s}" + "".join(f"{c:>20s}" for c in cols))
    for m in methods:
        print(f"{m:22s}" + "".join(f"{mean[m].get(c, np.nan):20.3f}" for c in cols))


if __name__ == "__main__":
    main()
