"""The Label Studio importer on exports in Label Studio's documented JSON export format
(task: id, data, annotations, drafts, predictions; result items as the labeling page
stores them), without a server; the real server's exports are in
test_labelstudio_server.py."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rfengine.cli import main
from rfengine.errors import InputError
from rfengine.frontends.labelstudio.importer import Controls, import_labelstudio
from rfengine.ingest import read_images

PROMPT = "a red, red cat on a mat."


@pytest.fixture
def images(tmp_path):
    rows = [
        {"image_id": "im0", "prompt": PROMPT, "width": 64, "height": 48, "path": "x/cat.png"},
        {"image_id": "im1", "prompt": "two dogs", "width": 10, "height": 10, "path": "y/dog.png"},
        {"image_id": "im2", "prompt": "two dogs", "width": 10, "height": 10, "path": "z/dog.png"},
    ]
    path = tmp_path / "images.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return read_images(path, require_files=False)


def _rating(name, n):
    return {"from_name": name, "to_name": "image", "type": "rating", "value": {"rating": n}}


def _span(s, e, text=PROMPT, name="words"):
    value = {"start": s, "end": e, "text": text[s:e], "labels": ["Mistake"]}
    return {"from_name": name, "to_name": "prompt", "type": "labels", "value": value}


def _kp(name, x, y, w=64, h=48):
    return {
        "from_name": name,
        "to_name": "image",
        "type": "keypointlabels",
        "original_width": w,
        "original_height": h,
        "image_rotation": 0,
        "value": {"x": x, "y": y, "width": 0.75, "keypointlabels": ["Error"]},
    }


def _task(result, data=None, who=7, tid=1, **ann):
    data = data or {"image": "/data/local-files/?d=x/cat.png", "prompt": PROMPT, "image_id": "im0"}
    a = {"id": 100 + tid, "completed_by": who, "was_cancelled": False, "result": result, **ann}
    return {"id": tid, "data": data, "annotations": [a], "drafts": [], "predictions": []}


def _run(tmp_path, images, tasks, **kw):
    export = tmp_path / "export.json"
    export.write_text(json.dumps(tasks))
    out = tmp_path / "r.jsonl"
    summary = import_labelstudio(images, [export], out, **kw)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    return rows, summary


def _owner_reference(text: str, s: int, e: int) -> set[int]:
    """Independent: the word index of every non-space character in [s, e)."""
    owner, k, inside = [], -1, False
    for ch in text:
        if ch.isspace():
            inside = False
            owner.append(None)
        else:
            if not inside:
                k, inside = k + 1, True
            owner.append(k)
    return {owner[i] for i in range(s, e) if owner[i] is not None}


@settings(max_examples=200, deadline=None)
@given(
    words=st.lists(st.text("ab,.é", min_size=1, max_size=4), min_size=1, max_size=6),
    gaps=st.lists(st.sampled_from([" ", "  ", "\t"]), min_size=6, max_size=6),
    data=st.data(),
)
def test_a_span_selects_every_word_it_touches(words, gaps, data):
    from rfengine.frontends.labelstudio.results import Bad as _Bad
    from rfengine.frontends.labelstudio.results import words as _words

    text = "".join(w + g for w, g in zip(words, gaps, strict=False)).strip()
    s = data.draw(st.integers(0, len(text) - 1))
    e = data.draw(st.integers(s + 1, len(text)))
    ref = _owner_reference(text, s, e)
    if not ref:
        with pytest.raises(_Bad, match="covers no word"):
            _words([{"start": s, "end": e}], text, "words")
    else:
        assert _words([{"start": s, "end": e, "text": text[s:e]}], text, "words") == ref


def test_every_task_maps_to_responses(tmp_path, images):
    result = [
        _rating("style", 4),
        _rating("coherence", 5),
        _rating("alignment", 2),
        _span(3, 6),
        _span(12, 14),  # "red" of "red," and "ca" of "cat"
        _kp("coherence_points", 50.0, 25.0),
        _kp("alignment_points", 0.0, 100.0),
    ]
    rows, summary = _run(tmp_path, images, [_task(result)])
    by = {r["task"]: r for r in rows}
    assert by["style"]["rating"] == 4 and by["alignment"]["rating"] == 2
    assert by["coherence"]["rating"] == 1  # asked as error severity: 6 - 5
    assert by["words"]["selected"] == [1, 3]  # "red," and "cat"
    assert by["coherence_points"]["points"] == [[0.5, 0.25]]
    assert by["alignment_points"]["points"] == [[0.0, 1.0]]
    assert {r["annotator_id"] for r in rows} == {"7"} and {r["weight"] for r in rows} == {1.0}
    assert summary["rows"] == 6 and summary["rejected"] == 0


NONE = {
    "from_name": "no_mistake",
    "to_name": "prompt",
    "type": "choices",
    "value": {"choices": ["No mistake"]},
}


def test_no_mistake_is_the_last_slot(tmp_path, images):
    rows, _ = _run(tmp_path, images, [_task([NONE])])
    assert rows[0]["selected"] == [7]  # the prompt has 7 words: slot 7 is [No_Mistake]


def test_repeated_words_are_told_apart_by_offset(tmp_path, images):
    rows, _ = _run(tmp_path, images, [_task([_span(7, 10)])])  # the second "red"
    assert rows == [
        {"image_id": "im0", "annotator_id": "7", "weight": 1.0, "task": "words", "selected": [2]}
    ]


def test_what_is_not_a_response(tmp_path, images):
    task = _task([_rating("style", 3)])
    task["annotations"] += [
        {"id": 90, "completed_by": 7, "was_cancelled": False, "result": [_rating("style", 1)]},
        {"id": 95, "completed_by": 8, "was_cancelled": True, "result": []},
    ]
    task["drafts"] = [{"id": 1, "result": [_rating("style", 5)]}]
    task["predictions"] = [{"id": 2, "result": [_rating("style", 5)]}]
    rows, s = _run(tmp_path, images, [task])
    assert [r["rating"] for r in rows] == [3]  # the newest of annotator 7 (id 101, not 90)
    assert (s["cancelled"], s["superseded"], s["drafts"], s["predictions"]) == (1, 1, 1, 1)


def test_stage_two_without_points_is_an_answer(tmp_path, images):
    data = {"image": "u", "prompt": PROMPT, "image_id": "im0", "rfengine_stage": 2}
    rows, _ = _run(tmp_path, images, [_task([], data=data)])
    assert sorted((r["task"], r["points"]) for r in rows) == [
        ("alignment_points", []),
        ("coherence_points", []),
    ]
    (tmp_path / "r.jsonl").unlink()
    rows, s = _run(tmp_path, images, [_task([])])  # stage one: no points is no answer
    assert rows == [] and s["empty"] == 1


@pytest.mark.parametrize(
    "url,row",
    [
        ("/data/local-files/?d=x%2Fcat.png", "im0"),
        ("/data/upload/3/1a2b3c4d-cat.png", "im0"),
        ("https://bucket.example/imgs/cat.png?sig=1", "im0"),
    ],
)
def test_a_foreign_task_maps_by_file_name(tmp_path, images, url, row):
    rows, _ = _run(tmp_path, images, [_task([_rating("style", 2)], data={"image": url})])
    assert rows[0]["image_id"] == row


@pytest.mark.parametrize(
    "result,data,field,why",
    [
        ([_rating("style", 6)], None, "style.rating", "expected 1-5, got 6"),
        ([_rating("quality", 3)], None, "result[0].from_name", "unknown control 'quality'"),
        ([_kp("coherence_points", 1, 1)] * 4, None, "coherence_points", "4 points; at most 3"),
        ([_kp("coherence_points", 101, 1)], None, "coherence_points.x/y", "percent"),
        ([_span(0, 1, text="b")], None, "words.text", "not the prompt's"),
        ([_rating("style", 2)], {"image": "/d/dog.png"}, "data.image", "matches 2 images"),
        ([_rating("style", 2)], {"image": "/d/cow.png"}, "data.image", "matches no image"),
        ([_rating("style", 2)], {"image_id": "im0", "prompt": "a dog"}, "data.prompt", "not the"),
        ([_rating("style", 2)], {"image_id": "nope"}, "data.image_id", "not in the images"),
        ([_span(3, 6), NONE], None, "no_mistake", "chosen together with a word"),
    ],
)
def test_a_bad_annotation_is_rejected_with_its_position(tmp_path, images, result, data, field, why):
    good = _task([_rating("style", 3)], tid=1)
    bad = _task(result, data=data, tid=2)
    with pytest.raises(InputError, match=re.escape(f"field '{field}'")) as exc:
        _run(tmp_path, images, [good, bad])
    assert "export.json: task 1 (id 2)" in str(exc.value) and why in str(exc.value)
    rows, s = _run(tmp_path, images, [good, bad], on_error="skip")
    assert [r["rating"] for r in rows] == [3] and s["rejected"] == 1
    (rej,) = [
        json.loads(x) for x in (tmp_path / "r.jsonl.rejected.jsonl").read_text().split("\n") if x
    ]
    assert rej["field"] == field and rej["where"].startswith("task 1 (id 2)")


def test_other_control_names_map_with_control(tmp_path, images):
    result = [_rating("quality", 5), _kp("defects", 10, 10)]
    data = {"img": "/data/local-files/?d=x/cat.png", "caption": PROMPT}
    controls = Controls.parse(
        ["style=quality", "coherence_points=defects", "image=img", "prompt=caption"]
    )
    rows, _ = _run(tmp_path, images, [_task(result, data=data)], controls=controls)
    assert [(r["task"], r.get("rating", r.get("points"))) for r in rows] == [
        ("style", 5),
        ("coherence_points", [[0.1, 0.1]]),
    ]
    with pytest.raises(InputError, match="expected TASK=NAME"):
        Controls.parse(["colour=x"])


def test_the_command(tmp_path, images, capsys):
    export = tmp_path / "e.json"
    export.write_text(
        json.dumps([_task([_rating("style", 4)]), {"id": 5, "data": {}, "annotations": []}])
    )
    out = tmp_path / "r.parquet"
    assert (
        main(["import-labelstudio", str(export), "--images", str(images.source), "--out", str(out)])
        == 0
    )
    err = capsys.readouterr().err
    assert "2 tasks, 1 annotations" in err and "1 responses (style 1)" in err
    assert (
        main(["import-labelstudio", str(export), "--images", str(images.source), "--out", str(out)])
        == 1
    )
    assert "exists; pass --overwrite" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{")
    assert (
        main(
            [
                "import-labelstudio",
                str(tmp_path / "bad.json"),
                "--images",
                str(images.source),
                "--out",
                str(tmp_path / "s.jsonl"),
            ]
        )
        == 1
    )
    assert "bad.json: line 1: malformed JSON" in capsys.readouterr().err
