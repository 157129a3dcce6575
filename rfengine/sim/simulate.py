"""A deterministic simulated campaign with a known truth, in the interchange format.

Images are drawn with Pillow from a small scene grammar ("two red circles and a blue square
on a grey background"), with planted defects of known place and kind:

* misalignment: a group drawn in the wrong colour, one object too many, or an object
  missing; the prompt word that is wrong is known, and (except for a missing object) where;
* incoherence: one object broken and smeared; its place is known.

Simulated annotators have a spread of reliability (reliable, noisy, spammers). Their trust
weight is a smoothed qualification score, as a labelling service assigns: the share of 10
known-answer questions they got right. Reliable annotators rate near the truth, click near
defects and pick the wrong word; noisy ones less so; spammers answer at random.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from rfengine.ingest.regions import mask_counts
from rfengine.schema import CRITERIA, REGION_TASKS, TASKS, Task
from rfengine.store.owned import new_folder

COLOURS = {
    "red": (214, 39, 40),
    "green": (44, 160, 44),
    "blue": (31, 119, 220),
    "yellow": (240, 200, 30),
    "purple": (148, 103, 189),
    "orange": (255, 127, 14),
}
BACKGROUNDS = {"white": (245, 245, 240), "grey": (150, 150, 150), "beige": (225, 210, 175)}
SHAPES = {"circle": "circles", "square": "squares", "triangle": "triangles"}
COUNT_WORDS = {1: "a", 2: "two", 3: "three"}
SIZES = [(256, 256), (320, 240), (240, 320)]  # (width, height)
KINDS = {"reliable": (0.45, 0.92), "noisy": (0.30, 0.60), "spammer": (0.25, 0.25)}


@dataclass(frozen=True)
class Annotator:
    """A simulated annotator: kind, accuracy on known answers, and the trust it earned."""

    id: str
    kind: str
    weight: float


def make_annotators(n: int, rng: np.random.Generator) -> list[Annotator]:
    """A pool with the KINDS mix; weight = (correct + 1) / (10 + 2) on 10 qualification items."""
    kinds = list(KINDS)
    shares = np.array([KINDS[k][0] for k in kinds])
    out = []
    for i in range(n):
        kind = kinds[int(rng.choice(len(kinds), p=shares / shares.sum()))]
        correct = int(rng.binomial(10, KINDS[kind][1]))
        out.append(Annotator(f"sim-{i:04d}", kind, round((correct + 1) / 12, 4)))
    return out


def _place(rng: np.random.Generator, n: int, w: int, h: int, r: float) -> list[tuple[float, float]]:
    """n centres (pixels) at least 2.3 r apart and r from the border (rejection sampling)."""
    pts: list[tuple[float, float]] = []
    for _ in range(2000):
        if len(pts) == n:
            break
        p = (float(rng.uniform(r, w - r)), float(rng.uniform(r, h - r)))
        if all((p[0] - q[0]) ** 2 + (p[1] - q[1]) ** 2 > (2.3 * r) ** 2 for q in pts):
            pts.append(p)
    return pts


def _draw_shape(
    draw: ImageDraw.ImageDraw, shape: str, c: tuple[float, float], r: float, fill
) -> None:
    x, y = c
    if shape == "circle":
        draw.ellipse([x - r, y - r, x + r, y + r], fill=fill)
    elif shape == "square":
        draw.rectangle([x - 0.85 * r, y - 0.85 * r, x + 0.85 * r, y + 0.85 * r], fill=fill)
    else:
        draw.polygon([(x, y - r), (x - r, y + 0.8 * r), (x + r, y + 0.8 * r)], fill=fill)


def _break(img: Image.Image, c: tuple[float, float], r: float, rng: np.random.Generator) -> None:
    """Incoherence: cut the object, shift its lower half sideways by 0.4-0.8 r and smear the
    region (blur radius r/3), strong enough to stay visible at 64x64, the size a CPU-trained
    model sees (examples/train_reward_model.py)."""
    x0, y0, x1, y1 = (
        int(c[0] - 1.2 * r),
        int(c[1] - 1.2 * r),
        int(c[0] + 1.2 * r),
        int(c[1] + 1.2 * r),
    )
    box = (max(x0, 0), max(y0, 0), min(x1, img.width), min(y1, img.height))
    patch = img.crop(box)
    half = patch.crop((0, patch.height // 2, patch.width, patch.height))
    # one draw (as many as the scene's other choices expect): a magnitude and a side
    lo, hi = int(0.4 * r), int(0.8 * r)
    k = int(rng.integers(0, 2 * (hi - lo + 1)))
    shift = (lo + k // 2) * (1 if k % 2 else -1)
    patch.paste(half, (shift, patch.height // 2))
    img.paste(patch.filter(ImageFilter.GaussianBlur(radius=max(1.0, r / 3))), box[:2])


def make_scene(k: int, rng: np.random.Generator) -> tuple[Image.Image, str, dict[str, Any]]:
    """Draw scene k; returns the image, its prompt and its truth record."""
    w, h = SIZES[k % len(SIZES)]
    r = 0.09 * min(w, h)
    n_groups = int(rng.integers(1, 3))
    colours = rng.choice(list(COLOURS), size=n_groups + 1, replace=False)
    shapes = rng.choice(list(SHAPES), size=n_groups, replace=False)
    bg = str(rng.choice(list(BACKGROUNDS)))
    groups, tokens = [], []
    for g in range(n_groups):
        count = int(rng.integers(1, 4))
        if g:
            tokens.append("and")
        shape = str(shapes[g])
        idx = {"count": len(tokens), "colour": len(tokens) + 1, "shape": len(tokens) + 2}
        tokens += [COUNT_WORDS[count], str(colours[g]), shape if count == 1 else SHAPES[shape]]
        groups.append({"count": count, "colour": str(colours[g]), "shape": shape, "idx": idx})
    tokens += ["on", "a", bg, "background"]

    truth: dict[str, Any] = {"misalignment": None, "incoherence": None}
    draw_counts = [g["count"] for g in groups]
    draw_colours = [g["colour"] for g in groups]
    if rng.random() < 0.55:
        g = int(rng.integers(n_groups))
        kind = str(rng.choice(["wrong_colour", "extra_object", "missing_object"]))
        if kind == "wrong_colour":
            draw_colours[g] = str(colours[n_groups])  # a colour no group uses
            word = groups[g]["idx"]["colour"]
        elif kind == "extra_object" and groups[g]["count"] < 3:
            draw_counts[g] += 1
            word = groups[g]["idx"]["count"]
        else:
            kind = "missing_object"
            draw_counts[g] -= 1
            word = groups[g]["idx"]["count" if groups[g]["count"] > 1 else "shape"]
        truth["misalignment"] = {"kind": kind, "group": g, "word_index": word, "word": tokens[word]}

    img = Image.new("RGB", (w, h), BACKGROUNDS[bg])
    draw = ImageDraw.Draw(img)
    centres = _place(rng, sum(draw_counts) + 1, w, h, r)  # one spare for a missing object
    objects, pos = [], 0
    for g, group in enumerate(groups):
        for j in range(draw_counts[g]):
            c = centres[pos]
            pos += 1
            _draw_shape(draw, group["shape"], c, r, COLOURS[draw_colours[g]])
            objects.append(
                {"group": g, "centre": c, "extra": j >= group["count"], "shape": group["shape"]}
            )
    mis = truth["misalignment"]
    if mis is not None:
        if mis["kind"] == "wrong_colour":
            where = [o["centre"] for o in objects if o["group"] == mis["group"]]
        elif mis["kind"] == "extra_object":
            where = [o["centre"] for o in objects if o["extra"]]
        else:
            where = []  # a missing object has no place to point at
        mis["points"] = [[x / w, y / h] for x, y in where]
        mis["regions"] = [
            _outline(o["shape"], o["centre"], r, w, h)
            for o in objects
            if (o["group"] == mis["group"] if mis["kind"] == "wrong_colour" else o["extra"])
        ]
    if objects and rng.random() < 0.5:
        o = objects[int(rng.integers(len(objects)))]
        _break(img, o["centre"], r, rng)
        truth["incoherence"] = {
            "points": [[o["centre"][0] / w, o["centre"][1] / h]],
            "regions": [_outline(o["shape"], o["centre"], r, w, h)],
        }
    # graded truths: clean images rate high, defects by severity (a missing object is worst)
    severity = {"wrong_colour": 2.5, "extra_object": 3.0, "missing_object": 1.8}
    truth["alignment"] = round(
        float(rng.uniform(4.2, 5.0))
        if mis is None
        else severity[mis["kind"]] + float(rng.uniform(-0.5, 0.5)),
        3,
    )
    truth["coherence"] = round(
        float(rng.uniform(4.2, 5.0))
        if truth["incoherence"] is None
        else float(rng.uniform(1.5, 3.0)),
        3,
    )
    truth["style"] = round(float(np.clip(rng.normal(3.5, 0.7), 1, 5)), 3)
    return img, " ".join(tokens), truth


def _outline(shape: str, c: tuple[float, float], r: float, w: int, h: int) -> list[list[float]]:
    """A drawn object's outline as a polygon in image fractions (a circle as a 32-gon)."""
    x, y = c
    if shape == "circle":
        ang = np.linspace(0, 2 * np.pi, 32, endpoint=False)
        pts = [(x + r * np.cos(a), y + r * np.sin(a)) for a in ang]
    elif shape == "square":
        s = 0.85 * r
        pts = [(x - s, y - s), (x + s, y - s), (x + s, y + s), (x - s, y + s)]
    else:
        pts = [(x, y - r), (x + r, y + 0.8 * r), (x - r, y + 0.8 * r)]
    return [[round(float(px / w), 5), round(float(py / h), 5)] for px, py in pts]


