"""Annotator trust estimated from the data (``--weights estimate``) and split-half
heatmap reliability (``--reliability``), against plain float64 references written here."""

import json
import math
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
from datasets import load_from_disk
from fixtures import interrupt_at_partition, make_campaign, make_rows, write_jsonl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import ref_default_heatmap

from rfengine import aggregate, aggregate_to_disk, save_output
from rfengine.aggregation.reliability import annotator_halves
from rfengine.aggregation.trust import FLOOR, concat, estimate_trust, evidence
from rfengine.cli import main
from rfengine.ingest import read_images
from rfengine.ingest.responses import ResponseReader
from rfengine.sim.simulate import read_truth, simulate
from rfengine.store.load import load_dataset
from rfengine.train.metrics import recovery

RATINGS = ("style", "coherence", "alignment")
POINTS = ("coherence_points", "alignment_points")


# ------------------------------------------------------------------ float64 reference


def ref_trust(images: list[dict], responses: list[dict], prior: str) -> dict[str, float]:
    """The module docstring's fixed point, one response pair at a time."""
    size = {im["image_id"]: (im["width"], im["height"]) for im in images}
    n_opts = {im["image_id"]: len(im["prompt"].split()) + 1 for im in images}
    groups: dict[tuple, list[dict]] = {}
    for r in responses:
        groups.setdefault((r["image_id"], r["task"]), []).append(r)
    ids = sorted({r["annotator_id"] for r in responses})
    given_sum = {a: 0.0 for a in ids}
    count = {a: 0 for a in ids}
    for r in responses:
        given_sum[r["annotator_id"]] += r.get("weight", 1.0)
        count[r["annotator_id"]] += 1
    given_w = {a: given_sum[a] / count[a] for a in ids}
    top = max(given_w.values())
    w0 = {
        a: min(1.0, max(FLOOR, given_w[a] / top)) if prior == "trust" and top > 0 else 1.0
        for a in ids
    }
    pi0 = {}
    for t in POINTS:
        rs = [r for r in responses if r["task"] == t]
        pi0[t] = sum(not r["points"] for r in rs) / len(rs) if rs else 0.0

    def m_b(p, pts, W, H):
        s2 = 2 * (0.05 * min(W, H)) ** 2
        tot = sum(
            math.exp(-(((p[0] - q[0]) * W) ** 2 + ((p[1] - q[1]) * H) ** 2) / s2) for q in pts
        )
        return min(1.0, tot)

    def sim_chance(r, b):
        t = r["task"]
        if t in RATINGS:
            s = 1 - abs(r["rating"] - b["rating"]) / 4
            c = sum(1 - abs(u - b["rating"]) / 4 for u in range(1, 6)) / 5
            return s, c
        if t == "words":
            sr, sb = set(r["selected"]), set(b["selected"])
            return len(sr & sb) / len(sr), len(sb) / n_opts[r["image_id"]]
        W, H = size[r["image_id"]]
        sigma = 0.05 * min(W, H)
        pr, pb = r["points"], b["points"]
        cover = min(1.0, len(pb) * 2 * math.pi * sigma**2 / (W * H))
        c = pi0[t] if not pb else (1 - pi0[t]) * cover
        if not pr and not pb:
            return 1.0, c
        if not pr or not pb:
            return 0.0, c
        return sum(m_b(p, pb, W, H) for p in pr) / len(pr), c

    pairs = []  # (annotator of r, [(annotator of b, s, c)]) for responses with a peer
    for rs in groups.values():
        for r in rs:
            if r["task"] == "words" and not r["selected"]:
                continue
            peers = [(b["annotator_id"], *sim_chance(r, b)) for b in rs if b is not r]
            pairs.append((r["annotator_id"], peers))
    w = dict(w0)
    for _ in range(50):
        num = {a: 0.0 for a in ids}
        den = {a: 0.0 for a in ids}
        for a, peers in pairs:
            total = sum(w[b] for b, _, _ in peers)
            if total <= 0:
                continue
            A = sum(w[b] * s for b, s, _ in peers) / total
            C = sum(w[b] * c for b, _, c in peers) / total
            num[a] += A - C
            den[a] += 1 - C
        new = {a: min(1.0, max(FLOOR, (num[a] + w0[a]) / (den[a] + 1))) for a in ids}
        moved = max(abs(new[a] - w[a]) for a in ids)
        w = new
        if moved <= 1e-6:
            break
    return w


def _estimate(folder, images, responses, prior="trust"):
    ip = write_jsonl(folder / "images.jsonl", images)
    rp = write_jsonl(folder / "responses.jsonl", responses)
    imgs = read_images(ip)
    reader = ResponseReader([rp], imgs, "fail")
    rows = list(reader.chunks(lambda r: None))
    import pyarrow as pa

    done = reader.finish(pa.concat_tables(rows))
    return estimate_trust(concat([evidence(imgs, done.responses)]), prior)


