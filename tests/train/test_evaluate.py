"""``evaluate`` on predictions that cannot be scored as given: each is a clear error (exit 1,
one line naming the file and what is wrong), or with ``--invalid exclude`` left out of its
figure and counted; the report is valid JSON and says how many images each figure covers."""

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from rfengine import load_output
from rfengine.cli import main
from rfengine.train.evaluate import evaluate


@pytest.fixture(scope="module")
def output(demo) -> Path:
    return demo


@pytest.fixture(scope="module")
def shards(output) -> list[tuple[dict, list[str]]]:
    """The output's targets as perfect predictions: per shard, tensors and image ids."""
    found = []
    for t, meta in load_output(output).targets:
        maps = {
            f"{k}_heatmap": torch.nan_to_num(t[f"{k}_heatmap"].float())
            for k in ("coherence", "alignment")
        }
        found.append(({**maps, "scores_norm": t["scores_norm"].clone()}, list(meta["image_ids"])))
    return found


def write(folder: Path, shards, change=None, ids=None, meta=None) -> Path:
    """One predictions file per shard into ``folder``; ``change(n, tensors)`` edits shard
    ``n``'s tensors, ``ids(n, ids)`` its ids, ``meta`` replaces its metadata."""
    folder.mkdir(exist_ok=True)
    for n, (tensors, image_ids) in enumerate(shards):
        tensors = {k: v.clone() for k, v in tensors.items()}
        if change:
            change(n, tensors)
        image_ids = ids(n, list(image_ids)) if ids else image_ids
        md = meta if meta is not None else {"image_ids": json.dumps(image_ids)}
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(folder / f"{n}.s"), md)
        (folder / f"{n}.s").rename(folder / f"{n}.safetensors")
    return folder


def run(output, pred: Path, capsys, *extra: str) -> tuple[int, str, str]:
    code = main(["evaluate", "--target", str(output), "--pred", str(pred), *extra])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def first(n, fn):
    """``change`` that applies ``fn`` to shard 0's tensors only."""
    return lambda k, t: fn(t) if k == n else None


def poison(name, value, at=(0, 0, 0)):
    def edit(t):
        t[name][at] = value

    return edit


# (name, change, ids, meta, words of the one error line)
BAD = [
    ("nan map", first(0, poison("coherence_heatmap", math.nan)), None, None, "NaN, infinite"),
    ("inf map", first(0, poison("alignment_heatmap", math.inf)), None, None, "NaN, infinite"),
    ("negative map", first(0, lambda t: t["coherence_heatmap"].neg_()), None, None, "negative"),
    ("nan score", first(0, poison("scores_norm", math.nan, (0, 1))), None, None, "not finite"),
    ("-inf score", first(0, poison("scores_norm", -math.inf, (0, 0))), None, None, "not finite"),
    (
        "missing images",
        first(0, lambda t: t.update({k: v[:-1] for k, v in t.items()})),
        lambda n, ids: ids[:-1] if n == 0 else ids,
        None,
        "have no prediction",
    ),
    ("unknown image", None, lambda n, ids: [*ids[:-1], "nope"], None, "not in"),
    ("duplicate id", None, lambda n, ids: [ids[0], *ids[:-1]], None, "predicted twice"),
    ("ids as a string", None, None, {"image_ids": '"sim-0000"'}, "JSON list of strings"),
    ("ids not json", None, None, {"image_ids": "[sim-0000"}, "is not JSON"),
    ("no ids", None, None, {"other": "x"}, "'image_ids' (a JSON list) is missing"),
    ("ids of numbers", None, None, {"image_ids": "[1, 2]"}, "JSON list of strings"),
    (
        "wrong-width scores",
        first(0, lambda t: t.update(scores_norm=t["scores_norm"][:, :2])),
        None,
        None,
        "'scores_norm' must be",
    ),
    (
        "too few rows",
        first(0, lambda t: t.update(coherence_heatmap=t["coherence_heatmap"][:-1])),
        None,
        None,
        "must be (N, H, W)",
    ),
    (
        "a 2-D map",
        first(0, lambda t: t.update(coherence_heatmap=t["coherence_heatmap"][0])),
        None,
        None,
        "must be (N, H, W)",
    ),
    (
        "integer map",
        first(0, lambda t: t.update(alignment_heatmap=t["alignment_heatmap"].long())),
        None,
        None,
        "must be a float tensor",
    ),
    (
        "wrong map size",
        first(0, lambda t: t.update(coherence_heatmap=t["coherence_heatmap"][:, :-1])),
        None,
        None,
        "the targets of these images are",
    ),
    (
        "probs without offsets",
        first(0, lambda t: t.update(word_probs=torch.zeros(3))),
        None,
        None,
        "needs 'word_offsets'",
    ),
    (
        "offsets past the end",
        first(
            0,
            lambda t: t.update(
                word_probs=torch.zeros(3),
                word_offsets=torch.arange(len(t["scores_norm"]) + 1) * 5,
            ),
        ),
        None,
        None,
        "'word_offsets' must rise",
    ),
    (
        "float offsets",
        first(
            0,
            lambda t: t.update(
                word_probs=torch.zeros(3), word_offsets=torch.zeros(len(t["scores_norm"]) + 1)
            ),
        ),
        None,
        None,
        "an integer tensor",
    ),
]


