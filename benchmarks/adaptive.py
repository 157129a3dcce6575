"""Adaptive collection against a uniform allocation, on a simulator with a known truth.

Images differ in difficulty: each has its own spread of ratings (clear images 0.2-0.35
points, disputed ones 1.2-1.5; two mixes, ``SCENARIOS``), which a noisy annotator widens
1.8 times; spammers rate at random. Their weights are what a 10-question qualification
test would give them. The estimand of image i is the score a
trust-weighted mean converges to: sum over the pool of w_a E_a[rating_i] / sum w_a, computed
exactly from the rounding and clipping of the rating model.

Adaptive: 3 responses per image, then rounds of rfengine's own path — aggregate, save,
``plan_more`` at the target half-width, draw the responses it asks for from annotators who
have not yet rated that image — until it asks for nothing (or ``--max-rounds``). Uniform:
n responses per image for every n; the fewest n whose share of images within the target
(|estimate - truth| <= target) reaches the adaptive share, and its responses. Calibration:
the final plan's 95% intervals' coverage of the truth, overall and for the images that
stopped after the first round, where optional stopping would show first.

``--scale``: the plan of a seed-sized output (13k images, 1.5M responses) timed.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
from scipy.stats import norm

import rfengine
from rfengine.adaptive import Targets, plan_more

#: annotator kinds: (share of the pool, how much wider than the image's own spread they
#: rate (None: uniformly at random), accuracy on 10 qualification questions)
KINDS = {"reliable": (0.6, 1.0, 0.92), "noisy": (0.3, 1.8, 0.6), "spammer": (0.1, None, 0.25)}
CRITERION = "coherence"
#: difficulty mixes: (share of clear images, their rating spread, the disputed ones')
SCENARIOS = {
    "mixed": (0.6, 0.35, 1.2),  # many disputed images
    "mostly-clear": (0.8, 0.2, 1.5),  # most images clearly good or bad, a fifth disputed
}


def pool(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(kind index, spread factor (nan: spammer), trust weight) per annotator."""
    names = list(KINDS)
    kind = rng.choice(len(names), n, p=[KINDS[k][0] for k in names])
    extra = np.array([np.nan if KINDS[names[k]][1] is None else KINDS[names[k]][1] for k in kind])
    correct = rng.binomial(10, [KINDS[names[k]][2] for k in kind])
    return kind, extra, (correct + 1) / 12


