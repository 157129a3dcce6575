"""Fuzz: hostile responses in every format through the CLI.

For any input: exit 0 or 1 (never an internal error or a traceback); with
``--on-error skip``: read = used + rejected, and the rows used aggregate exactly as the
same rows given alone, clean. Bounded to a few seconds per format.
"""

import contextlib
import csv
import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from fixtures import write_jsonl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rfengine import aggregate
from rfengine.cli import main
from rfengine.ingest.columns import SCHEMA as RESPONSES_SCHEMA
from rfengine.schema import TASKS

FUZZ = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
IMAGES = [
    {"image_id": "i0", "prompt": "a red car", "width": 40, "height": 30},
    {"image_id": "i1", "prompt": "two dogs on grass", "width": 24, "height": 36},
]

ids = st.sampled_from(["i0", "i1", "zz", ""]) | st.none() | st.integers() | st.text(max_size=3)
annotators = st.sampled_from(["a", "b", "c", ""]) | st.none() | st.integers(-5, 5) | st.text()
tasks = st.sampled_from([*TASKS, "bogus"]) | st.none() | st.integers(0, 6)
numbers = (
    st.floats(allow_nan=True, allow_infinity=True)
    | st.integers(-(2**70), 2**70)
    | st.integers(0, 6)
    | st.floats(0, 1.5)
)
weights = st.none() | numbers | st.text(max_size=4) | st.booleans()
ratings = st.none() | numbers | st.text(max_size=4) | st.lists(st.integers(), max_size=2)
coords = st.floats(-0.2, 1.2) | st.integers(-(2**70), 2**70) | st.text(max_size=2) | st.none()
points = st.none() | st.lists(st.lists(coords, max_size=3), max_size=5) | st.text(max_size=4)
selected = st.none() | st.lists(st.integers(-3, 6) | st.integers(2**60, 2**70), max_size=4)
records = st.fixed_dictionaries(
    {"image_id": ids, "annotator_id": annotators, "task": tasks},
    optional={"weight": weights, "rating": ratings, "points": points, "selected": selected},
)
garbage = st.sampled_from([b"{", b"[1, 2]", b'{"image_id": "i0\xff"}', b"null", b"\xfe\xfe"])
lines = st.lists(
    st.one_of(records.map(lambda r: json.dumps(r).encode()), garbage),
    min_size=1,
    max_size=12,
)


def run_cli(root: Path, resp: Path) -> tuple[int, Path, str]:
    images = write_jsonl(root / "images.jsonl", IMAGES)
    out = root / f"out-{resp.stem}"
    err = io.StringIO()
    args = ["aggregate", "--images", str(images), "--responses", str(resp), "--out", str(out)]
    args += ["--on-error", "skip", "--heatmap-size", "8x6", "--quiet", "--device", "cpu"]
    with contextlib.redirect_stderr(err):
        rc = main(args)
    return rc, out, err.getvalue()


def check_contract(root: Path, resp: Path, clean: callable) -> None:
    rc, out, err = run_cli(root, resp)
    assert rc in (0, 1), err
    assert "Traceback" not in err and "internal error" not in err
    if rc == 1:  # a whole-file problem (e.g. no usable header): one line naming the file
        assert err.count("\n") == 1 and str(resp) in err
        return
    m = json.loads((out / "manifest.json").read_text())
    c = m["counts"]
    assert c["rows_read"] == c["rows_used"] + c["rows_rejected"]
    rejected = []
    if c["rows_rejected"]:
        rejected = [
            json.loads(x)["where"] for x in (out / "rejected.jsonl").read_text().split("\n") if x
        ]
    assert len(rejected) == c["rows_rejected"]
    kept = clean(rejected)
    if kept is None:
        return
    images = root / "images.jsonl"
    a = aggregate(images, resp, on_error="skip", heatmap_size="8x6", device="cpu")
    b = aggregate(images, kept, on_error="fail", heatmap_size="8x6", device="cpu")
    assert len(b.rejected) == 0 and b.stats.used == c["rows_used"]
    for crit in a.scores:
        np.testing.assert_array_equal(a.scores[crit].score, b.scores[crit].score)
    np.testing.assert_array_equal(a.words.values, b.words.values)
    for kind in a.heatmaps:
        for x, y in zip(a.heatmaps[kind], b.heatmaps[kind], strict=True):
            assert (x is None) == (y is None)
            if x is not None:
                np.testing.assert_array_equal(x, y)


def _line_numbers(rejected: list[str]) -> set[int]:
    return {int(w.split()[1]) for w in rejected}


@FUZZ
@given(lines)
def test_fuzz_jsonl(tmp_path_factory, rows):
    root = tmp_path_factory.mktemp("fz")
    resp = root / "r.jsonl"
    resp.write_bytes(b"\n".join(rows) + b"\n")

    def clean(rejected: list[str]) -> Path | None:
        bad = _line_numbers(rejected)
        kept = [r for n, r in enumerate(rows, 1) if n not in bad]
        if not kept:
            return None
        path = root / "clean.jsonl"
        path.write_bytes(b"\n".join(kept) + b"\n")
        return path

    check_contract(root, resp, clean)


