"""Annotator trust estimated from the data (``--weights estimate``).

Every response r (annotator a, task t, image i) is compared with each other response b of
the same image and task by a similarity ``s(r, b)`` in [0, 1] and its chance level
``c(b)``, the similarity a random response would get:

* ratings ``x`` in 1..5: ``s = 1 - |x_r - x_b| / 4``; ``c = mean_{u=1..5} 1 - |u - x_b| / 4``.
* words, selections ``S`` over ``n`` options (the prompt's tokens and No_Mistake):
  ``s = |S_r ∩ S_b| / |S_r|``; ``c = |S_b| / n`` (one option picked at random).
* points, in the image's pixels with ``σ`` = 5% of its smaller side and b's map
  ``m_b(p) = min(1, Σ_{q ∈ b} exp(-|p - q|² / 2σ²))``: both clicked: ``s`` = the mean of
  ``m_b`` over r's clicks, chance ``cover_b = min(1, |b| · 2πσ² / (W·H))`` (the share of
  the image b's Gaussians cover); both clicked nothing: ``s = 1``; one did: ``s = 0``. A
  random response is empty with the task's share of empty responses ``π0``, so
  ``c = π0`` for an empty b and ``(1 - π0) · cover_b`` otherwise.

With the current weights, r's agreement with the leave-one-out consensus and its chance
level are ``A_r = Σ_b w_b s(r, b) / Σ_b w_b`` and ``C_r = Σ_b w_b c(b) / Σ_b w_b`` (over
b ≠ r; responses alone on their image and task carry no evidence). An annotator's trust
is their chance-corrected agreement (as Cohen's κ), pooled over every task they answered,
with one response's worth of their prior ``w0`` (``--prior``):

    κ_a = (Σ_r (A_r - C_r) + w0_a) / (Σ_r (1 - C_r) + 1),   w_a = clip(κ_a, 0.01, 1)

iterated from ``w = w0`` until no weight moves by more than 1e-6 (at most 50 rounds). The
floor keeps every image's scores defined. Ratings and words cost O(responses) per round
(weighted histograms per image); points use the pairs of clicking responses that share an
image, found once. Everything is vectorised and deterministic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rfengine.ingest import Images, Responses
from rfengine.kernels import SIGMA_FRACTION, concat_ranges
from rfengine.schema import POINT_TASKS, REGION_TASKS, Task

#: rounds and tolerance of the fixed point, weight floor, prior strength (responses)
MAX_ROUNDS = 50
TOLERANCE = 1e-6
FLOOR = 0.01
PRIOR_STRENGTH = 1.0
#: clicks squared per vectorised step when the point pairs are found
PAIR_CHUNK = 1 << 22
_LEVELS = np.arange(1.0, 6.0)
_SIM = 1 - np.abs(_LEVELS[:, None] - _LEVELS[None, :]) / 4  # (5, 5): s(x_r, x_b)
_CHANCE = _SIM.mean(axis=0)  # (5,): c(x_b)
#: the tasks that give evidence of trust; region responses are weighed by their annotators'
#: estimated trust but are not (yet) compared with each other
TRUST_TASKS = tuple(t.label for t in Task if not t.is_regions)
_NT = len(TRUST_TASKS)


@dataclass
class Evidence:
    """What trust estimation needs from responses, independent of the weights.

    Per response: ``annotator`` (an index into ``annotator_ids``), ``task``, ``group`` (a
    dense index of its (image, task)), the ``given`` weight, the ``rating`` (NaN if none),
    ``n_selected`` and ``n_options`` (words), ``n_clicks`` and ``cover`` (points). Word
    selections as ``(sel_response, sel_slot)`` with slots unique per (image, option);
    point similarities as sparse pairs ``(pair_r, pair_b, pair_s)`` of clicking responses.
    """

    annotator: np.ndarray
    annotator_ids: np.ndarray
    task: np.ndarray
    group: np.ndarray
    given: np.ndarray
    rating: np.ndarray
    n_selected: np.ndarray
    n_options: np.ndarray
    sel_response: np.ndarray
    sel_slot: np.ndarray
    n_clicks: np.ndarray
    cover: np.ndarray
    pair_r: np.ndarray
    pair_b: np.ndarray
    pair_s: np.ndarray

    def __len__(self) -> int:
        return int(self.task.shape[0])


def evidence(images: Images, r: Responses, first_image: int = 0) -> Evidence:
    """The evidence of ``r`` (responses of ``images``, sorted by image and task as
    ``ResponseReader.finish`` leaves them). ``first_image``: the row of ``images[0]`` in the
    whole table (a partition's start), so that groups stay distinct across partitions."""
    if np.isin(r.task, REGION_TASKS).any():
        r = r.take(~np.isin(r.task, REGION_TASKS))
    n = len(r)
    task = r.task.astype(np.int64)
    n_sel = (r.selected_offsets[1:] - r.selected_offsets[:-1]).astype(np.int64)
    n_clk = (r.point_offsets[1:] - r.point_offsets[:-1]).astype(np.int64)
    words = task == Task.WORDS
    slot_base = images.word_offsets
    sel_resp = np.repeat(np.arange(n), np.where(words, n_sel, 0))
    keep = np.repeat(words, n_sel)
    sel_slot = slot_base[r.image[sel_resp]] + r.selected[keep]
    width = images.width[r.image].astype(np.float64)
    height = images.height[r.image].astype(np.float64)
    sigma = SIGMA_FRACTION * np.minimum(width, height)
    cover = np.minimum(1.0, n_clk * 2 * math.pi * sigma**2 / (width * height))
    pairs = [_point_pairs(images, r, t) for t in POINT_TASKS]
    pt = np.isin(task, POINT_TASKS)
    return Evidence(
        annotator=r.annotator.astype(np.int64),
        annotator_ids=r.annotator_ids,
        task=task,
        group=(first_image + r.image) * _NT + task,
        given=r.weight.astype(np.float64),
        rating=r.rating,
        n_selected=np.where(words, n_sel, 0),
        n_options=np.where(words, np.diff(slot_base)[r.image], 0),
        sel_response=sel_resp,
        sel_slot=sel_slot,
        n_clicks=np.where(pt, n_clk, 0),
        cover=np.where(pt, cover, 0.0),
        pair_r=np.concatenate([p[0] for p in pairs]),
        pair_b=np.concatenate([p[1] for p in pairs]),
        pair_s=np.concatenate([p[2] for p in pairs]),
    )


def _point_pairs(
    images: Images, r: Responses, task: Task
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(r, b, s(r, b))`` for every ordered pair of distinct responses of ``task`` that
    both clicked on the same image, where ``s > 0``."""
    resp = np.flatnonzero((r.task == task) & (r.point_offsets[1:] > r.point_offsets[:-1]))
    lens = r.point_offsets[resp + 1] - r.point_offsets[resp]
    if len(resp) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    pts = r.points[concat_ranges(r.point_offsets[resp], lens)]
    c_resp = np.repeat(np.arange(len(resp)), lens)  # click -> position in resp
    c_img = r.image[resp][c_resp]
    w = images.width[c_img].astype(np.float64)
    h = images.height[c_img].astype(np.float64)
    x, y = pts[:, 0] * w, pts[:, 1] * h
    two_var = 2 * (SIGMA_FRACTION * np.minimum(w, h)) ** 2
    # per image: its clicks [cs, ce) and its clicking responses [rs, re)
    imgs, cs = np.unique(c_img, return_index=True)
    ce = np.append(cs[1:], len(c_img))
    rs = np.searchsorted(r.image[resp], imgs)
    rn = np.append(rs[1:], len(resp)) - rs
    where = np.searchsorted(imgs, c_img)  # click -> its image's position in imgs
    per_click = (ce - cs)[where]
    out_r, out_b, out_s = [], [], []
    # chunks of whole images, about PAIR_CHUNK click pairs each
    cost = np.cumsum((ce - cs) ** 2)
    cuts = np.searchsorted(cost, np.arange(1, int(cost[-1]) // PAIR_CHUNK + 1) * PAIR_CHUNK)
    edges = np.unique(np.r_[0, np.minimum(cuts + 1, len(imgs)), len(imgs)])
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        p = np.arange(cs[lo], ce[hi - 1])
        q = concat_ranges(cs[where[p]], per_click[p])
        p = np.repeat(p, per_click[p])
        d2 = (x[p] - x[q]) ** 2 + (y[p] - y[q]) ** 2
        g = np.exp(-d2 / two_var[p])
        rp, rq = c_resp[p], c_resp[q]
        # m_b(p): sum over b's clicks (contiguous for a given p), capped at 1
        run = np.flatnonzero(np.r_[True, (p[1:] != p[:-1]) | (rq[1:] != rq[:-1])])
        m = np.minimum(1.0, np.add.reduceat(g, run))
        rp, rq, pi = rp[run], rq[run], where[p[run]]
        # mean over r's clicks of m_b, per (r, b) within the image
        base = np.concatenate([[0], np.cumsum(rn[lo:hi] ** 2)])
        key = base[pi - lo] + (rp - rs[pi]) * rn[pi] + (rq - rs[pi])
        total = np.bincount(key, m, minlength=int(base[-1]))
        k = np.flatnonzero(total > 0)
        ii = np.searchsorted(base, k, side="right") - 1  # image (chunk-relative)
        loc = k - base[ii]
        a = rs[lo + ii] + loc // rn[lo + ii]
        b = rs[lo + ii] + loc % rn[lo + ii]
        keep = a != b
        a, b = a[keep], b[keep]
        out_r.append(resp[a])
        out_b.append(resp[b])
        out_s.append(total[k][keep] / lens[a])
    return np.concatenate(out_r), np.concatenate(out_b), np.concatenate(out_s)


def concat(parts: list[Evidence]) -> Evidence:
    """The evidence of several partitions (in image order) as one, with one annotator index
    (ids in string order, as within a partition), dense group indices, and slot and
    response indices offset past the previous partitions'."""
    ids = pa.concat_arrays(
        [pa.array(p.annotator_ids, pa.string()) for p in parts] or [pa.array([], pa.string())]
    )
    ids = pc.unique(ids)
    ids = ids.take(pc.sort_indices(ids))
    names = np.asarray(ids.to_pylist(), dtype=object)
    ann, resp_off, slot_off = [], 0, 0
    pr, pb, sr, ss = [], [], [], []
    for p in parts:
        remap = pc.index_in(pa.array(p.annotator_ids, pa.string()), value_set=ids).to_numpy(
            zero_copy_only=False
        )
        ann.append(remap[p.annotator] if len(p) else np.zeros(0, np.int64))
        pr.append(p.pair_r + resp_off)
        pb.append(p.pair_b + resp_off)
        sr.append(p.sel_response + resp_off)
        ss.append(p.sel_slot + slot_off)
        resp_off += len(p)
        slot_off += int(p.sel_slot.max()) + 1 if len(p.sel_slot) else 0

    def cat(name: str) -> np.ndarray:
        return np.concatenate([getattr(p, name) for p in parts]) if parts else np.zeros(0)

    group = cat("group").astype(np.int64)
    dense = np.cumsum(np.r_[False, group[1:] != group[:-1]]) if len(group) else group
    slot = np.concatenate(ss) if ss else np.zeros(0, np.int64)  # distinct per (image, option)
    return Evidence(
        annotator=np.concatenate(ann).astype(np.int64) if ann else np.zeros(0, np.int64),
        annotator_ids=names,
        task=cat("task").astype(np.int64),
        group=dense.astype(np.int64),
        given=cat("given"),
        rating=cat("rating"),
        n_selected=cat("n_selected").astype(np.int64),
        n_options=cat("n_options").astype(np.int64),
        sel_response=np.concatenate(sr).astype(np.int64) if sr else np.zeros(0, np.int64),
        sel_slot=slot.astype(np.int64),
        n_clicks=cat("n_clicks").astype(np.int64),
        cover=cat("cover"),
        pair_r=np.concatenate(pr).astype(np.int64) if pr else np.zeros(0, np.int64),
        pair_b=np.concatenate(pb).astype(np.int64) if pb else np.zeros(0, np.int64),
        pair_s=cat("pair_s"),
    )


@dataclass
class TrustEstimate:
    """Per annotator (in ``annotator_ids`` order): the given weight (mean over their
    responses), the estimated weight, and per task the responses and the
    chance-corrected agreement (NaN where no response had a peer)."""

    annotator_ids: np.ndarray
    given: np.ndarray  # (A,)
    weight: np.ndarray  # (A,) in [FLOOR, 1]
    responses: np.ndarray  # (A, tasks) int64
    agreement: np.ndarray  # (A, tasks) float64
    rounds: int
    converged: bool

    def table(self) -> pa.Table:
        """``annotators.parquet``'s rows, one per annotator."""
        cols: dict[str, pa.Array] = {"annotator_id": pa.array(self.annotator_ids, pa.string())}
        for k, t in enumerate(TRUST_TASKS):
            cols[f"responses_{t}"] = pa.array(self.responses[:, k], pa.int64())
        cols["weight_given"] = pa.array(self.given, pa.float64())
        cols["weight_estimated"] = pa.array(self.weight, pa.float64())
        for k, t in enumerate(TRUST_TASKS):
            a = self.agreement[:, k]
            cols[f"agreement_{t}"] = pa.array(a, pa.float64(), mask=np.isnan(a))
        return pa.table(cols)

    @classmethod
    def from_table(cls, table: pa.Table, rounds: int, converged: bool) -> TrustEstimate:
        """The inverse of ``table`` (``annotators.parquet``, for ``--resume``)."""
        col = {name: table[name].to_numpy() for name in table.column_names[1:]}
        return cls(
            annotator_ids=np.asarray(table["annotator_id"].to_pylist(), dtype=object),
            given=col["weight_given"],
            weight=col["weight_estimated"],
            responses=np.stack([col[f"responses_{t}"] for t in TRUST_TASKS], axis=1),
            agreement=np.stack(
                [table[f"agreement_{t}"].to_numpy(zero_copy_only=False) for t in TRUST_TASKS],
                axis=1,
            ).astype(np.float64),
            rounds=rounds,
            converged=converged,
        )

    def summary(self) -> dict:
        """The manifest's ``trust`` record."""
        q = np.quantile(self.weight, [0.0, 0.25, 0.5, 0.75, 1.0]) if len(self.weight) else []
        return {
            "annotators": len(self.annotator_ids),
            "rounds": self.rounds,
            "converged": self.converged,
            "weight_quantiles": [round(float(v), 6) for v in q],
        }

    def weights_for(self, ids: np.ndarray) -> np.ndarray:
        """The estimated weight of each of ``ids`` (annotator ids that were estimated)."""
        idx = pc.index_in(
            pa.array(ids, pa.string()), value_set=pa.array(self.annotator_ids, pa.string())
        )
        if idx.null_count:
            raise ValueError("an annotator without an estimated weight")
        return self.weight[idx.to_numpy(zero_copy_only=False)]


def _agreement(ev: Evidence, w: np.ndarray, pi0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per response ``(A_r - C_r, 1 - C_r)`` at annotator weights ``w``; zeros for
    responses without a peer."""
    n = len(ev)
    n_groups = int(ev.group[-1]) + 1 if n else 0
    wr = w[ev.annotator]
    g = ev.group
    others = np.bincount(g, wr, minlength=n_groups)[g] - wr
    s = np.zeros(n)
    c = np.zeros(n)
    # ratings: a weighted histogram of the 5 levels per group
    m = ~np.isnan(ev.rating)
    xi = ev.rating[m].astype(np.int64) - 1
    hist = np.bincount(g[m] * 5 + xi, wr[m], minlength=n_groups * 5).reshape(n_groups, 5)[g[m]]
    s[m] = (hist * _SIM[xi]).sum(axis=1) - wr[m]
    c[m] = hist @ _CHANCE - wr[m] * _CHANCE[xi]
    # words: the weight behind each (image, option), minus r's own
    m = ev.task == Task.WORDS
    if ev.sel_slot.size:
        slot_w = np.bincount(ev.sel_slot, wr[ev.sel_response])
        picked = np.bincount(
            ev.sel_response, slot_w[ev.sel_slot] - wr[ev.sel_response], minlength=n
        )
        s[m] = picked[m] / np.maximum(ev.n_selected[m], 1)
    chosen = np.bincount(g, wr * ev.n_selected, minlength=n_groups)[g]
    c[m] = (chosen[m] - wr[m] * ev.n_selected[m]) / np.maximum(ev.n_options[m], 1)
    # points: empty-empty agreements, clicking pairs, chance from the covers
    pt = np.isin(ev.task, POINT_TASKS)
    empty = pt & (ev.n_clicks == 0)
    full = pt & (ev.n_clicks > 0)
    e_w = np.bincount(g, wr * empty, minlength=n_groups)[g] - wr * empty
    f_w = np.bincount(g, wr * ev.cover * full, minlength=n_groups)[g] - wr * ev.cover * full
    pair = np.bincount(ev.pair_r, w[ev.annotator[ev.pair_b]] * ev.pair_s, minlength=n)
    s[empty] = e_w[empty]
    s[full] = pair[full]
    p0 = pi0[ev.task[pt]]
    c[pt] = p0 * e_w[pt] + (1 - p0) * f_w[pt]
    valid = (others > 0) & ~(m & (ev.n_selected == 0))
    safe = np.where(valid, others, 1.0)
    a, ch = s / safe, c / safe
    return np.where(valid, a - ch, 0.0), np.where(valid, 1 - ch, 0.0)


def estimate_trust(ev: Evidence, prior: str = "trust") -> TrustEstimate:
    """The fixed point of the module's formula over ``ev``; ``prior`` is ``"trust"`` (the
    given weights, scaled so the largest is 1) or ``"uniform"`` (1.0)."""
    n_ann = len(ev.annotator_ids)
    counts = np.bincount(ev.annotator, minlength=n_ann).astype(np.float64)
    given = np.bincount(ev.annotator, ev.given, minlength=n_ann) / np.maximum(counts, 1)
    if prior == "trust" and given.size and given.max() > 0:
        w0 = np.clip(given / given.max(), FLOOR, 1.0)
    else:
        w0 = np.ones(n_ann)
    pi0 = np.zeros(_NT)  # each point task's share of empty responses
    for t in POINT_TASKS:
        m = ev.task == t
        pi0[t] = float((ev.n_clicks[m] == 0).mean()) if m.any() else 0.0
    key = ev.annotator * _NT + ev.task
    w, rounds, converged = w0.copy(), 0, False
    while rounds < MAX_ROUNDS:
        gain, room = _agreement(ev, w, pi0)
        num = np.bincount(ev.annotator, gain, minlength=n_ann)
        den = np.bincount(ev.annotator, room, minlength=n_ann)
        new = np.clip((num + PRIOR_STRENGTH * w0) / (den + PRIOR_STRENGTH), FLOOR, 1.0)
        rounds += 1
        moved = float(np.abs(new - w).max()) if n_ann else 0.0
        w = new
        if moved <= TOLERANCE:
            converged = True
            break
    gain, room = _agreement(ev, w, pi0)
    size = n_ann * _NT
    num = np.bincount(key, gain, minlength=size).reshape(n_ann, _NT)
    den = np.bincount(key, room, minlength=size).reshape(n_ann, _NT)
    with np.errstate(invalid="ignore", divide="ignore"):
        agreement = np.where(den > 0, num / den, np.nan)
    return TrustEstimate(
        annotator_ids=ev.annotator_ids,
        given=given,
        weight=w,
        responses=np.bincount(key, minlength=size).reshape(n_ann, _NT).astype(np.int64),
        agreement=agreement,
        rounds=rounds,
        converged=converged,
    )


def with_weights(r: Responses, trust: TrustEstimate) -> Responses:
    """``r`` with each response weighing its annotator's estimated weight."""
    return replace(r, weight=trust.weights_for(r.annotator_ids)[r.annotator])


__all__ = ["Evidence", "TrustEstimate", "concat", "estimate_trust", "evidence", "with_weights"]
