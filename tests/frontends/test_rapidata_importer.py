import json

import pytest
from fixtures import cli_aggregate, make_rows, to_rapidata_results, write_jsonl
from PIL import Image

from rfengine import InputError, read_images
from rfengine.cli import main
from rfengine.frontends.rapidata.importer import import_rapidata
from rfengine.schema import TASKS


@pytest.fixture
def campaign(tmp_path):
    images, rows = make_rows(8, seed=12)
    for im in images:
        im["path"] = f"imgs/{im['image_id']}.jpg"
    ip = write_jsonl(tmp_path / "images.jsonl", images)
    # the importer matches names only: the image files need not exist
    return tmp_path, images, rows, read_images(ip, require_files=False)


def _key(r):
    return (r["image_id"], r["annotator_id"], r["task"])


def _same(a: dict, b: dict):
    assert a["weight"] == pytest.approx(b["weight"], rel=1e-12)
    for f in ("rating", "selected"):
        assert a.get(f) == b.get(f)
    if "points" in b:
        assert len(a["points"]) == len(b["points"])
        for p, q in zip(a["points"], b["points"], strict=True):
            assert p == pytest.approx(q, abs=1e-12)


@pytest.mark.parametrize("layout", ["3.x", "2.x"])
def test_round_trip_every_task(campaign, layout):
    root, images, rows, imgs = campaign
    jobs = []
    for task in TASKS:
        path = root / f"{task}-{layout}.json"
        path.write_text(json.dumps(to_rapidata_results(rows, images, task, layout)))
        jobs.append((task, path))
    summary = import_rapidata(imgs, jobs, root / "responses.jsonl")
    got = {_key(r): r for r in map(json.loads, (root / "responses.jsonl").read_text().splitlines())}
    want = {_key(r): r for r in rows}
    assert set(got) == set(want) and summary["rows"] == len(rows)
    for k, r in want.items():
        _same(got[k], r)
    assert all(j["layout"] == layout and j["no_weight"] == 0 for j in summary["jobs"])


def test_coherence_scale_flag(campaign):
    root, images, rows, imgs = campaign
    path = root / "c.json"
    path.write_text(json.dumps(to_rapidata_results(rows, images, "coherence")))
    import_rapidata(imgs, [("coherence", path)], root / "sev.jsonl")
    import_rapidata(imgs, [("coherence", path)], root / "coh.jsonl", coherence_scale="coherence")
    sev = [json.loads(x)["rating"] for x in (root / "sev.jsonl").read_text().splitlines()]
    coh = [json.loads(x)["rating"] for x in (root / "coh.jsonl").read_text().splitlines()]
    assert [6 - r for r in sev] == coh


def test_parquet_output_and_aggregate(campaign, tmp_path):
    root, images, rows, imgs = campaign
    args = [
        "import-rapidata",
        "--images",
        str(root / "images.jsonl"),
        "--out",
        str(root / "r.parquet"),
    ]
    for task in TASKS:
        path = root / f"{task}.json"
        path.write_text(json.dumps(to_rapidata_results(rows, images, task)))
        args.append(f"{task}={path}")
    assert main(args) == 0
    (root / "imgs").mkdir()
    for im in images:  # aggregate embeds the images in the dataset
        Image.new("RGB", (im["width"], im["height"])).save(root / im["path"])
    m = cli_aggregate(root / "images.jsonl", [root / "r.parquet"], tmp_path / "agg")
    assert m["counts"]["rows_used"] == len(rows)


def test_unmatched_names_are_listed(campaign):
    root, images, rows, imgs = campaign
    doc = to_rapidata_results(rows, images, "style")
    for k, item in enumerate(doc["results"]):
        item["originalFileName"] = f"stranger-{k}.png"
    path = root / "s.json"
    path.write_text(json.dumps(doc))
    n = len(doc["results"])
    with pytest.raises(InputError, match=rf"{n} result\(s\) match no image .*'stranger-0.png'"):
        import_rapidata(imgs, [("style", path)], root / "o.jsonl")
    assert not (root / "o.jsonl").exists()