COLS = ["image_id", "annotator_id", "task", "weight", "rating", "points", "selected"]


def _cell(v) -> str:
    if v is None:
        return ""
    return v if isinstance(v, str) else json.dumps(v)


@FUZZ
@given(st.lists(records, min_size=1, max_size=12))
def test_fuzz_csv(tmp_path_factory, recs):
    root = tmp_path_factory.mktemp("fz")
    resp = root / "r.csv"
    buf = io.StringIO(newline="")
    wr = csv.writer(buf)
    wr.writerow(COLS)
    texts = []
    for r in recs:
        line = io.StringIO(newline="")
        csv.writer(line).writerow([_cell(r.get(c)) for c in COLS])
        texts.append(line.getvalue())
    resp.write_text(buf.getvalue() + "".join(texts), newline="")

    def clean(rejected: list[str]) -> Path | None:
        # a CSV row is one line here unless a cell holds a line break: then skip the check
        if any("\n" in t[:-2] or "\r" in t[:-2] for t in texts):
            return None
        bad = _line_numbers(rejected)
        kept = [t for n, t in enumerate(texts, 2) if n not in bad]
        if not kept:
            return None
        path = root / "clean.csv"
        path.write_text(buf.getvalue() + "".join(kept), newline="")
        return path

    check_contract(root, resp, clean)


typed = st.fixed_dictionaries(
    {
        "image_id": st.sampled_from(["i0", "i1", "zz", ""]) | st.none(),
        "annotator_id": st.sampled_from(["a", "b", ""]) | st.none(),
        "task": st.sampled_from([*TASKS, "bogus"]) | st.none(),
        "weight": st.none() | st.floats(allow_nan=True, allow_infinity=True),
        "rating": st.none() | st.floats(allow_nan=True, allow_infinity=True) | st.integers(0, 6),
        "points": st.none() | st.lists(st.lists(st.floats(-0.5, 1.5), max_size=3), max_size=5),
        "selected": st.none() | st.lists(st.integers(-3, 2**62), max_size=4),
    }
)
SCHEMA = RESPONSES_SCHEMA  # the interchange format's Parquet types


@FUZZ
@given(st.lists(typed, min_size=1, max_size=12))
def test_fuzz_parquet(tmp_path_factory, recs):
    root = tmp_path_factory.mktemp("fz")
    resp = root / "r.parquet"
    pq.write_table(pa.Table.from_pylist(recs, schema=SCHEMA), resp, row_group_size=5)

    def clean(rejected: list[str]) -> Path | None:
        # "row group G, row R" -> global row (groups of 5)
        bad = {5 * int(w.split()[2].rstrip(",")) + int(w.split()[4]) for w in rejected}
        kept = [r for k, r in enumerate(recs) if k not in bad]
        if not kept:
            return None
        path = root / "clean.parquet"
        pq.write_table(pa.Table.from_pylist(kept, schema=SCHEMA), path)
        return path

    check_contract(root, resp, clean)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)
points_values = st.lists(
    st.fixed_dictionaries(
        {"x": json_values | st.floats(0, 100), "y": json_values | st.floats(0, 100)}
    ),
    max_size=4,
)
details = st.fixed_dictionaries(
    {},
    optional={
        "userDetails": st.fixed_dictionaries(
            {}, optional={"userScores": st.fixed_dictionaries({}, optional={"global": json_values})}
        )
        | json_values,
        "userId": json_values,
        "selectedCategory": st.sampled_from(["1: a", "5: b", "7: c"]) | json_values,
        "location": points_values | json_values,
        "coordinates": points_values,
        "selectedWords": st.lists(
            st.fixed_dictionaries(
                {
                    "wordIndex": st.integers(-1, 5) | json_values,
                    "word": st.sampled_from(["a", "red", "car"]) | json_values,
                }
            ),
            max_size=3,
        )
        | json_values,
    },
)
results_docs = (
    st.fixed_dictionaries(
        {
            "results": st.lists(
                st.fixed_dictionaries(
                    {
                        "originalFileName": st.sampled_from(["i0", "i1", "nope"]) | json_values,
                        "detailedResults": st.lists(details | json_values, max_size=3)
                        | json_values,
                    }
                )
                | json_values,
                max_size=3,
            )
        }
    )
    | json_values
)


@FUZZ
@given(results_docs, st.sampled_from(TASKS), st.sampled_from(["percent", "ratio"]))
def test_fuzz_rapidata_results(tmp_path_factory, doc, task, units):
    root = tmp_path_factory.mktemp("fz")
    images = write_jsonl(root / "images.jsonl", IMAGES)
    path = root / "results.json"
    path.write_text(json.dumps(doc))
    err = io.StringIO()
    args = ["import-rapidata", "--images", str(images), "--out", str(root / "r.jsonl")]
    with contextlib.redirect_stderr(err):
        rc = main([*args, "--point-units", units, f"{task}={path}"])
    assert rc in (0, 1), err.getvalue()
    assert "Traceback" not in err.getvalue() and "internal error" not in err.getvalue()
    if rc == 0:  # what the importer wrote is valid input (or one-line rejections)
        check_contract(root, root / "r.jsonl", lambda rejected: None)