@pytest.mark.parametrize("prior", ["trust", "uniform"])
@pytest.mark.parametrize("seed", [0, 1])
def test_estimate_matches_the_reference(tmp_path, prior, seed):
    # several annotators across images, so that the weights interact
    images, responses = make_rows(n_images=24, seed=seed)
    pool = [f"a{k}" for k in range(7)]
    rng = np.random.default_rng(seed)
    seen = set()
    for r in responses:
        for _ in range(20):
            a = pool[int(rng.integers(len(pool)))]
            if (r["image_id"], a, r["task"]) not in seen:
                break
        else:
            a = r["annotator_id"]
        seen.add((r["image_id"], a, r["task"]))
        r["annotator_id"] = a
    est = _estimate(tmp_path, images, responses, prior)
    ref = ref_trust(images, responses, prior)
    assert list(est.annotator_ids) == sorted(ref)
    np.testing.assert_allclose(
        est.weight, [ref[a] for a in est.annotator_ids], rtol=1e-9, atol=1e-12
    )
    assert est.converged and (est.weight >= FLOOR).all() and (est.weight <= 1).all()


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 10_000), scale=st.floats(0.01, 100))
def test_estimate_ignores_row_order_and_the_scale_of_given_weights(tmp_path, seed, scale):
    images, responses = make_rows(n_images=10, seed=seed)
    shutil.rmtree(tmp_path / "a", ignore_errors=True)
    shutil.rmtree(tmp_path / "b", ignore_errors=True)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = _estimate(tmp_path / "a", images, responses)
    scaled = [{**r, "weight": r["weight"] * scale} for r in reversed(responses)]
    b = _estimate(tmp_path / "b", images, scaled)
    np.testing.assert_allclose(a.weight, b.weight, rtol=1e-9, atol=1e-12)
    assert ((a.weight >= FLOOR) & (a.weight <= 1)).all()


# ------------------------------------------------------------------ on a planted campaign


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """A simulated campaign without given trust, aggregated with estimated and uniform weights."""
    root = tmp_path_factory.mktemp("planted")
    camp = simulate(root / "c", n_images=96, seed=1)
    rows = [json.loads(line) for line in (camp / "responses.jsonl").read_text().splitlines()]
    for r in rows:
        r.pop("weight")
    write_jsonl(camp / "no-trust.jsonl", rows)
    outs = {}
    for w in ("estimate", "uniform"):
        res = aggregate(
            camp / "images.jsonl", camp / "no-trust.jsonl", weights=w, prior="uniform",
            heatmap_size="64x64", reliability=True,
        )  # fmt: skip
        outs[w] = save_output(res, root / w)
    return camp, outs


def test_estimated_trust_separates_spammers(planted):
    camp, outs = planted
    kinds = {
        a["id"]: a["kind"]
        for a in map(json.loads, (camp / "annotators.jsonl").read_text().splitlines())
    }
    t = pq.read_table(outs["estimate"] / "annotators.parquet").to_pylist()
    spam = np.array([r["weight_estimated"] for r in t if kinds[r["annotator_id"]] == "spammer"])
    good = np.array([r["weight_estimated"] for r in t if kinds[r["annotator_id"]] == "reliable"])
    noisy = np.array([r["weight_estimated"] for r in t if kinds[r["annotator_id"]] == "noisy"])
    assert len(spam) > 5 and len(good) > 5
    auc = (spam[:, None] < good[None, :]).mean() + 0.5 * (spam[:, None] == good[None, :]).mean()
    assert auc >= 0.95
    assert np.median(spam) < np.median(noisy) < np.median(good)
    assert all(r["weight_given"] == 1.0 for r in t)  # no trust was given


def _planted_word_share(ds, truth) -> float:
    """Mean share of the word weight on the planted wrong word (misaligned images)."""
    shares = []
    for row in ds:
        mis = truth[row["image_id"]]["misalignment"]
        if mis is None or row["word_scores"] is None:
            continue
        values = [v for _, v in json.loads(row["word_scores"])]
        shares.append(values[mis["word_index"]] / row["word_weight_total"])
    return float(np.mean(shares))


def test_estimated_trust_recovers_the_truth_better_than_uniform(planted):
    camp, outs = planted
    truth = read_truth(camp / "truth.jsonl")
    ds = {w: load_dataset(o) for w, o in outs.items()}
    e, u = (recovery(ds[w], truth) for w in ("estimate", "uniform"))
    for c in RATINGS:
        assert e[f"{c}_spearman"] > u[f"{c}_spearman"], c
    for kind in ("coherence", "alignment"):
        assert e[f"{kind}_peak_distance"] < u[f"{kind}_peak_distance"], kind
    assert _planted_word_share(ds["estimate"], truth) > _planted_word_share(ds["uniform"], truth)