def test_wrong_word_names_both(campaign):
    root, images, rows, imgs = campaign
    doc = to_rapidata_results(rows, images, "words")
    detail = next(d for it in doc["results"] for d in it["detailedResults"] if d["selectedWords"])
    detail["selectedWords"][0]["word"] = "zebra"
    path = root / "w.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(
        InputError, match=r"field 'selectedWords': word 'zebra' at index \d+, but the prompt has '"
    ):
        import_rapidata(imgs, [("words", path)], root / "o.jsonl")


@pytest.mark.parametrize(
    "mutate,match",
    [
        (
            lambda d: d.update(selectedCategory="seven"),
            "field 'selectedCategory': expected a label",
        ),
        (lambda d: d.update(location=[{"x": 120, "y": 5}]), "field 'location': expected"),
        (
            lambda d: d["userDetails"].update(userScores={"global": 10**400}),
            r"field 'userDetails': trust score 1000.* is not 0 or in \[1e-12, 1e\+06\]",
        ),
        (
            lambda d: d["userDetails"].update(userScores={"global": -0.5}),
            r"field 'userDetails': trust score -0.5 is not 0",
        ),
        (
            lambda d: d["userDetails"].update(userScores={"global": 1e-300}),
            r"field 'userDetails': trust score 1e-300 is not 0",
        ),
    ],
)
def test_bad_details(campaign, mutate, match):
    root, images, rows, imgs = campaign
    task = "coherence_points" if "location" in match else "style"
    doc = to_rapidata_results(rows, images, task)
    mutate(doc["results"][0]["detailedResults"][0])
    path = root / "x.json"
    path.write_text(json.dumps(doc))
    name = doc["results"][0]["originalFileName"]
    at = rf"x.json: results\[0\] \('{name}'\).detailedResults\[0\]"
    with pytest.raises(InputError, match=rf"{at}: {match}"):
        import_rapidata(imgs, [(task, path)], root / "o.jsonl")


def test_missing_annotator_ids_get_stable_ids(campaign):
    root, images, rows, imgs = campaign
    path = root / "s.json"
    path.write_text(json.dumps(to_rapidata_results(rows, images, "style", with_ids=False)))
    s1 = import_rapidata(imgs, [("style", path)], root / "a.jsonl")
    import_rapidata(imgs, [("style", path)], root / "b.jsonl")
    assert (root / "a.jsonl").read_bytes() == (root / "b.jsonl").read_bytes()
    ids = [json.loads(x)["annotator_id"] for x in (root / "a.jsonl").read_text().splitlines()]
    assert len(set(ids)) == len(ids) and all(i.startswith("anon-") for i in ids)
    assert s1["jobs"][0]["no_annotator_id"] == len(ids)


def test_not_a_results_file(campaign):
    root, images, rows, imgs = campaign
    path = root / "n.json"
    path.write_text(json.dumps({"hello": 1}))
    with pytest.raises(InputError, match="not a Rapidata results file"):
        import_rapidata(imgs, [("style", path)], root / "o.jsonl")


# ------------------------------------------------------------- never guess, never crash


def _one(campaign, task, detail, name=None):
    root, images, rows, imgs = campaign
    doc = {
        "results": [
            {
                "originalFileName": name or f"{images[0]['image_id']}.jpg",
                "detailedResults": [detail],
            }
        ]
    }
    path = root / f"{task}.json"
    path.write_text(json.dumps(doc))
    return imgs, path


def test_locate_reads_location_or_coordinates_alike(campaign):
    root = campaign[0]
    got = {}
    for key in ("location", "coordinates"):
        imgs, path = _one(campaign, "coherence_points", {key: [{"x": 25, "y": 50}]})
        import_rapidata(imgs, [("coherence_points", path)], root / f"{key}.jsonl")
        got[key] = json.loads((root / f"{key}.jsonl").read_text())["points"]
    assert got["location"] == got["coordinates"] == [[0.25, 0.5]]


