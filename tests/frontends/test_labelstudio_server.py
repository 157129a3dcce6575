"""The Label Studio front-end against a real server (``label_studio`` fixture): launch
creates the projects and tasks; annotations made through the server's API are fetched,
imported and aggregated, and every score, word score and heatmap equals a float64
computation from the annotations as posted (tests/reference.py)."""

from __future__ import annotations

import json
import re

import ls_server
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from reference import ref_default_heatmap, ref_scores, ref_word_scores

from rfengine import aggregate
from rfengine.cli import main
from rfengine.frontends.labelstudio.client import LabelStudio, LabelStudioError

pytestmark = pytest.mark.slow

IMAGES = [  # (image_id, width, height, prompt)
    ("im0", 64, 48, "a red, red cat on a mat"),
    ("im1", 40, 30, "two  dogs playing chess"),
    ("im2", 50, 50, "a blue house."),
]
#: stage one, per image, per annotator: style, coherence as asked (severity: 5 = most
#: errors), alignment, and the words: (word indices, no mistake), or None for no answer
STAGE_ONE = {
    "im0": [(4, 5, 4, ([2], False)), (3, 4, 5, ([1, 3], False)), (5, 5, 4, ([], True))],
    "im1": [(2, 1, 1, ([1, 2], False)), (3, 2, 2, None), (1, 1, 2, None)],
    "im2": [(5, 2, 5, ([2], False)), (4, 1, 5, None), (4, 1, 4, None)],
}
#: stage two, per image, per annotator: (coherence pixels, alignment pixels)
STAGE_TWO = {
    "im0": [([(10, 20)], []), ([(11, 20), (50, 5)], [(30, 30)]), ([], [])],
    "im1": [([], [(5, 7)]), ([(0, 0)], [(39, 29)]), ([], [])],
}


def _span(prompt: str, k: int, part: bool) -> dict:
    """A labels value over word ``k`` of ``prompt`` (``part``: only its first two letters)."""
    m = list(re.finditer(r"\S+", prompt))[k]
    end = m.start() + 2 if part else m.end() - (m.group().endswith((",", ".")))
    return {"start": m.start(), "end": end, "text": prompt[m.start() : end], "labels": ["Mistake"]}


def _stage_one_result(prompt: str, answer) -> list[dict]:
    style, coherence, alignment, words = answer
    res = [
        {"from_name": n, "to_name": "image", "type": "rating", "value": {"rating": v}}
        for n, v in (("style", style), ("coherence", coherence), ("alignment", alignment))
    ]
    if words is not None:
        sel, none = words
        # one span over the first two selected words when they are neighbours (one drag)
        if len(sel) == 2 and sel[1] == sel[0] + 1:
            a, b = _span(prompt, sel[0], False), _span(prompt, sel[1], False)
            spans = [{**a, "end": b["end"], "text": prompt[a["start"] : b["end"]]}]
        else:
            spans = [_span(prompt, k, part=(i == 1)) for i, k in enumerate(sel)]
        res += [
            {"from_name": "words", "to_name": "prompt", "type": "labels", "value": s} for s in spans
        ]
        if none:
            res.append(
                {
                    "from_name": "no_mistake",
                    "to_name": "prompt",
                    "type": "choices",
                    "value": {"choices": ["No mistake"]},
                }
            )
    return res


def _point(task: str, px: tuple[int, int], w: int, h: int) -> dict:
    """A key point on pixel ``px``'s centre, as Label Studio stores it (percent)."""
    return {
        "from_name": task,
        "to_name": "image",
        "type": "keypointlabels",
        "original_width": w,
        "original_height": h,
        "image_rotation": 0,
        "value": {
            "x": (px[0] + 0.5) / w * 100,
            "y": (px[1] + 0.5) / h * 100,
            "width": 0.75,
            "keypointlabels": ["Error"],
        },
    }