@pytest.mark.parametrize(("name", "change", "ids", "meta", "why"), BAD, ids=[b[0] for b in BAD])
def test_unscorable_predictions_are_one_line(
    output, shards, tmp_path, capsys, name, change, ids, meta, why
):
    pred = write(tmp_path / "p", shards, change, ids, meta)
    code, out, err = run(output, pred, capsys)
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and why in lines[0], err
    assert lines[0].startswith("rfengine: error: ") and "Traceback" not in err and out == ""


def test_the_same_image_in_two_files_is_an_error(output, shards, tmp_path, capsys):
    pred = write(tmp_path / "p", shards)
    (pred / "copy.safetensors").write_bytes((pred / "0.safetensors").read_bytes())
    code, _, err = run(output, pred, capsys)
    assert code == 1 and "is predicted in" in err


@pytest.mark.parametrize(
    "data",
    [b"", b"garbage" * 10, b"\xff" * 8 + b"{}", (10).to_bytes(8, "little") + b'{"a": 1}'],
    ids=["empty", "garbage", "huge header length", "header not tensors"],
)
def test_a_file_that_is_not_safetensors_is_one_line(output, tmp_path, capsys, data):
    bad = tmp_path / "x.safetensors"
    bad.write_bytes(data)
    code, _, err = run(output, bad, capsys)
    assert code == 1 and f"{bad}: not a readable safetensors file" in err
    assert len(err.strip().splitlines()) == 1


def test_a_truncated_file_is_one_line(output, shards, tmp_path, capsys):
    pred = write(tmp_path / "p", shards)
    f = pred / "0.safetensors"
    f.write_bytes(f.read_bytes()[:-100])
    code, _, err = run(output, pred, capsys)
    assert code == 1 and "not a readable safetensors file" in err


def test_exclude_leaves_out_and_counts(output, shards, tmp_path):
    n0 = len(shards[0][1])
    change = first(
        0,
        lambda t: (
            poison("coherence_heatmap", math.nan)(t),
            t["scores_norm"].__setitem__((1, 2), math.nan),
        ),
    )
    pred = write(tmp_path / "p", shards, change)
    total = sum(len(ids) for _, ids in shards)
    rep = evaluate(output, pred, invalid="exclude")
    cov = rep["coverage"]
    assert cov["images_in_target"] == cov["images_predicted"] == total and cov["missing"] == 0
    assert cov["excluded"] == {
        "coherence_heatmap": {"non-finite or negative prediction": 1},
        "scores_norm.alignment": {"non-finite prediction": 1},
    }
    clean = evaluate(output, write(tmp_path / "q", shards))
    h, hc = rep["heatmaps"]["coherence"], clean["heatmaps"]["coherence"]
    assert h["images_with_target"] in (hc["images_with_target"] - 1, hc["images_with_target"])
    assert rep["scores"]["style"]["images"] == clean["scores"]["style"]["images"]
    assert rep["scores"]["alignment"]["images"] <= clean["scores"]["alignment"]["images"]
    # a perfect prediction stays perfect on what is left: nothing bad leaked in
    assert h["cc"] == pytest.approx(1.0) and rep["scores"]["style"]["srcc"] == pytest.approx(1.0)
    assert n0 >= 2


def test_exclude_counts_missing_images(output, shards, tmp_path):
    pred = write(tmp_path / "p", shards, ids=lambda n, ids: ids)
    for f in sorted(pred.glob("*.safetensors"))[1:]:
        f.unlink()
    if len(shards) == 1:
        pytest.skip("one shard: nothing to leave out by file")
    rep = evaluate(output, pred, invalid="exclude")
    total = sum(len(ids) for _, ids in shards)
    assert rep["coverage"]["missing"] == total - len(shards[0][1])


def test_the_report_is_json_with_nulls(output, shards, tmp_path, capsys):
    one = [(shards[0][0], shards[0][1])]  # a figure over too few images is null, not NaN
    pred = write(tmp_path / "p", one, ids=lambda n, ids: ids)
    code, out, _ = run(output, pred, capsys, "--invalid", "exclude")
    assert code == 0
    doc = json.loads(out, parse_constant=lambda c: pytest.fail(f"bare {c} in the report"))
    assert doc["generator"] == "rfengine evaluate" and "coverage" in doc