def _trace(
    outline: np.ndarray, rng: np.random.Generator, grow: float, jitter: float, shift: float
) -> list[list[float]]:
    """A hand-drawn copy of a convex outline: 10-30 points spaced along its perimeter,
    each moved radially from the centroid by ``grow`` times 1 + N(0, jitter), the whole
    shifted by N(0, shift); points stay in angular order around the centroid (so the
    polygon stays simple) and inside the image."""
    m = int(rng.integers(10, 31))
    c = outline.mean(axis=0)
    closed = np.vstack([outline, outline[:1]])
    seg = np.hypot(*np.diff(closed, axis=0).T)
    at = (rng.uniform() + np.arange(m)) / m * seg.sum()
    k = np.minimum(np.searchsorted(np.cumsum(seg), at, side="right"), len(seg) - 1)
    frac = (at - (np.cumsum(seg) - seg)[k]) / np.maximum(seg[k], 1e-12)
    pts = closed[k] + (closed[k + 1] - closed[k]) * frac[:, None]
    scale = grow * np.clip(1 + rng.normal(0, jitter, m), 0.3, None)
    pts = np.clip(c + rng.normal(0, shift, 2) + (pts - c) * scale[:, None], 0.001, 0.999)
    out = [[round(float(p[0]), 5), round(float(p[1]), 5)] for p in pts]
    return [p for k, p in enumerate(out) if p != out[k - 1]]


