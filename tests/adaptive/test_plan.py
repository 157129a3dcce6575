"""``plan-more``: the statistics against their definitions and a known truth, and the plan
of a campaign with planted easy, hard and barely rated images."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from fixtures import write_jsonl
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

import rfengine
from rfengine.adaptive import Targets, plan_more
from rfengine.adaptive import estimate as est
from rfengine.adaptive.plan import read_plan
from rfengine.cli import main
from rfengine.errors import InputError


def test_the_variance_prior_recovers_a_known_one():
    """Variances drawn from a scaled inverse chi-square prior (d0 = 8 around v0 = 1.5),
    each image's sample variance on 9 degrees of freedom: the fit finds the prior."""
    rng = np.random.default_rng(0)
    true = 1.5 * 8 / rng.chisquare(8, 4000)
    v = true * rng.chisquare(9, 4000) / 9
    d0, v0 = est.variance_prior(v, np.full(4000, 9.0))
    assert 5 < d0 < 12 and abs(v0 - 1.5) < 0.1
    # equal variances: nothing to moderate beyond sampling, d0 at its cap
    v = 2.0 * rng.chisquare(9, 4000) / 9
    d0, v0 = est.variance_prior(v, np.full(4000, 9.0))
    assert d0 > 50 and abs(v0 - 2.0) < 0.1


def test_three_identical_ratings_are_not_certain():
    prior = (4.0, 1.0)
    var, df = est.moderated(np.array([0.0, 0.0]), np.array([3.0, 300.0]), prior)
    hw = est.score_half_width(var, df, np.array([3.0, 300.0]))
    assert hw[0] > 0.5  # three identical ratings: the pooled variance still speaks
    assert hw[1] < 0.05  # 300 identical ones: they outweigh it
    # the moderated variance is the prior's and the image's, weighed by degrees of freedom
    var, df = est.moderated(np.array([2.0]), np.array([11.0]), prior)
    np.testing.assert_allclose(var, (4 * 1.0 + 10 * 4.0 * 11 / 10) / 14)
    assert df[0] == 14


@settings(max_examples=200, deadline=None)
@given(
    var=st.floats(0.01, 4),
    ne=st.floats(0, 40),
    rho=st.floats(0.2, 1),
    target=st.floats(0.05, 1),
    d0=st.floats(1, 50),
)
def test_more_is_the_fewest_that_reach_the_target(var, ne, rho, target, d0):
    v, df, n, r = (np.array([x]) for x in (var, d0 + max(ne - 1, 0), ne, rho))
    m = int(est.score_more(v, df, n, r, target)[0])

    def hw(k):  # the definition: t quantile on the grown df, sqrt(var / grown n_eff)
        grown = ne + k * rho
        return stats.t.ppf(0.975, df[0] + k * rho) * np.sqrt(var / grown) if grown else np.inf

    assert hw(m) <= target + 1e-12
    assert m == 0 or hw(m - 1) > target
    p = np.array([min(1.0, var / 4)])
    k = int(est.share_more(p, n, r, min(target, 0.5))[0])
    assert est.share_half_width(p, n + k * r)[0] <= min(target, 0.5) + 1e-12
    assert k == 0 or est.share_half_width(p, n + (k - 1) * r)[0] > min(target, 0.5)


@settings(max_examples=100, deadline=None)
@given(rel=st.floats(0.01, 0.99), n=st.integers(4, 60), target=st.floats(0.5, 0.95))
def test_spearman_brown_reaches_the_target_reliability(rel, n, target):
    r, one, m = est.reliability_more(np.array([rel]), np.array([n]), target)
    assert r[0] == max(rel, est.FLOOR_RELIABILITY)
    after = est.grown_reliability(one, np.array([n + m[0]]))[0]
    assert after >= target - 1e-9
    if m[0] > 0:
        assert est.grown_reliability(one, np.array([n + m[0] - 1]))[0] < target


@settings(max_examples=100, deadline=None)
@given(more=st.lists(st.integers(0, 50), max_size=40), budget=st.integers(0, 400))
def test_the_budget_is_never_exceeded(more, budget):
    got = est.allocate(np.array(more, dtype=np.int64), budget)
    assert got.sum() <= budget
    assert ((got == 0) | (got == np.array(more))).all()  # whole requests, or none
    # cheapest first: nothing left out that would still fit
    left = [m for m, g in zip(more, got, strict=True) if g == 0 and m > 0]
    assert not left or min(left) > budget - got.sum()


KINDS = {"easy": range(0, 12), "hard": range(12, 24), "tiny": range(24, 36)}


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    """Easy images (20 ratings, nearly all 4, clicks on one point), hard ones (20 ratings
    spread 1-5, clicks anywhere) and barely rated ones (3 identical ratings)."""
    tmp = tmp_path_factory.mktemp("plan")
    rng = np.random.default_rng(1)
    images, rows = [], []
    for k in range(36):
        kind = next(name for name, r in KINDS.items() if k in r)
        images.append({"image_id": f"im{k}", "prompt": "a red cat", "width": 16, "height": 16})
        for a in range(3 if kind == "tiny" else 20):
            who = {"image_id": f"im{k}", "annotator_id": f"a{a}", "weight": 1.0}
            for c in ("style", "coherence", "alignment"):
                r = int(rng.integers(1, 6)) if kind == "hard" else 4 + (rng.random() < 0.1)
                rows.append({**who, "task": c, "rating": r})
            pick = [int(rng.integers(0, 4))] if kind == "hard" else [3]
            rows.append({**who, "task": "words", "selected": pick})
            pt = rng.random(2).tolist() if kind == "hard" else [0.5, 0.5]
            rows.append({**who, "task": "coherence_points", "points": [pt]})
    out = tmp / "out"
    rfengine.aggregate_to_disk(
        write_jsonl(tmp / "images.jsonl", images),
        write_jsonl(tmp / "responses.jsonl", rows),
        out,
        heatmap_size="16x16",
        reliability=True,
    )
    return tmp, out


