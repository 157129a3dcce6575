"""How many more responses each image needs: the statistics of a plan, pure numpy.

Ratings. A trust-weighted mean's interval is ``t(df) * sqrt(v / n_eff)``. An image's own
variance ``v`` is a poor guide on a few ratings (three identical ratings give 0, and an
interval of width 0), so each criterion's variances are moderated as in empirical-Bayes
linear models (Smyth 2004, limma's ``squeezeVar``): the images' variances are fitted by a
scaled inverse chi-square prior (``d0`` degrees of freedom around ``v0``, by the moments of
their logarithms), and each image's variance becomes ``(d0 v0 + (n_eff - 1) v) / (d0 + n_eff
- 1)`` with ``d0 + n_eff - 1`` degrees of freedom. Disputed images keep most of their own
large variance, clean ones are pulled up towards the pool until their own ratings say
otherwise; the weights enter through Kish's ``n_eff`` (uneven trust makes each response
count less), and ``m`` more responses are expected to add ``m * n_eff / n`` to it.

Words. Each slot's selected share (the words and "[No_Mistake]") is a weighted mean of 0/1
answers; the image's binding slot is the one nearest 1/2, with the share moved half a
response towards 1/2 (``(n_eff p + 1/2) / (n_eff + 1)``, so that no sample is certain) and a
normal interval ``1.96 sqrt(p (1 - p) / n_eff)``.

Heatmaps. The split-half reliability of a map from ``n`` annotators predicts, by
Spearman-Brown, the reliability of one from ``k n``: ``k r / (1 + (k - 1) r)``. Where an
image's own estimate is missing (fewer than 4 annotators, or a constant half), the kind's
pooled per-annotator reliability (the median over images) stands in for it; an estimate at
or below 0 is raised to 0.02 (such an image needs many more annotators, or a cap).
"""

from __future__ import annotations

import numpy as np
from scipy import special, stats

#: two-sided 95% intervals
Z = float(stats.norm.ppf(0.975))
#: a share's pull towards 1/2, in responses: (n_eff p + SHARE_PRIOR / 2) / (n_eff + SHARE_PRIOR)
SHARE_PRIOR = 1.0
#: the fewest annotators whose own split-half reliability is used
MIN_SPLIT = 4
#: an image's own split-half reliability is taken as at least this
FLOOR_RELIABILITY = 0.02


def _trigamma_inverse(x: float) -> float:
    """y with trigamma(y) = x (Newton's method, as limma's ``trigammaInverse``)."""
    if x > 1e7:
        return 1 / np.sqrt(x)
    if x < 1e-6:
        return 1 / x
    y = 0.5 + 1 / x
    for _ in range(50):
        tri = float(special.polygamma(1, y))
        step = tri * (1 - tri / x) / float(special.polygamma(2, y))
        y += step
        if -step / y < 1e-8:
            break
    return y


def variance_prior(v: np.ndarray, df: np.ndarray) -> tuple[float, float]:
    """``(d0, v0)``: the scaled inverse chi-square prior of sample variances ``v`` with
    ``df`` degrees of freedom each (images with ``df > 0`` and ``v > 0``), fitted by the
    moments of ``log v`` (Smyth 2004). ``d0`` is infinite when the variances vary no more
    than sampling explains (every image then gets ``v0``), and clamped to [1, 1000]."""
    ok = (df > 0) & (v > 0) & np.isfinite(v)
    if ok.sum() < 2:
        v0 = float(np.mean(v[ok])) if ok.any() else 1.0
        return 4.0, v0
    v, df = v[ok], df[ok]
    e = np.log(v) - special.digamma(df / 2) + np.log(df / 2)
    excess = float(np.var(e, ddof=1) - np.mean(special.polygamma(1, df / 2)))
    d0 = 1000.0 if excess <= 0 else min(1000.0, max(1.0, 2 * _trigamma_inverse(excess)))
    v0 = float(np.exp(np.mean(e) + special.digamma(d0 / 2) - np.log(d0 / 2)))
    return d0, v0


