import json

from rfengine import read_images, read_responses
from rfengine.sim.simulate import make_annotators, read_truth, simulate


def test_deterministic_for_a_seed(tmp_path):
    a = simulate(tmp_path / "a", n_images=6, seed=3)
    b = simulate(tmp_path / "b", n_images=6, seed=3)
    c = simulate(tmp_path / "c", n_images=6, seed=4)
    for name in ("images.jsonl", "responses.jsonl", "truth.jsonl", "images/sim-0004.png"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / "responses.jsonl").read_bytes() != (c / "responses.jsonl").read_bytes()


def test_outputs_are_valid_interchange_and_consistent(tmp_path):
    out = simulate(tmp_path / "s", n_images=30, seed=1)
    images = read_images(out / "images.jsonl")
    responses, rejected, stats = read_responses([out / "responses.jsonl"], images)
    assert not rejected and stats.used == 30 * 6 * 12
    truth = read_truth(out / "truth.jsonl")
    kinds = set()
    for k, image_id in enumerate(images.ids):
        t = truth[image_id]
        if t["misalignment"]:
            m = t["misalignment"]
            kinds.add(m["kind"])
            assert images.tokens[k][m["word_index"]] == m["word"]
            assert (m["points"] == []) == (m["kind"] == "missing_object")
            assert t["alignment"] < 3.6
        else:
            assert t["alignment"] >= 4.2
        for x, y in (t["incoherence"] or {}).get("points", []):
            assert 0 <= x <= 1 and 0 <= y <= 1
    assert kinds == {"wrong_colour", "extra_object", "missing_object"}


def test_trust_follows_reliability():
    import numpy as np

    pool = make_annotators(600, np.random.default_rng(0))
    mean = {
        k: np.mean([a.weight for a in pool if a.kind == k])
        for k in ("reliable", "noisy", "spammer")
    }
    assert mean["reliable"] > mean["noisy"] > mean["spammer"]
    assert {a.kind for a in pool} == {"reliable", "noisy", "spammer"}
    assert all(0 < a.weight < 1 for a in pool)


def test_spammers_answer_at_random(tmp_path):
    out = simulate(tmp_path / "s", n_images=20, seed=2)
    pool = {
        json.loads(x)["id"]: json.loads(x)
        for x in (out / "annotators.jsonl").read_text().splitlines()
    }
    rows = [json.loads(x) for x in (out / "responses.jsonl").read_text().splitlines()]
    spam = [
        r["rating"]
        for r in rows
        if r["task"] == "style" and pool[r["annotator_id"]]["kind"] == "spammer"
    ]
    assert len(set(spam)) == 5  # all five options show up
