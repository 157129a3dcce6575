"""The Rapidata adapter against the real installed package, its network faked at the seam the
SDK's own tests use: a MagicMock ``openapi_service`` handed to its managers and job objects.

Stubbed beyond that seam: the asset upload inside job-definition creation
(``RapidataJobManager._create_general_job_definition``) and ``RapidataJobDefinition.save``
(it loads a server-side revision); the public ``create_*_job_definition`` methods, audiences,
``assign_job``, ``get_job_by_id``, ``get_status`` and ``get_results`` run for real.
"""

from __future__ import annotations

import json
import os
import socket
from datetime import datetime
from types import SimpleNamespace
from unittest.mock import MagicMock

import pytest
from fixtures import cli_aggregate, to_rapidata_results

os.environ.setdefault("RAPIDATA_DISABLE_OTLP", "1")  # before rapidata is imported
os.environ.setdefault("RAPIDATA_AGENT_HINT", "0")
rapidata = pytest.importorskip(
    "rapidata", reason="needs the extra: pip install 'rfengine[rapidata]'"
)

from rapidata.api_client.models.audience_job_state import AudienceJobState  # noqa: E402
from rapidata.api_client.models.audience_status import AudienceStatus  # noqa: E402
from rapidata.rapidata_client.audience.rapidata_audience_manager import (  # noqa: E402
    RapidataAudienceManager,
)
from rapidata.rapidata_client.job.rapidata_job_definition import (  # noqa: E402
    RapidataJobDefinition,
)
from rapidata.rapidata_client.job.rapidata_job_manager import RapidataJobManager  # noqa: E402