def own_variance(std: np.ndarray, n_eff: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per image, ``(variance, degrees of freedom)`` of its own ratings: the weighted standard
    deviation ``std`` (``sqrt(sum w (r - mean)^2 / sum w)``) made unbiased,
    ``std^2 n_eff / (n_eff - 1)``, on ``n_eff - 1`` degrees of freedom (0 and 0 where
    ``n_eff <= 1``; NaN ``n_eff`` counts as 0)."""
    ne = np.nan_to_num(n_eff, nan=0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        own = np.where(ne > 1, np.nan_to_num(std) ** 2 * ne / np.maximum(ne - 1, 1e-12), 0.0)
    return own, np.maximum(ne - 1, 0)


def moderated(
    std: np.ndarray, n_eff: np.ndarray, prior: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Per image, ``(variance, degrees of freedom)`` after moderation: its own variance
    (``own_variance``) combined with the prior."""
    d0, v0 = prior
    own, own_df = own_variance(std, n_eff)
    return (d0 * v0 + own_df * own) / (d0 + own_df), d0 + own_df


def score_half_width(var: np.ndarray, df: np.ndarray, n_eff: np.ndarray) -> np.ndarray:
    """The 95% interval's half-width ``t(0.975, df) sqrt(var / n_eff)`` (inf at n_eff 0)."""
    with np.errstate(divide="ignore"):
        return stats.t.ppf(0.975, df) * np.sqrt(var / np.nan_to_num(n_eff, nan=0.0))


def _fewest(enough, upper: np.ndarray) -> np.ndarray:
    """Per element, the smallest ``m`` in ``[0, upper]`` with ``enough(m)`` (a vectorised
    bisection; ``enough`` is monotone in ``m`` and true at ``upper``)."""
    lo = np.zeros(upper.shape)
    hi = np.maximum(upper, 0).astype(np.float64)
    while True:
        open_ = lo < hi
        if not open_.any():
            return hi.astype(np.int64)
        mid = np.floor((lo + hi) / 2)
        ok = enough(mid)
        hi = np.where(open_ & ok, mid, hi)
        lo = np.where(open_ & ~ok, mid + 1, lo)


def score_more(
    var: np.ndarray, df: np.ndarray, n_eff: np.ndarray, per_response: np.ndarray, target: float
) -> np.ndarray:
    """The fewest more responses (int64) after which the half-width is at most ``target``;
    each adds ``per_response`` to ``n_eff`` (and to the degrees of freedom)."""
    ne = np.nan_to_num(n_eff, nan=0.0)
    t0 = stats.t.ppf(0.975, df)  # at the current df: enough whatever the df gained
    upper = np.maximum(np.ceil((t0**2 * var / target**2 - ne) / per_response), 0)
    return _fewest(
        lambda m: score_half_width(var, df + m * per_response, ne + m * per_response) <= target,
        upper,
    )


def share_half_width(p: np.ndarray, n_eff: np.ndarray) -> np.ndarray:
    """A share's 95% half-width with the pull towards 1/2 (module docstring)."""
    ne = np.nan_to_num(n_eff, nan=0.0)
    q = (ne * np.nan_to_num(p, nan=0.5) + SHARE_PRIOR / 2) / (ne + SHARE_PRIOR)
    with np.errstate(divide="ignore"):
        return Z * np.sqrt(q * (1 - q) / ne)


def share_more(
    p: np.ndarray, n_eff: np.ndarray, per_response: np.ndarray, target: float
) -> np.ndarray:
    """The fewest more responses after which ``share_half_width`` is at most ``target``
    (the share itself taken as it is now)."""
    ne = np.nan_to_num(n_eff, nan=0.0)
    upper = np.maximum(np.ceil((Z**2 / 4 / target**2 - ne) / per_response) + 1, 0)  # q = 1/2
    return _fewest(lambda m: share_half_width(p, ne + m * per_response) <= target, upper)


def per_annotator(rel: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Spearman-Brown backwards: the reliability of one annotator's map from that of ``n``."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return rel / (n - (n - 1) * rel)


def grown_reliability(one: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Spearman-Brown: the reliability of a map from ``n`` annotators of reliability ``one``."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, n * one / (1 + (n - 1) * one), 0.0)


def reliability_more(
    rel: np.ndarray, n: np.ndarray, target: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(used reliability now, per-annotator reliability, more responses)`` per image: the
    image's own split-half where it has ``MIN_SPLIT`` annotators and a value in (0, 1], else
    the pooled per-annotator reliability at its ``n`` (module docstring)."""
    n = np.asarray(n, dtype=np.float64)
    # an own estimate at or below 0 says "unreliable", not "unknown": it is kept, raised to
    # FLOOR_RELIABILITY so that Spearman-Brown gives a (large) finite number
    own = np.isfinite(rel) & (n >= MIN_SPLIT)
    rel = np.where(own, np.clip(np.nan_to_num(rel), FLOOR_RELIABILITY, 1.0), rel)
    one = per_annotator(rel[own], n[own])
    pooled = float(np.median(one)) if one.size else 0.1
    r = np.where(own, rel, n * pooled / (1 + (n - 1) * pooled))
    r = np.where(n > 0, r, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        k = target * (1 - r) / (r * (1 - target))
        one_each = np.where(own, per_annotator(r, n), pooled)
        # from nothing: N with N r1 / (1 + (N - 1) r1) >= target
        from_zero = np.ceil(target * (1 - one_each) / (one_each * (1 - target)) - 1e-9)
        m = np.where(n > 0, np.ceil(n * k - n - 1e-9), from_zero)
    m = np.where(r >= target, 0, np.maximum(m, 0)).astype(np.int64)
    return r, one_each, m


def allocate(more: np.ndarray, budget: int | None) -> np.ndarray:
    """The ``more`` that fits ``budget`` responses in all: whole requests, cheapest first
    (the most rows brought within target for the money), the rest set to 0."""
    if budget is None:
        return more
    order = np.argsort(more, kind="stable")
    spent = np.cumsum(more[order])
    keep = np.zeros(more.shape, dtype=bool)
    keep[order[spent <= budget]] = True
    return np.where(keep, more, 0)


__all__ = [
    "Z",
    "allocate",
    "grown_reliability",
    "moderated",
    "own_variance",
    "per_annotator",
    "reliability_more",
    "score_half_width",
    "score_more",
    "share_half_width",
    "share_more",
    "variance_prior",
]


#: the numbers of more responses a share-aiming plan chooses among (0-16, then +25% steps)
GRID = np.unique(np.concatenate([np.arange(17), np.round(16 * 1.25 ** np.arange(1, 36))])).astype(
    np.int64
)


def p_within(half_width: np.ndarray, df: np.ndarray, target: float) -> np.ndarray:
    """The probability that an estimate with this 95% ``half_width`` (on ``df`` degrees of
    freedom) lies within ``target`` of the truth: ``2 F_t(target / se) - 1``."""
    t975 = stats.t.ppf(0.975, df)
    with np.errstate(invalid="ignore", divide="ignore"):
        se = half_width / t975
        p = 2 * stats.t.cdf(target / se, df) - 1
    return np.where(np.isfinite(half_width), np.nan_to_num(p), 0.0)


def allocate_share(
    p: np.ndarray, cap: np.ndarray, share: float | None, budget: int | None
) -> np.ndarray:
    """Per row, how many more responses (from ``GRID``, at most ``cap``), so that the mean
    of ``p`` (``(rows, len(GRID))``: each row's probability of lying within target after
    that many) reaches ``share`` for the fewest responses, or is the highest ``budget``
    allows. Each row takes ``argmax_g p[g] - lam GRID[g]``; ``lam`` (the price of a
    response in probability) is bisected: the marginal gains of all rows are equalised, so
    responses go where they buy the most precision."""
    allowed = GRID[None, :] <= cap[:, None]
    score = np.where(allowed, p, -np.inf)

    def pick(lam: float) -> tuple[np.ndarray, float, int]:
        g = np.argmax(score - lam * GRID[None, :], axis=1)
        return g, float(p[np.arange(len(g)), g].mean()), int(GRID[g].sum())

    def bisect(good) -> np.ndarray:  # noqa: ANN001
        """The pick at the highest price still ``good`` (it is at price 0)."""
        lo, hi = 0.0, 1.0  # price 1: no response is worth buying
        for _ in range(50):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if good(*pick(mid)[1:]) else (lo, mid)
        return pick(lo)[0]

    g = pick(0.0)[0]  # as much as the caps allow
    if share is not None and p[np.arange(len(g)), g].mean() >= share:
        g = bisect(lambda got, cost: got >= share)
    if budget is not None and int(GRID[g].sum()) > budget:
        g = bisect(lambda got, cost: cost <= budget) if pick(1.0)[2] <= budget else pick(1.0)[0]
    return GRID[g]


__all__ += ["GRID", "allocate_share", "p_within"]