def _blob(rng: np.random.Generator) -> list[list[float]]:
    """A scribble anywhere: a random convex-ish blob (a spammer's region)."""
    ang = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    r = float(rng.uniform(0.05, 0.2))
    circle = rng.uniform(0.2, 0.8, 2) + r * np.stack([np.cos(ang), np.sin(ang)], 1)
    return _trace(circle, rng, 1.0, 0.15, 0.0)


def _regions(
    targets: list[list[list[float]]], kind: str, size: tuple[int, int], rng: np.random.Generator
) -> list[dict[str, Any]]:
    """Regions drawn around the targets: careful annotators outline them (reliable ones
    closely, noisy ones too large), a third of them with a brush (a mask at the image's
    size); spammers scribble anywhere; some annotators mark nothing."""
    careful = {"reliable": 0.9, "noisy": 0.6, "spammer": 0.0}[kind]
    shapes: list[list[list[float]]] = []
    if targets and rng.random() < careful:
        reliable = kind == "reliable"
        grow = 1.0 if reliable else float(rng.uniform(1.1, 1.6))  # some mark too much
        for t in targets:
            shapes.append(_trace(np.array(t), rng, grow, 0.05 if reliable else 0.12, 0.005))
    elif kind == "spammer" and rng.random() < 0.6:
        shapes.append(_blob(rng))
    if not shapes or kind == "spammer" or rng.random() >= 1 / 3:
        return [{"polygon": s} for s in shapes]
    w, h = size  # a brush: the outline painted into a mask at the image's size
    img = Image.new("1", (w, h), 0)
    for s in shapes:
        ImageDraw.Draw(img).polygon([(x * w - 0.5, y * h - 0.5) for x, y in s], fill=1)
    return [{"mask": {"size": [h, w], "counts": mask_counts(np.asarray(img))}}]


def _rating(truth: float, kind: str, rng: np.random.Generator) -> int:
    if kind == "spammer":
        return int(rng.integers(1, 6))
    noise = 0.5 if kind == "reliable" else 1.4
    return int(np.clip(np.rint(truth + rng.normal(0, noise)), 1, 5))


def _clicks(targets: list, kind: str, rng: np.random.Generator) -> list[list[float]]:
    """0-3 points: near the targets (if any) for careful annotators, random for spammers."""
    careful = {"reliable": 0.95, "noisy": 0.5, "spammer": 0.0}[kind]
    if targets and rng.random() < careful:
        spread = 0.03 if kind == "reliable" else 0.07
        n = int(rng.integers(1, 4))
        picks = [targets[int(rng.integers(len(targets)))] for _ in range(n)]
        pts = [np.clip(np.array(t) + rng.normal(0, spread, 2), 0, 1) for t in picks]
    elif kind == "spammer" or rng.random() < 0.3:
        pts = [rng.random(2) for _ in range(int(rng.integers(1, 4)))]
    else:
        pts = []  # looked, found nothing
    return [[round(float(p[0]), 5), round(float(p[1]), 5)] for p in pts]