from rfengine import campaign as rd  # noqa: E402
from rfengine.cli import main  # noqa: E402
from rfengine.errors import InputError  # noqa: E402
from rfengine.frontends.rapidata import service  # noqa: E402
from rfengine.sim.simulate import simulate  # noqa: E402


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any connection attempt fails the test: nothing here may reach the network."""

    def refuse(self, address):
        raise AssertionError(f"network access attempted: {address!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)


class FakeService:
    """The rapidata service behind the real SDK's seam (a MagicMock openapi_service), with
    the service's states as read from rapidata 3.27.1's source:

    - a new custom audience is CREATED, with no recruits: a job on it can never produce
      responses, and the SDK's ``get_results`` says so; "global" is READY; a filtered view
      (``audience.filter``) reuses its base's pool and is READY;
    - a job definition advances its revision on ``save()`` (as the real save does, moving
      the object to the new revision), and ``job_post`` must receive the saved revision;
    - a job reports the audience it was assigned to; results are served by job id.
    Dataset uploads inside definition creation are stubbed (``create_general``).
    """

    def __init__(self, monkeypatch):
        self.svc = svc = MagicMock()
        svc.environment = "rapidata.ai"
        self.definitions: list[dict] = []
        self.saved: list[tuple[str, dict]] = []
        self.revisions: dict[str, int] = {}  # definition id -> latest saved revision
        self.results: dict[str, dict] = {}
        self.jobs: dict[str, str] = {}  # job id -> definition id
        self.job_audience: dict[str, str] = {}
        self.audiences: dict[str, str] = {"global": "Ready"}  # id -> status
        self.filtered: dict[str, tuple[str, object]] = {}  # id -> (base id, filter model)

        def create_general(manager, **kw):
            self.definitions.append(kw)
            def_id = f"def-{len(self.definitions)}"
            self.revisions[def_id] = 1
            return RapidataJobDefinition(
                id=def_id, name=kw["name"], openapi_service=svc, revision=1
            )

        def save(definition, require_latest=False):
            self.saved.append((definition.id, dict(definition._pending)))
            self.revisions[definition.id] += 1
            definition._revision_number = self.revisions[definition.id]
            definition._loaded_snapshot = None
            definition._pending = {}
            return definition._revision_number

        monkeypatch.setattr(RapidataJobManager, "_create_general_job_definition", create_general)
        monkeypatch.setattr(RapidataJobDefinition, "save", save)

        def job_post(create_job_endpoint_input):
            inp = create_job_endpoint_input
            saved = self.revisions[inp.job_definition_id]
            if inp.revision_number != saved:
                raise AssertionError(f"job_post got revision {inp.revision_number}, saved {saved}")
            if inp.audience_id not in self.audiences:
                raise AssertionError(f"job_post to an unknown audience {inp.audience_id!r}")
            job_id = f"job-{len(self.jobs) + 1}"
            self.jobs[job_id] = inp.job_definition_id
            self.job_audience[job_id] = inp.audience_id
            return MagicMock(job_id=job_id, cost_warning=None, content_check_skip_denied=None)

        def job_get(*args, **kwargs):
            job_id = kwargs.get("job_id", args[0] if args else None)
            return SimpleNamespace(
                job_id=job_id,
                name="job",
                audience_id=self.job_audience[job_id],
                created_at=datetime(2026, 1, 1),
                definition_id=self.jobs[job_id],
                pipeline_id="pipe",
                state=AudienceJobState("Completed"),
            )

        def definition_get(definition_id):
            return SimpleNamespace(definition_id=definition_id, name=definition_id)

        def revision_get(definition_id, revision_number):
            assert revision_number <= self.revisions[definition_id]
            return SimpleNamespace(revision_number=revision_number)

        api = svc.order.job_api
        api.job_post.side_effect = job_post
        api.job_job_id_get.side_effect = job_get
        api.job_definition_definition_id_get.side_effect = definition_get
        api.job_definition_definition_id_revision_revision_number_get.side_effect = revision_get
        api.job_job_id_download_results_get.side_effect = lambda job_id: json.dumps(
            self.results[job_id]
        ).encode()

        def audience_get(*args, **kwargs):
            aid = kwargs.get("audience_id", args[0] if args else None)
            if aid not in self.audiences:
                raise RuntimeError(f"404: no audience {aid!r}")
            return SimpleNamespace(name=aid, status=AudienceStatus(self.audiences[aid]), filters=[])

        def audience_post(*args, **kwargs):
            aid = f"aud-custom-{len(self.audiences)}"
            self.audiences[aid] = "Created"  # no qualification examples, no recruiting
            return SimpleNamespace(audience_id=aid)

        def filter_post(base_audience_id, create_filtered_audience_endpoint_input):
            aid = f"filtered-{len(self.filtered) + 1}"
            self.filtered[aid] = (base_audience_id, create_filtered_audience_endpoint_input.filter)
            self.audiences[aid] = "Ready"  # the base's graduated pool, sliced
            return SimpleNamespace(audience_id=aid)

        audiences = svc.audience.audience_api
        audiences.audience_audience_id_get.side_effect = audience_get
        audiences.audience_post.side_effect = audience_post
        audiences.audience_base_audience_id_filter_post.side_effect = filter_post
        # recruiting metrics unavailable: the SDK then judges the audience by its status
        audiences.audience_audience_id_user_metrics_get.side_effect = RuntimeError("offline")
        self.client = SimpleNamespace(
            job=RapidataJobManager(openapi_service=svc),
            audience=RapidataAudienceManager(openapi_service=svc),
        )


@pytest.fixture
def fake(monkeypatch):
    f = FakeService(monkeypatch)
    monkeypatch.setattr(service, "make_client", lambda: f.client)
    return f


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    root = tmp_path_factory.mktemp("sim")
    return simulate(root / "campaign", n_images=10, seed=5)


def rows_of(sim):
    images = [json.loads(x) for x in (sim / "images.jsonl").read_text().splitlines()]
    rows = [json.loads(x) for x in (sim / "responses.jsonl").read_text().splitlines()]
    return images, rows


def test_dry_run_prints_the_six_seed_jobs(sim, capsys, monkeypatch):
    monkeypatch.setattr(
        service, "make_client", lambda: pytest.fail("a dry run must not make a client")
    )
    assert (
        main(
            [
                "campaign",
                "launch",
                "--images",
                str(sim / "images.jsonl"),
                "--out",
                "c.json",
                "--dry-run",
            ]
        )
        == 0
    )
    jobs = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [j["task"] for j in jobs] == list(rd.STAGE_ONE + rd.STAGE_TWO)
    kinds = {j["task"]: j["kind"] for j in jobs}
    assert kinds == {
        "style": "classification",
        "coherence": "classification",
        "alignment": "classification",
        "words": "select_words",
        "coherence_points": "locate",
        "alignment_points": "locate",
    }
    by = {j["task"]: j for j in jobs}
    assert by["alignment"]["contexts"] == 10 and by["style"]["contexts"] is None
    assert by["alignment_points"]["contexts"] == 10
    assert (
        by["words"]["sentences"][0].endswith(" [No_Mistake]")
        and len(by["words"]["sentences"]) == 10
    )
    assert by["words"]["audience"] == {"base": "global", "filters": {"language": ["en"]}}
    assert by["style"]["audience"] == {"id": "global"}
    assert by["style"]["settings"] == {"NoShuffleSetting": True}
    assert by["coherence_points"]["settings"] == {"LocateMaxPointsSetting": 3}
    assert by["alignment"]["settings"] == {
        "NoShuffleSetting": True,
        "OriginalLanguageOnlySetting": True,
    }
    assert by["words"]["settings"] == {"OriginalLanguageOnlySetting": True}
    assert by["alignment_points"]["settings"] == {
        "LocateMaxPointsSetting": 3,
        "OriginalLanguageOnlySetting": True,
    }
    assert by["coherence"]["answer_options"][4].startswith("5: Severe")  # asked as severity
    assert all(j["responses_per_datapoint"] >= 20 for j in jobs if j["kind"] == "classification")
    assert by["alignment"]["validation_set_id"] == "676199a5ef7af86285630ea6"
    for j in jobs:
        assert set(j) >= {
            "task",
            "kind",
            "name",
            "instruction",
            "answer_options",
            "datapoints",
            "contexts",
            "sentences",
            "responses_per_datapoint",
            "audience",
            "settings",
            "validation_set_id",
            "warnings",
        }


def test_launch_makes_the_sdk_calls(sim, fake, tmp_path):
    camp = tmp_path / "c.json"
    rd.launch(sim / "images.jsonl", camp)
    names = [d["name"] for d in fake.definitions]
    assert names == ["Style", "Coherence", "Alignment", "Select misaligned words"]
    style, _, align, words = fake.definitions
    assert style["responses_per_datapoint"] == 20
    assert [type(s).__name__ for s in style["settings"]] == ["NoShuffleSetting"]
    assert len(style["datapoints"]) == 10
    # the SDK built datapoints from our paths, prompts and sentences
    assert all(dp.asset.endswith(".png") for dp in align["datapoints"])
    assert [dp.context for dp in align["datapoints"]][0] == json.loads(
        (sim / "images.jsonl").read_text().splitlines()[0]
    )["prompt"]
    assert all(dp.sentence.endswith(" [No_Mistake]") for dp in words["datapoints"])
    assert fake.saved == [
        ("def-3", {"validation_set_id": "676199a5ef7af86285630ea6"}),
        ("def-4", {"validation_set_id": "6761a86eef7af86285630ea8"}),
    ]
    state = json.loads(camp.read_text())
    assert [j["job_id"] for j in state["jobs"]] == ["job-1", "job-2", "job-3", "job-4"]
    assert [j["revision"] for j in state["jobs"]] == [1, 1, 2, 2]  # saved revisions ran
    assert state["stage"] == 1
    assert "secret" not in camp.read_text().lower()


def test_the_word_task_reaches_english_speakers_in_the_global_pool(sim, fake, tmp_path):
    camp = tmp_path / "c.json"
    rd.launch(sim / "images.jsonl", camp)
    assert fake.svc.audience.audience_api.audience_post.call_count == 0  # no new audience
    words = json.loads(camp.read_text())["jobs"][3]
    assert words["task"] == "words" and words["audience_id"] in fake.filtered
    base, flt = fake.filtered[words["audience_id"]]
    assert base == "global" and "en" in json.dumps(flt.to_dict())
    assert fake.job_audience[words["job_id"]] == words["audience_id"]
    assert {fake.job_audience[j["job_id"]] for j in json.loads(camp.read_text())["jobs"][:3]} == {
        "global"
    }
    # and its results can be fetched (a custom audience's could not: see below)
    fake.results[words["job_id"]] = {"results": []}
    job = fake.client.job.get_job_by_id(words["job_id"])
    assert job.get_results() is not None


def test_a_new_custom_audience_never_produces_responses(fake):
    """What the old words job did: the fake behaves like the service (the SDK refuses)."""
    aud = fake.client.audience.create_audience(name="English speakers")
    fake.revisions["def-x"] = 1
    definition = RapidataJobDefinition(id="def-x", name="w", openapi_service=fake.svc, revision=1)
    job = aud.assign_job(definition)
    fake.results[job.id] = {"results": []}
    with pytest.raises(Exception, match="can never produce responses"):
        job.get_results()


def test_every_locate_job_caps_clicks_at_three(sim, fake, tmp_path):
    images, rows = rows_of(sim)
    camp = tmp_path / "c.json"
    rd.launch(sim / "images.jsonl", camp)
    for rec in json.loads(camp.read_text())["jobs"]:
        fake.results[rec["job_id"]] = to_rapidata_results(rows, images, rec["task"], with_ids=False)
    rd.next_stage(rd.Campaign.load(camp), threshold=3.0)
    located = [d for d in fake.definitions if d["name"].endswith("heatmap")]
    assert located
    for d in located:
        caps = [s for s in d["settings"] if type(s).__name__ == "LocateMaxPointsSetting"]
        assert [s.value for s in caps] == [3]


def test_an_interrupted_launch_resumes_without_creating_twice(sim, fake, tmp_path, monkeypatch):
    camp = tmp_path / "c.json"
    real = service.define_job
    calls = []

    def flaky(*a, **k):
        calls.append(a[1])
        if len(calls) == 3:
            raise KeyboardInterrupt  # killed while creating the third definition
        return real(*a, **k)

    monkeypatch.setattr(service, "define_job", flaky)
    with pytest.raises(KeyboardInterrupt):
        rd.launch(sim / "images.jsonl", camp)
    state = json.loads(camp.read_text())
    assert [j["task"] for j in state["jobs"]] == ["style", "coherence"]
    assert not fake.jobs  # nothing assigned (billed) before every definition is saved
    monkeypatch.setattr(service, "define_job", real)
    # then interrupted while assigning: the second job_post fails
    post = fake.svc.order.job_api.job_post
    real_post, n = post.side_effect, []

    def failing_post(**kw):
        n.append(1)
        if len(n) == 2:
            raise ConnectionError("connection reset")
        return real_post(**kw)

    post.side_effect = failing_post
    assert main(["campaign", "launch", "--resume", str(camp)]) == 1  # one line, no traceback
    post.side_effect = real_post
    assert main(["campaign", "launch", "--resume", str(camp)]) == 0
    state = json.loads(camp.read_text())
    assert len(fake.definitions) == 4 and len(fake.jobs) == 4  # nothing made twice
    assert [j["task"] for j in state["jobs"]] == list(rd.STAGE_ONE)
    assert all("job_id" in j for j in state["jobs"])


def test_an_older_rapidata_is_refused_with_what_to_install(monkeypatch):
    from importlib import metadata

    monkeypatch.setattr(metadata, "version", lambda name: "3.27.0")
    with pytest.raises(InputError, match=r"rapidata 3.27.0 is installed; .*>= 3.27.1, < 4"):
        rd.require_rapidata()


def test_prompts_are_normalised_and_long_ones_warned(tmp_path, capsys):
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    long = "a  red\tcar " + "very " * 90
    rows = [{"image_id": "a", "prompt": long, "path": "a.png"}]
    (tmp_path / "images.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    args = ["campaign", "launch", "--images", str(tmp_path / "images.jsonl"), "--dry-run"]
    assert main(args) == 0
    cap = capsys.readouterr()
    jobs = {j["task"]: j for j in map(json.loads, cap.out.splitlines())}
    assert jobs["words"]["sentences"][0].startswith("a red car very very")
    assert "prompt of" in cap.err and "shortens" in cap.err and cap.err.count("warning") == 1


def test_status_from_another_process(sim, fake, tmp_path, capsys):
    camp = tmp_path / "c.json"
    rd.launch(sim / "images.jsonl", camp)
    capsys.readouterr()
    assert main(["campaign", "status", str(camp)]) == 0
    out = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [(r["task"], r["status"]) for r in out] == [(t, "Completed") for t in rd.STAGE_ONE]


@pytest.mark.parametrize("layout", ["3.x", "2.x"])
def test_fetch_next_stage_and_aggregate_end_to_end(sim, fake, tmp_path, layout):
    images, rows = rows_of(sim)
    camp = tmp_path / "c.json"
    rd.launch(sim / "images.jsonl", camp)
    for rec in json.loads(camp.read_text())["jobs"]:
        fake.results[rec["job_id"]] = to_rapidata_results(
            rows, images, rec["task"], layout, with_ids=False
        )  # the documented results format carries no annotator id
    plans = rd.next_stage(rd.Campaign.load(camp), threshold=3.0)
    state = json.loads(camp.read_text())
    assert state["stage"] == 2
    located = {r["task"]: r for r in state["jobs"] if r["stage"] == 2}
    assert located, "the simulated defects should leave some images rated poorly"
    # the poorly rated images (by the fetched stage-one scores) and only those
    from rfengine import aggregate

    scores = aggregate(sim / "images.jsonl", tmp_path / "c-stage1.jsonl").scores
    for task, crit in (("coherence_points", "coherence"), ("alignment_points", "alignment")):
        low = [im["image_id"] for k, im in enumerate(images) if scores[crit].score[k] < 3.0]
        assert located.get(task, {"image_ids": []})["image_ids"] == low
        assert [p for p in plans if p["task"] == task][0]["datapoints"] == len(low)
    for rec in state["jobs"]:
        if rec["stage"] == 2:
            keep = set(rec["image_ids"])
            sub = [r for r in rows if r["image_id"] in keep]
            fake.results[rec["job_id"]] = to_rapidata_results(
                sub, images, rec["task"], layout, with_ids=False
            )
    out = tmp_path / "responses.jsonl"
    assert main(["campaign", "fetch", str(camp), "--out", str(out)]) == 0
    first = out.read_bytes()
    assert main(["campaign", "fetch", str(camp), "--out", str(out)]) == 1  # never replaced
    assert main(["campaign", "fetch", str(camp), "--out", str(tmp_path / "again.jsonl")]) == 0
    assert (tmp_path / "again.jsonl").read_bytes() == first  # twice gives the same file
    fetched = [json.loads(x) for x in first.decode().splitlines()]
    expected = [r for r in rows if r["task"] in rd.STAGE_ONE] + [
        r for r in rows if r["task"] in located and r["image_id"] in located[r["task"]]["image_ids"]
    ]
    assert len(fetched) == len(expected)
    # the documented results carry no annotator id: each response gets a stable one
    assert sorted((r["image_id"], r["task"]) for r in fetched) == sorted(
        (r["image_id"], r["task"]) for r in expected
    )
    assert all(r["annotator_id"].startswith("anon-") for r in fetched)
    # and the engine aggregates them
    manifest = cli_aggregate(sim / "images.jsonl", [out], tmp_path / "agg")
    assert manifest["counts"]["rows_used"] == len(fetched)


def test_missing_extra_says_how_to_install(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_rapidata(name, *a, **k):
        if name == "rapidata" or name.startswith("rapidata."):
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_rapidata)
    with pytest.raises(InputError, match=r"pip install 'rfengine\[rapidata\]'"):
        rd.require_rapidata()


def test_config_overrides_and_rejects_unknown_keys(tmp_path):
    p = tmp_path / "cfg.json"
    p.write_text(json.dumps({"threshold": 2.5, "jobs": {"style": {"responses_per_datapoint": 30}}}))
    cfg = rd.load_config(p)
    assert cfg["threshold"] == 2.5 and cfg["jobs"]["style"]["responses_per_datapoint"] == 30
    assert cfg["jobs"]["coherence"]["responses_per_datapoint"] == 20
    p.write_text(json.dumps({"jobs": {"style": {"colour": "red"}}}))
    with pytest.raises(InputError, match="unknown fields"):
        rd.load_config(p)


def test_top_up_asks_just_the_planned_images_per_number_needed(sim, fake, tmp_path, capsys):
    """plan-more on a fetched round, then top-up: a job per task and number still needed,
    each with that responses_per_datapoint on just those images, the task's settings and
    validation set, recorded with its round; a repeat creates nothing; fetch returns every
    round; one aggregate over them equals one of all the responses."""
    images, rows = rows_of(sim)
    camp = tmp_path / "c.json"
    rd.launch(sim / "images.jsonl", camp)
    for rec in json.loads(camp.read_text())["jobs"]:
        fake.results[rec["job_id"]] = to_rapidata_results(rows, images, rec["task"])
    one = tmp_path / "round1.jsonl"
    assert main(["campaign", "fetch", str(camp), "--out", str(one)]) == 0
    cli_aggregate(sim / "images.jsonl", [one], tmp_path / "agg1")
    plan = tmp_path / "plan.parquet"
    args = ["--max-per-image", "9", "--out", str(plan), "--campaign", str(camp)]
    assert main(["plan-more", str(tmp_path / "agg1"), "--ci-half-width", "0.4", *args]) == 0
    capsys.readouterr()
    from rfengine.adaptive.plan import read_plan

    table = read_plan(plan)[0].to_pylist()
    asked = {(r["task"], r["image_id"]): r["more"] for r in table if r["more"] > 0}
    assert asked, "a 10-image campaign at 0.4 should leave some images short"
    n_before = len(fake.definitions)
    assert main(["campaign", "top-up", str(plan), "--dry-run"]) == 0
    assert len(fake.definitions) == n_before  # a dry run creates nothing
    groups = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert main(["campaign", "top-up", str(plan)]) == 0  # the campaign: from the plan
    made = fake.definitions[n_before:]
    assert len(made) == len(groups)
    state = json.loads(camp.read_text())
    new = [j for j in state["jobs"] if j.get("round") == 1]
    assert [(j["task"], j["more"], j["image_ids"]) for j in new] == [
        (g["task"], g["more"], g["image_ids"]) for g in groups
    ]
    for g, d in zip(groups, made, strict=True):
        assert d["responses_per_datapoint"] == g["more"]
        assert len(d["datapoints"]) == len(g["image_ids"])
        assert all(asked[(g["task"], im)] == g["more"] for im in g["image_ids"])
        launched = fake.definitions[list(rd.STAGE_ONE).index(g["task"])]
        assert d["name"] == launched["name"]
        assert [type(s).__name__ for s in d["settings"]] == [
            type(s).__name__ for s in launched["settings"]
        ]
    assert sum(len(g["image_ids"]) for g in groups) == len(asked)
    assert all("job_id" in j for j in new) and state["top_ups"][0]["round"] == 1
    assert main(["campaign", "top-up", str(plan)]) == 0  # a repeat: nothing twice
    assert len(fake.definitions) == n_before + len(groups)
    # the round's answers: new annotators (an earlier one's repeat is dropped at fetch)
    extra = []
    for g, rec in zip(groups, new, strict=True):
        got = []
        for im in g["image_ids"]:
            for k in range(g["more"]):
                base = next(r for r in rows if r["image_id"] == im and r["task"] == g["task"])
                got.append({**base, "annotator_id": f"late-{k}"})
        got.append(next(r for r in rows if r["image_id"] == g["image_ids"][0]
                        and r["task"] == g["task"]))  # fmt: skip
        fake.results[rec["job_id"]] = to_rapidata_results(got, images, g["task"])
        extra += got[:-1]
    both = tmp_path / "both.jsonl"
    assert main(["campaign", "fetch", str(camp), "--out", str(both)]) == 0
    first = one.read_text().splitlines()
    fetched = both.read_text().splitlines()
    assert fetched[: len(first)] == first and len(fetched) == len(first) + len(extra)
    # one aggregate over every round equals one over all the responses, split as they came
    later = tmp_path / "later.jsonl"
    later.write_text("".join(x + "\n" for x in fetched[len(first) :]))
    merged = cli_aggregate(sim / "images.jsonl", [both], tmp_path / "agg2")
    split = cli_aggregate(sim / "images.jsonl", [later, one], tmp_path / "agg3")
    assert merged["counts"]["rows_used"] == split["counts"]["rows_used"] == len(fetched)
    from rfengine.store.load import load_dataset

    a, b = load_dataset(tmp_path / "agg2"), load_dataset(tmp_path / "agg3")
    for c in ("style_score", "coherence_score", "alignment_score", "word_scores"):
        assert a[c] == b[c]
    cols = ["image_id", "style_count"]
    n0 = {
        r["image_id"]: r["style_count"]
        for r in load_dataset(tmp_path / "agg1").select_columns(cols)
    }
    n = {r["image_id"]: r["style_count"] for r in a.select_columns(cols)}
    for (task, im), m in asked.items():
        if task == "style":
            assert n[im] == n0[im] + m  # the first round's and this round's