def _by_kind(table, task):
    df = table.to_pandas()
    df = df[df.task == task]
    return {name: df[df.image_id.isin([f"im{k}" for k in r])] for name, r in KINDS.items()}


def test_the_plan_asks_more_where_it_is_uncertain(campaign):
    _, out = campaign
    table, summary = plan_more(out, Targets(0.5, heatmap_reliability=0.8))
    for task in ("style", "coherence", "alignment", "words"):
        g = _by_kind(table, task)
        assert (g["easy"]["more"] == 0).all() and g["easy"]["within"].all()
        assert (g["hard"]["more"] > 0).all() and not g["hard"]["within"].any()
        assert not g["tiny"]["within"].any()  # 3 identical ratings are not done
        assert g["tiny"]["more"].min() > 0
        assert g["hard"]["more"].mean() > g["tiny"]["more"].mean()
        assert g["hard"]["expected_within"].all()
    g = _by_kind(table, "coherence_points")
    assert (g["easy"]["more"] == 0).all() and (g["hard"]["more"] > 0).all()
    assert summary["responses_asked"] == int(table["more"].to_numpy().sum())
    assert summary["tasks"]["coherence_points"]["rows"] == 36


def test_a_share_plan_buys_probability_where_it_is_cheapest(campaign):
    """--share: the expected share within target reaches the aim for fewer responses than
    bringing every row to its target; --budget caps it; --max-growth limits a round."""
    _, out = campaign
    full, _ = plan_more(out, Targets(0.5))
    table, summary = plan_more(out, Targets(0.5, share=0.9))
    assert summary["expected_share_within"] >= 0.9
    assert summary["responses_asked"] < int(full["more"].to_numpy().sum())
    p = table["p_within"].to_numpy()
    assert ((p >= 0) & (p <= 1)).all()
    _, capped = plan_more(out, Targets(0.5, share=0.99, budget=50))
    assert capped["responses_asked"] <= 50
    grown, _ = plan_more(out, Targets(0.5, max_growth=0.5))
    n = grown["n"].to_numpy(zero_copy_only=False)
    ok = ~np.isnan(n.astype(float))
    assert (grown["more"].to_numpy()[ok] <= np.ceil(0.5 * np.maximum(n[ok], 1))).all()


def test_allocation_equalises_marginal_gains():
    """Two rows, one cheap to raise and one hopeless: the share goes to the cheap one."""
    g = est.GRID.astype(float)
    p = np.stack([1 - np.exp(-g / 3), np.minimum(g / 1e4, 1)])  # fast / almost flat
    m = est.allocate_share(p, np.array([np.inf, np.inf]), 0.49, None)
    assert m[1] == 0 and m[0] > 0
    assert (p[0, np.searchsorted(est.GRID, m[0])] + 0) / 2 >= 0.49
    assert est.allocate_share(p, np.array([np.inf, np.inf]), None, 7).sum() <= 7


def test_caps_and_budget(campaign):
    _, out = campaign
    table, summary = plan_more(out, Targets(0.3, max_per_image=5, budget=100))
    more = table["more"].to_numpy()
    assert more.max() <= 5 and more.sum() <= 100
    assert summary["expected_within_share"] <= 1


def test_cli_writes_the_plan_and_refuses_to_overwrite_a_foreign_file(campaign, capsys):
    tmp, out = campaign
    plan = tmp / "plan.parquet"
    args = ["plan-more", str(out), "--ci-half-width", "0.5", "--out", str(plan)]
    assert main([*args, "--campaign", str(tmp / "c.json")]) == 0
    summary = json.loads(capsys.readouterr().out)
    table, meta = read_plan(plan)
    assert meta["campaign"] == str((tmp / "c.json").resolve()) and meta["summary"] == summary
    assert set(table["task"].to_pylist()) == {"style", "coherence", "alignment", "words"}
    assert main(args) == 1  # exists
    assert "exists" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0
    (tmp / "mine.jsonl").write_text("precious\n")
    assert main([*args[:-1], str(tmp / "mine.jsonl"), "--overwrite"]) == 1
    assert (tmp / "mine.jsonl").read_text() == "precious\n"
    capsys.readouterr()
    jsonl = tmp / "plan.jsonl"
    assert main([*args[:-1], str(jsonl)]) == 0
    t2, _ = read_plan(jsonl)
    assert t2["more"].to_pylist() == pq.read_table(plan)["more"].to_pylist()


def test_heatmap_targets_need_the_reliability_columns(campaign):
    tmp, _ = campaign
    out = tmp / "plain"
    rfengine.aggregate_to_disk(tmp / "images.jsonl", tmp / "responses.jsonl", out)
    with pytest.raises(InputError, match="aggregate with --reliability"):
        plan_more(out, Targets(0.5, heatmap_reliability=0.8))
    with pytest.raises(InputError, match="--ci-half-width must be in"):
        plan_more(out, Targets(0.0))