@pytest.fixture(scope="module")
def campaign(label_studio, tmp_path_factory, monkeypatch_module):
    server = label_studio
    folder = server.root / "campaign"
    folder.mkdir()
    rows = []
    for k, (im, w, h, prompt) in enumerate(IMAGES):
        Image.new("RGB", (w, h), (60 * k, 120, 200)).save(folder / f"{im}.png")
        rows.append(
            {"image_id": im, "prompt": prompt, "width": w, "height": h, "path": f"{im}.png"}
        )
    (folder / "images.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch_module.setenv("LABEL_STUDIO_URL", server.url)
    monkeypatch_module.setenv("LABEL_STUDIO_API_KEY", server.token)
    work = tmp_path_factory.mktemp("ls-campaign")
    users = [
        server.api("POST", "/api/users/", {"email": f"a{k}@example.com", "username": f"a{k}"})["id"]
        for k in range(3)
    ]
    return server, folder, work, users


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def _lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def _server_tasks(server, project: int) -> list[dict]:
    return server.api("GET", f"/api/tasks/?project={project}&page_size=100")["tasks"]


def _tasks(server, project: int) -> dict[str, int]:
    return {t["data"]["image_id"]: t["id"] for t in _server_tasks(server, project)}


def _annotate(server, task: int, user: int, result: list, **extra) -> int:
    return server.api(
        "POST", f"/api/tasks/{task}/annotations/", {"result": result, "completed_by": user, **extra}
    )["id"]


def test_the_whole_campaign_on_a_real_server(campaign, capsys):
    server, folder, work, users = campaign
    camp = work / "campaign.json"
    rc = main(ls_server.launch_args(server, folder / "images.jsonl", camp))
    assert rc == 0, capsys.readouterr().err
    state = json.loads(camp.read_text())
    assert server.token not in camp.read_text()
    (one,) = state["projects"]
    project = server.api("GET", f"/api/projects/{one['project_id']}/")
    assert set(project["parsed_label_config"]) == {
        "style",
        "coherence",
        "alignment",
        "words",
        "no_mistake",
    }
    assert project["maximum_annotations"] == 20 and project["task_number"] == 3
    tasks = _tasks(server, one["project_id"])
    # the image is served to the labeling page from the local files root
    task = server.api("GET", f"/api/tasks/{tasks['im1']}/")
    assert task["data"]["prompt"] == "two dogs playing chess"  # whitespace collapsed
    import urllib.request

    req = urllib.request.Request(
        server.url + task["data"]["image"], headers={"Authorization": f"Token {server.token}"}
    )
    assert urllib.request.urlopen(req).read() == (folder / "im1.png").read_bytes()

    prompts = {im: " ".join(p.split()) for im, _, _, p in IMAGES}
    for im, answers in STAGE_ONE.items():
        for user, answer in zip(users, answers, strict=True):
            _annotate(server, tasks[im], user, _stage_one_result(prompts[im], answer))
    # noise the importer must leave out: a skipped task, a superseded annotation
    _annotate(server, tasks["im2"], users[2], [], was_cancelled=True)
    first = _annotate(
        server, tasks["im0"], users[1], _stage_one_result(prompts["im0"], (1, 1, 1, None))
    )
    capsys.readouterr()
    assert main(["campaign", "status", str(camp)]) == 0
    (st,) = _lines(capsys.readouterr().out)
    assert (st["tasks_with_annotations"], st["annotations"], st["skipped"]) == (3, 10, 1)
    # the superseding annotation is the newer one: post it again after `first`
    _annotate(
        server, tasks["im0"], users[1], _stage_one_result(prompts["im0"], STAGE_ONE["im0"][1])
    )
    assert first > 0

    assert main(["campaign", "next-stage", str(camp)]) == 0
    (plan,) = _lines(capsys.readouterr().out)
    assert plan["planned"] == {"coherence_points": 1, "alignment_points": 1}
    state = json.loads(camp.read_text())
    assert state["planned"] == {"coherence_points": ["im0"], "alignment_points": ["im1"]}
    two = state["projects"][1]
    assert two["stage"] == 2 and two["image_ids"] == ["im0", "im1"]
    project = server.api("GET", f"/api/projects/{two['project_id']}/")
    assert set(project["parsed_label_config"]) == {"coherence_points", "alignment_points"}
    tasks2 = _tasks(server, two["project_id"])
    size = {im: (w, h) for im, w, h, _ in IMAGES}
    for im, answers in STAGE_TWO.items():
        w, h = size[im]
        for user, (coh, ali) in zip(users, answers, strict=True):
            result = [_point("coherence_points", p, w, h) for p in coh]
            result += [_point("alignment_points", p, w, h) for p in ali]
            _annotate(server, tasks2[im], user, result)

    out = work / "responses.parquet"
    assert main(["campaign", "fetch", str(camp), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "1 skipped by the annotator, 2 superseded" in err and "0 rejected" in err
    res = aggregate(folder / "images.jsonl", out, device="cpu", dtype="float32")
    _check_against_reference(res, users)


def _check_against_reference(res, users) -> None:
    index = {im: k for k, (im, *_rest) in enumerate(IMAGES)}
    for im, answers in STAGE_ONE.items():
        k = index[im]
        for c, pos in (("style", 0), ("coherence", 1), ("alignment", 2)):
            given = [a[pos] for a in answers]
            if c == "coherence":
                given = [6 - g for g in given]  # asked as error severity
            ref = ref_scores([(g, 1.0) for g in given])
            assert res.scores[c].count[k] == 3
            np.testing.assert_allclose(res.scores[c].score[k], ref["mean"], rtol=1e-6)
            np.testing.assert_allclose(res.scores[c].std[k], ref["std"], rtol=1e-6, atol=1e-9)
        n = len(IMAGES[k][3].split())
        sel = [(w[0] + ([n] if w[1] else []), 1.0) for *_r, w in answers if w is not None]
        got = res.words.values[res.words.offsets[k] : res.words.offsets[k + 1]]
        np.testing.assert_allclose(got, ref_word_scores(n, sel), rtol=1e-6)
        assert res.words.count[k] == len(sel)
    for kind, pos in (("coherence", 0), ("alignment", 1)):
        for im, (_, w, h, _p) in zip(index, IMAGES, strict=True):
            got = res.heatmaps[kind][index[im]]
            if im not in STAGE_TWO:
                assert got is None
                continue
            anns = [
                ([((x + 0.5) / w, (y + 0.5) / h) for x, y in a[pos]], 1.0) for a in STAGE_TWO[im]
            ]
            np.testing.assert_allclose(got, ref_default_heatmap(anns, w, h), atol=1e-5)


def test_errors_are_one_line_without_the_key(campaign, tmp_path, capsys, monkeypatch):
    server, folder, work, _ = campaign
    camp = tmp_path / "c.json"
    base = ls_server.launch_args(server, folder / "images.jsonl", camp)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "f" * 40)
    assert main(base) == 1
    err = capsys.readouterr().err
    assert "was refused" in err and "f" * 40 not in err and len(err.strip().splitlines()) == 1
    assert not camp.exists()  # the key is checked before the campaign file is written
    monkeypatch.setenv("LABEL_STUDIO_URL", "http://127.0.0.1:9")
    assert main(base) == 1
    assert "cannot reach Label Studio at http://127.0.0.1:9" in capsys.readouterr().err
    # a deleted project
    monkeypatch.setenv("LABEL_STUDIO_URL", server.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", server.token)
    state = json.loads((work / "campaign.json").read_text())
    state["projects"][0]["project_id"] = 987654
    (tmp_path / "gone.json").write_text(json.dumps(state))
    assert main(["campaign", "status", str(tmp_path / "gone.json")]) == 1
    err = capsys.readouterr().err
    assert "/api/projects/987654/: not found (deleted?)" in err


def test_a_personal_access_token_is_refreshed(campaign):
    server, *_ = campaign
    pat = server.api("POST", "/api/token/", {})["token"]
    ls = LabelStudio(server.url, pat)
    assert ls.get("/api/current-user/whoami")["email"] == server.email
    ls._access = ls._access[:-4] + "AAAA"  # an expired (invalid) access token: renewed once
    assert ls.get("/api/current-user/whoami")["email"] == server.email
    assert pat not in repr(ls)
    with pytest.raises(LabelStudioError, match="personal access token .* was refused") as exc:
        LabelStudio(server.url, pat[:-4] + "AAAA").get("/api/projects/")
    assert pat[:-4] not in str(exc.value)


def test_a_top_up_round_raises_just_the_planned_tasks(campaign, capsys):
    """After the campaign above: plan-more on its output, top-up raises the overlap of the
    planned images' tasks (annotations so far + the most any of the task's controls needs)
    and puts them back in the stream; a repeat raises nothing twice; a new annotation on a
    raised task comes back with fetch."""
    server, folder, work, users = campaign
    camp = work / "campaign.json"
    out = work / "round1"
    assert main(["aggregate", "--images", str(folder / "images.jsonl"), "--responses",
                 str(work / "responses.parquet"), "--out", str(out), "--quiet"]) == 0  # fmt: skip
    plan = work / "plan.parquet"
    assert main(["plan-more", str(out), "--ci-half-width", "0.8", "--max-per-image", "4",
                 "--out", str(plan), "--campaign", str(camp)]) == 0  # fmt: skip
    capsys.readouterr()
    rows = pq.read_table(plan).to_pylist()
    need: dict[str, int] = {}
    for r in rows:  # stage one's project: one task asks all four controls
        if r["task"] in ("style", "coherence", "alignment", "words"):
            need[r["image_id"]] = max(need.get(r["image_id"], 0), r["more"])
    assert any(need.values()), "three annotators cannot reach 0.8 everywhere"
    state = json.loads(camp.read_text())
    one = state["projects"][0]["project_id"]
    before = {t["data"]["image_id"]: t for t in _server_tasks(server, one)}
    assert main(["campaign", "top-up", str(plan)]) == 0
    (line, *_rest) = _lines(capsys.readouterr().out)
    assert line["responses"] == sum(need.values())
    after = {t["data"]["image_id"]: t for t in _server_tasks(server, one)}
    for im, t in after.items():
        if need.get(im, 0) > 0:
            assert t["overlap"] == max(before[im]["overlap"], t["total_annotations"] + need[im])
            assert t["is_labeled"] is False
        else:
            assert t["overlap"] == before[im]["overlap"]
    state = json.loads(camp.read_text())
    assert state["top_ups"][0]["round"] == 1
    assert main(["campaign", "top-up", str(plan)]) == 0  # a repeat: nothing raised twice
    again = {t["data"]["image_id"]: t["overlap"] for t in _server_tasks(server, one)}
    assert again == {im: t["overlap"] for im, t in after.items()}
    # a fourth annotator answers a raised task; fetch brings it back
    im = next(i for i, m in need.items() if m > 0)
    late = server.api("POST", "/api/users/", {"email": "late@example.com", "username": "late"})
    k = [i for i, *_r in IMAGES].index(im)
    prompt = " ".join(IMAGES[k][3].split())
    _annotate(server, after[im]["id"], late["id"], _stage_one_result(prompt, (3, 3, 3, None)))
    again = work / "responses2.parquet"
    assert main(["campaign", "fetch", str(camp), "--out", str(again)]) == 0
    got = pq.read_table(again).to_pylist()
    assert sum(r["annotator_id"] == str(late["id"]) for r in got) == 3  # its three ratings