def test_missing_result_keys_are_errors_not_nothing(campaign):
    root, images = campaign[0], campaign[1]
    name = f"{images[0]['image_id']}.jpg"
    for task, key in (("coherence_points", "location"), ("words", "selectedWords")):
        imgs, path = _one(campaign, task, {"userDetails": {}})
        with pytest.raises(InputError, match=rf"results\[0\] \('{name}'\).*field '{key}': miss"):
            import_rapidata(imgs, [(task, path)], root / "x.jsonl")
    # an empty list is a real "nothing"
    imgs, path = _one(campaign, "words", {"selectedWords": []})
    import_rapidata(imgs, [("words", path)], root / "w.jsonl")
    assert json.loads((root / "w.jsonl").read_text())["selected"] == []


def test_point_units(campaign):
    root = campaign[0]
    imgs, path = _one(campaign, "alignment_points", {"coordinates": [{"x": 0.25, "y": 0.5}]})
    with pytest.raises(InputError, match="pass --point-units ratio"):
        import_rapidata(imgs, [("alignment_points", path)], root / "p.jsonl")
    import_rapidata(imgs, [("alignment_points", path)], root / "r.jsonl", point_units="ratio")
    assert json.loads((root / "r.jsonl").read_text())["points"] == [[0.25, 0.5]]
    imgs, path = _one(campaign, "alignment_points", {"coordinates": [{"x": 25, "y": 50}]})
    with pytest.raises(InputError, match="are these percent"):
        import_rapidata(imgs, [("alignment_points", path)], root / "q.jsonl", point_units="ratio")


HOSTILE_FILES = [
    b"\xff\xfe",
    b"[" * 100_000 + b"]" * 100_000,
    b'{"results": [' + b"1" * 5000 + b"]}",
    b"null",
    b'{"results": 5}',
    b'{"results": [5]}',
    b'{"results": [{"originalFileName": 7}]}',
    b'{"results": [{"originalFileName": "NAME"}]}',
    b'{"results": [{"originalFileName": "NAME", "detailedResults": {"a": 1}}]}',
    b'{"results": [{"originalFileName": "NAME", "detailedResults": "xx"}]}',
    b'{"results": [{"originalFileName": "NAME", "detailedResults": [7]}]}',
    b'{"results": [{"originalFileName": "NAME", "detailedResults": [{"userDetails": [1]}]}]}',
    b'{"results": [{"originalFileName": "NAME", "detailedResults": '
    b'[{"userDetails": {"userScores": [1]}}]}]}',
    b'{"results": [{"originalFileName": "NAME", "detailedResults": '
    b'[{"userDetails": {"userScores": {"global": "high"}}}]}]}',
    b'{"results": [{"originalFileName": "NAME", "detailedResults": '
    b'[{"userDetails": {"userScores": {"global": 1' + b"0" * 400 + b"}}}]}]}",
    b'{"results": [{"originalFileName": "NAME", "detailedResults": [{"location": 5}]}]}',
    b'{"results": [{"originalFileName": "NAME", "detailedResults": [{"location": [{"x": true, '
    b'"y": 1}]}]}]}',
    b'{"results": [{"originalFileName": "NAME", "detailedResults": [{"location": [{"x": 1e999, '
    b'"y": 1}]}]}]}',
    b'{"results": [{"originalFileName": "NAME", "detailedResults": [{"selectedWords": '
    b'[{"wordIndex": true, "word": "a"}]}]}]}',
    b'{"results": [{"originalFileName": "NAME", "detailedResults": [{"selectedWords": "a"}]}]}',
    b'{"results": [{"originalFileName": "NAME", "detailedResults": [{"selectedCategory": 3}]}]}',
    b'{"results": {"data": {"x": 1}}}',
]


@pytest.mark.parametrize("task", ["coherence_points", "words", "style"])
@pytest.mark.parametrize("body", HOSTILE_FILES, ids=range(len(HOSTILE_FILES)))
def test_hostile_results_files_are_one_line(campaign, capsys, body, task):
    root, images, _, _ = campaign
    path = root / "hostile.json"
    path.write_bytes(body.replace(b"NAME", f"{images[0]['image_id']}.jpg".encode()))
    args = ["import-rapidata", "--images", str(root / "images.jsonl"), "--out"]
    rc = main([*args, str(root / "o.jsonl"), f"{task}={path}"])
    err = capsys.readouterr().err
    assert rc in (0, 1) and "Traceback" not in err and "internal error" not in err
    if rc == 1:
        assert err.strip().count("\n") == 0 and str(path) in err