def expected_rating(mu: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """E[clip(round(X), 1, 5)] for X ~ N(mu, sd) (elementwise; sd nan: uniform 1..5)."""
    edges = np.array([-np.inf, 1.5, 2.5, 3.5, 4.5, np.inf])
    p = np.diff(norm.cdf((edges[None, :] - mu[..., None]) / sd[..., None]), axis=-1)
    e = (p * np.arange(1, 6)).sum(-1)
    return np.where(np.isnan(sd), 3.0, e)


def draw(mu, tau, extra, rng):  # noqa: ANN001, ANN201
    sd = tau * np.nan_to_num(extra)  # disagreement is the image's, widened by the annotator
    r = np.clip(np.rint(mu + rng.normal(0, 1, mu.shape) * sd), 1, 5)
    return np.where(np.isnan(extra), rng.integers(1, 6, mu.shape), r).astype(int)


class World:
    """One simulated campaign: images, the pool, the truth, and who rated what."""

    def __init__(self, n_images: int, n_pool: int, seed: int, mix: tuple = (0.6, 0.35, 1.2)):
        rng = self.rng = np.random.default_rng(seed)
        self.mu = rng.uniform(1.5, 4.5, n_images)
        easy, tau_easy, tau_hard = mix
        self.tau = np.where(rng.random(n_images) < easy, tau_easy, tau_hard)
        self.kind, self.extra, self.w = pool(n_pool, rng)
        sd = self.tau[:, None] * np.nan_to_num(self.extra)[None, :]
        sd = np.where(np.isnan(self.extra)[None, :], np.nan, sd)
        e = expected_rating(np.repeat(self.mu[:, None], n_pool, 1), sd)
        self.truth = (e * self.w).sum(1) / self.w.sum()
        self.order = np.argsort(rng.random((n_images, n_pool)), axis=1)  # who rates next
        self.used = np.zeros(n_images, dtype=np.int64)

    def ask(self, more: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``more[i]`` new responses per image: (image, annotator, rating) arrays."""
        img = np.repeat(np.arange(len(more)), more)
        k = self.used[img] + np.arange(len(img)) - np.repeat(np.cumsum(more) - more, more)
        ann = self.order[img, k]
        self.used += more
        rating = draw(self.mu[img], self.tau[img], self.extra[ann], self.rng)
        return img, ann, rating


def estimates(n_images, img, ann, rating, w):  # noqa: ANN001, ANN201
    """Trust-weighted means (the uniform baseline, computed directly: rfengine's formula)."""
    tot = np.bincount(img, w[ann], minlength=n_images)
    return np.bincount(img, w[ann] * rating, minlength=n_images) / tot


def write(tmp: Path, n_images: int, img, ann, rating, w) -> tuple[Path, Path]:  # noqa: ANN001
    images = tmp / "images.jsonl"
    if not images.exists():
        images.write_text("".join(json.dumps({"image_id": f"im{k}", "prompt": "a cat",
                          "width": 8, "height": 8}) + "\n" for k in range(n_images)))  # fmt: skip
    resp = tmp / "responses.jsonl"
    resp.write_text("".join(
        json.dumps({"image_id": f"im{i}", "annotator_id": f"a{a}", "task": CRITERION,
                    "rating": int(r), "weight": float(w[a])}) + "\n"
        for i, a, r in zip(img, ann, rating, strict=True)))  # fmt: skip
    return images, resp


def adaptive(world: World, target: float, max_rounds: int, tmp: Path, growth, share) -> dict:  # noqa: ANN001
    n = len(world.mu)
    img, ann, rating = world.ask(np.full(n, 3))
    rounds, first_stop = 0, None
    for _ in range(max_rounds):
        images, resp = write(tmp, n, img, ann, rating, world.w)
        out = tmp / "out"
        rfengine.save_output(rfengine.aggregate(images, resp, device="cpu"), out, overwrite=True)
        table, _ = plan_more(out, Targets(target, max_growth=growth, share=share))
        rows = table.filter(pc.equal(table["task"], CRITERION))
        more = np.zeros(n, dtype=np.int64)
        k = np.array([int(s[2:]) for s in rows["image_id"].to_pylist()])
        more[k] = rows["more"].to_numpy()
        low, high = np.zeros(n), np.zeros(n)
        low[k], high[k] = rows["low"].to_numpy(), rows["high"].to_numpy()
        more = np.minimum(more, len(world.w) - world.used)  # the pool has no more annotators
        if first_stop is None:
            first_stop = more == 0
        if not more.any():
            break
        rounds += 1
        i2, a2, r2 = world.ask(more)
        img, ann, rating = (np.concatenate(x) for x in ((img, i2), (ann, a2), (rating, r2)))
    est = estimates(n, img, ann, rating, world.w)
    covered = (world.truth >= low) & (world.truth <= high)
    return {
        "responses": int(len(img)),
        "rounds": rounds,
        "share_within": float(np.mean(np.abs(est - world.truth) <= target)),
        "coverage": float(covered.mean()),
        "coverage_stopped_first": float(covered[first_stop].mean()) if first_stop.any() else None,
        "stopped_first": int(first_stop.sum()),
    }


def uniform(seed: int, n_images: int, n_pool: int, target: float, share: float, mix) -> dict:  # noqa: ANN001
    for per in range(3, n_pool):
        world = World(n_images, n_pool, seed, mix)  # the same images, pool and truth
        img, ann, rating = world.ask(np.full(n_images, per))
        est = estimates(n_images, img, ann, rating, world.w)
        got = float(np.mean(np.abs(est - world.truth) <= target))
        if got >= share:
            return {"per_image": per, "responses": per * n_images, "share_within": got}
    raise RuntimeError("the pool is too small for the uniform allocation")


def uniform_curve(seed: int, n_images: int, n_pool: int, target: float, mix, top: int) -> list:  # noqa: ANN001
    """The uniform allocation's share within target at 3..top responses per image."""
    out = []
    for per in range(3, top + 1):
        world = World(n_images, n_pool, seed, mix)
        img, ann, rating = world.ask(np.full(n_images, per))
        est = estimates(n_images, img, ann, rating, world.w)
        out.append(float(np.mean(np.abs(est - world.truth) <= target)))
    return out


def plot(res: dict, path: Path) -> None:
    """Share within target against responses per image: each scenario's uniform curve
    (mean over seeds) and its adaptive runs (points), side by side; Pillow only."""
    from PIL import Image, ImageDraw

    w, h, pad = 420, 300, 46
    img = Image.new("RGB", (w * len(res["scenarios"]), h + 30), "white")
    d = ImageDraw.Draw(img)
    for k, (name, sc) in enumerate(res["scenarios"].items()):
        x0 = k * w
        top = len(sc["uniform_curve"]) + 2

        def xy(n: float, share: float, x0: int = x0, top: int = top) -> tuple[float, float]:
            return (x0 + pad + (n / top) * (w - pad - 12), 12 + (1 - share) / 0.5 * (h - pad))

        d.rectangle([xy(0, 1.0), xy(top, 0.5)], outline=(180, 180, 180))
        for s in (0.6, 0.7, 0.8, 0.9, 1.0):
            d.text((x0 + 8, xy(0, s)[1] - 6), f"{s:.1f}", fill=(90, 90, 90))
        for n in range(0, top + 1, 20):
            d.text((xy(n, 0.5)[0] - 6, h - pad + 16), str(n), fill=(90, 90, 90))
        curve = [xy(n + 3, v) for n, v in enumerate(sc["uniform_curve"]) if v >= 0.5]
        d.line(curve, fill=(120, 120, 120), width=2)
        for r in sc["runs"]:
            a = r["adaptive"]
            cx, cy = xy(a["responses"] / res["images"], a["share_within"])
            d.ellipse([cx - 4, cy - 4, cx + 4, cy + 4], fill=(30, 110, 220))
        d.text((x0 + pad, h - 8), f"{name}: responses per image; grey uniform, blue adaptive",
               fill=(40, 40, 40))  # fmt: skip
        d.text((x0 + pad + 4, 16), "share of images within target", fill=(40, 40, 40))
    img.save(path)


def scale(tmp: Path) -> dict:
    """plan-more on a seed-sized output: 13k images, 1.5M responses (synthetic)."""
    import pyarrow.parquet as pq
    from synthetic import make_images, make_responses, write_images

    images = make_images(13_000, [(64, 64)], seed=2)
    write_images(images, tmp / "images.jsonl")
    pq.write_table(make_responses(images, 20, seed=2), tmp / "responses.parquet")
    t0 = time.perf_counter()
    opts = {"heatmap_size": "16x16", "reliability": True, "outputs": "dataset"}
    rfengine.aggregate_to_disk(tmp / "images.jsonl", tmp / "responses.parquet", tmp / "big", **opts)
    agg = time.perf_counter() - t0
    t0 = time.perf_counter()
    table, summary = plan_more(tmp / "big", Targets(0.25, heatmap_reliability=0.8))
    rows = pq.read_metadata(tmp / "responses.parquet").num_rows
    return {"images": 13_000, "responses": rows, "aggregate_s": round(agg, 1),
            "plan_s": round(time.perf_counter() - t0, 2), "plan_rows": table.num_rows}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=400)
    ap.add_argument("--pool", type=int, default=200)
    ap.add_argument("--target", type=float, default=0.25)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--max-rounds", type=int, default=10)
    ap.add_argument("--max-growth", type=float, default=1.0, help="plan-more --max-growth")
    ap.add_argument("--share", type=float, default=0.95, help="plan-more --share")
    ap.add_argument("--scale", action="store_true")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--plot", type=Path, help="write the figure here (PNG)")
    args = ap.parse_args()
    res: dict = {
        "machine": platform.machine(),
        "images": args.images,
        "pool": args.pool,
        "target": args.target,
        "max_growth": args.max_growth,
        "share": args.share,
        "scenarios": {},
    }
    for name, mix in SCENARIOS.items():
        runs = []
        for seed in range(args.seeds):
            with tempfile.TemporaryDirectory() as tmp:
                world = World(args.images, args.pool, seed, mix)
                a = adaptive(world, args.target, args.max_rounds, Path(tmp), args.max_growth,
                             args.share)  # fmt: skip
            u = uniform(seed, args.images, args.pool, args.target, a["share_within"], mix)
            saving = 1 - a["responses"] / u["responses"]
            runs.append({"seed": seed, "adaptive": a, "uniform": u, "saving": round(saving, 3)})
            print(name, json.dumps(runs[-1]))
        curves = [uniform_curve(sd, args.images, args.pool, args.target, mix, 100)
                  for sd in range(args.seeds)]  # fmt: skip
        res["scenarios"][name] = {
            "uniform_curve": [round(float(v), 4) for v in np.mean(curves, axis=0)],
            "easy_share": mix[0], "tau_easy": mix[1], "tau_hard": mix[2], "runs": runs,
            "saving_min": min(r["saving"] for r in runs),
            "saving_mean": round(float(np.mean([r["saving"] for r in runs])), 3),
            "rounds_max": max(r["adaptive"]["rounds"] for r in runs),
        }  # fmt: skip
    if args.scale:
        with tempfile.TemporaryDirectory() as tmp:
            res["scale"] = scale(Path(tmp))
        print(json.dumps(res["scale"]))
    for name, sc in res["scenarios"].items():
        print(name, {k: v for k, v in sc.items() if k not in ("runs", "uniform_curve")})
    if args.json:
        args.json.write_text(json.dumps(res, indent=1) + "\n")
    if args.plot:
        plot(res, args.plot)


if __name__ == "__main__":
    main()