def _words(truth: dict, n_tokens: int, kind: str, rng: np.random.Generator) -> list[int]:
    mis = truth["misalignment"]
    right = [mis["word_index"]] if mis else [n_tokens]  # n_tokens is [No_Mistake]
    p = {"reliable": 0.9, "noisy": 0.55, "spammer": 0.0}[kind]
    if rng.random() < p:
        return right
    picked = sorted({int(v) for v in rng.integers(0, n_tokens + 1, int(rng.integers(1, 3)))})
    # [No_Mistake] is never selected together with a word
    return [k for k in picked if k != n_tokens] if len(picked) > 1 else picked


def simulate(
    out: str | Path,
    n_images: int = 48,
    seed: int = 0,
    per_image: int = 12,
    *,
    regions: bool = False,
    overwrite: bool = False,
) -> Path:
    """Write a simulated campaign to ``out``: images/, images.jsonl, responses.jsonl,
    truth.jsonl and annotators.jsonl. Same seed, same bytes. ``regions``: annotators also
    draw regions (the two regions tasks; the truth then holds the planted objects' outlines),
    from their own random stream, so that the other responses stay as without.

    ``out`` must not exist (or be empty) unless ``overwrite``, and then only as an earlier
    ``simulate`` folder; it appears by one rename (``rfengine.store.owned``)."""
    with new_folder(out, "simulate", overwrite) as folder:
        _simulate_into(folder, n_images, seed, per_image, regions)
    return Path(out)


def _simulate_into(out: Path, n_images: int, seed: int, per_image: int, regions: bool) -> None:
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    draw_rng = np.random.default_rng([seed, 1])  # the regions' own stream
    pool = make_annotators(max(60, per_image * 3), rng)
    images, responses, truths = [], [], []
    for k in range(n_images):
        img, prompt, truth = make_scene(k, rng)
        image_id = f"sim-{k:04d}"
        img.save(out / "images" / f"{image_id}.png", optimize=False)
        images.append(
            {
                "image_id": image_id,
                "prompt": prompt,
                "width": img.width,
                "height": img.height,
                "path": f"images/{image_id}.png",
            }
        )
        outlines = {
            t.label: (truth[defect] or {}).pop("regions", [])
            for t, defect in zip(REGION_TASKS, ("incoherence", "misalignment"), strict=True)
        }
        truths.append({"image_id": image_id, **truth, **({"regions": outlines} if regions else {})})
        n_tokens = len(prompt.split())
        targets = {
            "coherence_points": (truth["incoherence"] or {}).get("points", []),
            "alignment_points": (truth["misalignment"] or {}).get("points", []),
        }
        for task in (t for t in TASKS if not Task.from_name(t).is_regions):
            for a in rng.choice(len(pool), size=per_image, replace=False):
                ann = pool[int(a)]
                row: dict[str, Any] = {
                    "image_id": image_id,
                    "annotator_id": ann.id,
                    "task": task,
                    "weight": ann.weight,
                }
                if task in CRITERIA:
                    row["rating"] = _rating(truth[task], ann.kind, rng)
                elif task == "words":
                    row["selected"] = _words(truth, n_tokens, ann.kind, rng)
                else:
                    row["points"] = _clicks(targets[task], ann.kind, rng)
                responses.append(row)
        for task in REGION_TASKS if regions else ():
            for a in draw_rng.choice(len(pool), size=per_image, replace=False):
                ann = pool[int(a)]
                drawn = _regions(outlines[task.label], ann.kind, (img.width, img.height), draw_rng)
                responses.append(
                    {
                        "image_id": image_id,
                        "annotator_id": ann.id,
                        "task": task.label,
                        "weight": ann.weight,
                        "regions": drawn,
                    }
                )
    order = rng.permutation(len(responses))  # exports arrive unsorted
    _write_jsonl(out / "images.jsonl", images)
    _write_jsonl(out / "responses.jsonl", [responses[i] for i in order])
    _write_jsonl(out / "truth.jsonl", truths)
    _write_jsonl(out / "annotators.jsonl", [a.__dict__ for a in pool])


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def read_truth(path: str | Path) -> dict[str, dict]:
    """truth.jsonl -> {image_id: record}."""
    rows = [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]
    return {r["image_id"]: r for r in rows}