def test_split_half_reliability_matches_the_reference(planted):
    camp, outs = planted
    images = {
        r["image_id"]: r for r in map(json.loads, (camp / "images.jsonl").read_text().splitlines())
    }
    rows = [json.loads(line) for line in (camp / "no-trust.jsonl").read_text().splitlines()]
    annot = pq.read_table(outs["estimate"] / "annotators.parquet")
    weight = dict(
        zip(annot["annotator_id"].to_pylist(), annot["weight_estimated"].to_pylist(), strict=True)
    )
    ids = sorted(weight)
    half = dict(zip(ids, annotator_halves(np.array(ids, dtype=object)), strict=True))
    ds = load_from_disk(str(outs["estimate"] / "dataset"))
    checked = 0
    for row in ds.select(range(12)):
        im = images[row["image_id"]]
        for kind in ("coherence", "alignment"):
            maps = []
            for h in (0, 1):
                ann = [
                    (r["points"], weight[r["annotator_id"]])
                    for r in rows
                    if r["image_id"] == im["image_id"] and r["task"] == f"{kind}_points"
                    and half[r["annotator_id"]] == h
                ]  # fmt: skip
                maps.append(ref_default_heatmap(ann, im["width"], im["height"], (64, 64)))
            got = row[f"{kind}_heatmap_reliability"]
            if maps[0] is None or maps[1] is None or maps[0].std() == 0 or maps[1].std() == 0:
                assert got is None
                continue
            r = np.corrcoef(maps[0].ravel(), maps[1].ravel())[0, 1]
            assert got == pytest.approx(2 * r / (1 + r), abs=2e-3)  # float32 column, f32 maps
            checked += 1
    assert checked >= 12
    m = json.loads((outs["estimate"] / "manifest.json").read_text())["reliability"]
    col = np.array([v for v in ds["coherence_heatmap_reliability"] if v is not None])
    assert m["coherence_heatmap"]["images"] == col.size
    assert m["coherence_heatmap"]["split_half_median"] == pytest.approx(np.median(col), abs=1e-6)


def test_halves_are_stable_and_balanced():
    ids = np.array([f"worker-{k}" for k in range(2000)], dtype=object)
    h = annotator_halves(ids)
    assert set(np.unique(h)) == {0, 1} and abs(h.mean() - 0.5) < 0.05
    np.testing.assert_array_equal(h, annotator_halves(ids[::-1])[::-1])
    assert annotator_halves(np.array(["worker-7"], dtype=object))[0] == h[7]


# ------------------------------------------------------------------ pipeline and CLI


def test_streaming_equals_in_memory_and_resumes(tmp_path, monkeypatch):
    camp = make_campaign(tmp_path, n_images=30, seed=3)
    args = {"weights": "estimate", "heatmap_size": "24x24", "reliability": True}
    mem = save_output(aggregate(camp.images_path, camp.responses_path, **args), tmp_path / "mem")
    disk = tmp_path / "disk"
    interrupt_at_partition(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        aggregate_to_disk(camp.images_path, camp.responses_path, disk, memory_budget="40KB", **args)
    monkeypatch.undo()
    import rfengine.run.stages as partition

    monkeypatch.setattr(
        partition, "estimate_trust", lambda *a: pytest.fail("the estimate should be reused")
    )
    m = aggregate_to_disk(
        camp.images_path, camp.responses_path, disk, memory_budget="40KB", resume=True, **args
    )
    assert m["partitions"]["count"] > 3
    assert pq.read_table(mem / "annotators.parquet").equals(
        pq.read_table(disk / "annotators.parquet")
    )
    a, b = load_from_disk(str(mem / "dataset")), load_from_disk(str(disk / "dataset"))
    assert a.data.table.equals(b.data.table)
    assert "coherence_heatmap_reliability" in a.column_names
    ma = json.loads((mem / "manifest.json").read_text())
    assert ma["trust"] == m["trust"] and ma["reliability"] == m["reliability"]


def test_cli_annotators(tmp_path, capsys):
    camp = make_campaign(tmp_path, n_images=12, seed=4)
    out = tmp_path / "o"
    args = ["aggregate", "--images", str(camp.images_path), "--responses", str(camp.responses_path)]
    assert (
        main([*args, "--out", str(out), "--quiet", "--weights", "estimate", "--prior", "uniform"])
        == 0
    )
    capsys.readouterr()
    assert main(["annotators", str(out), "-n", "2"]) == 0
    text = capsys.readouterr().out
    assert "least trusted first" in text and "..." in text
    assert main(["annotators", str(out), "--json", "-n", "1"]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(rows) == 2 and rows[0]["weight_estimated"] <= rows[1]["weight_estimated"]
    plain = tmp_path / "plain"
    assert main([*args, "--out", str(plain), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["annotators", str(plain)]) == 1
    assert "--weights estimate" in capsys.readouterr().err
