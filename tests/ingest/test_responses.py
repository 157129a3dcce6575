import json
import re

import numpy as np
import pytest
from fixtures import make_rows, write_csv, write_jsonl, write_parquet

from rfengine import InputError, read_images, read_responses

GOOD = {"image_id": "a", "annotator_id": "u1", "task": "style", "weight": 0.5, "rating": 4}


@pytest.fixture
def images(tmp_path):
    rows = [
        {"image_id": "a", "prompt": "a red cube", "width": 64, "height": 48},
        {"image_id": "b", "prompt": "two blue dogs", "width": 32, "height": 32},
    ]
    return read_images(write_jsonl(tmp_path / "images.jsonl", rows))


BAD_ROWS = [
    ({**GOOD, "task": "beauty"}, "task", "unknown task 'beauty'"),
    ({**GOOD, "rating": 7}, "rating", "integer 1-5, got 7"),
    ({**GOOD, "rating": 2.5}, "rating", "integer 1-5, got 2.5"),
    ({**GOOD, "rating": None}, "rating", "missing"),
    ({**GOOD, "weight": -1}, "weight", "in [0, 1e+06], got -1"),
    ({**GOOD, "weight": float("nan")}, "weight", "got nan"),
    ({**GOOD, "image_id": "zzz"}, "image_id", "unknown image_id 'zzz'"),
    ({**GOOD, "annotator_id": None}, "annotator_id", "missing"),
    (
        {**GOOD, "task": "coherence_points", "rating": None, "points": [[0.1, 1.2]]},
        "points",
        "outside [0, 1]",
    ),
    (
        {**GOOD, "task": "coherence_points", "rating": None, "points": [[0.1, 0.2]] * 4},
        "points",
        "at most 3 points",
    ),
    (
        {**GOOD, "task": "alignment_points", "rating": None, "points": [[0.1]]},
        "points",
        "[x, y] pair",
    ),
    ({**GOOD, "task": "alignment_points", "rating": None}, "points", "missing"),
    ({**GOOD, "task": "words", "rating": None, "selected": [4]}, "selected", "out of range 0..3"),
    ({**GOOD, "task": "words", "rating": None, "selected": [-1]}, "selected", "out of range"),
    ({**GOOD, "task": "words", "rating": None, "selected": [1, 1]}, "selected", "selected twice"),
    ({**GOOD, "points": [[0.5, 0.5]]}, "points", "not used by task 'style'"),
    ({**GOOD, "annotator_id": 17}, "annotator_id", "expected a string"),
    ({**GOOD, "rating": "four"}, "rating", "expected a number"),
]


@pytest.mark.parametrize("row,field,msg", BAD_ROWS, ids=[f"{f}-{m[:20]}" for _, f, m in BAD_ROWS])
def test_bad_row_names_file_line_and_field(tmp_path, images, row, field, msg):
    path = tmp_path / "r.jsonl"
    lines = [json.dumps(GOOD), json.dumps({**GOOD, "annotator_id": "u2"}), json.dumps(row)]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError) as err:
        read_responses([path], images)
    text = str(err.value)
    assert f"{path}: line 3: field '{field}'" in text
    assert msg in text
    # skip mode: the good rows are used, the bad one reported, nothing lost
    resp, rejected, stats = read_responses([path], images, on_error="skip")
    assert len(resp) == 2 and len(rejected) == 1
    assert (stats.read, stats.used, stats.rejected) == (3, 2, 1)
    assert rejected[0].field == field and rejected[0].where == "line 3"


def test_malformed_json_line(tmp_path, images):
    path = tmp_path / "r.jsonl"
    path.write_text(
        json.dumps(GOOD) + "\n{not json\n" + json.dumps({**GOOD, "annotator_id": "x"}) + "\n"
    )
    with pytest.raises(InputError, match=r"line 2: malformed JSON"):
        read_responses([path], images)
    resp, rej, stats = read_responses([path], images, on_error="skip")
    assert len(resp) == 2 and stats.read == 3 and rej[0].where == "line 2"


def test_truncated_jsonl(tmp_path, images):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(GOOD) + "\n" + json.dumps(GOOD)[:20])
    with pytest.raises(InputError, match=r"line 2: truncated JSON"):
        read_responses([path], images)


def test_blank_lines_keep_line_numbers(tmp_path, images):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(GOOD) + "\n\n" + json.dumps({**GOOD, "rating": 9}) + "\n")
    with pytest.raises(InputError, match=r"line 3: field 'rating'"):
        read_responses([path], images)


def test_duplicate_response_names_both_places(tmp_path, images):
    a = write_jsonl(tmp_path / "a.jsonl", [GOOD])
    b = write_jsonl(tmp_path / "b.jsonl", [{**GOOD, "annotator_id": "u9"}, {**GOOD, "rating": 1}])
    with pytest.raises(InputError) as err:
        read_responses([a, b], images)
    assert f"{b}: line 2: field 'annotator_id': duplicate" in str(err.value)
    assert f"first at {a}: line 1" in str(err.value)
    resp, rej, stats = read_responses([a, b], images, on_error="skip")
    assert resp.rating.tolist() == [4.0, 4.0] and len(rej) == 1
    assert stats.files[1] == {"path": str(b), "read": 2, "used": 1, "rejected": 1}


@pytest.mark.parametrize(
    "content,ext,msg",
    [
        (b"", "jsonl", "empty file"),
        (b"PAR1garbage", "jsonl", "this is a Parquet file"),
        (b'{"a": 1}\n', "parquet", "not a Parquet file"),
        (b"image_id,task\nx,style\n", "csv", "missing column(s) annotator_id"),
        (b"x", "xlsx", "unknown table extension"),
    ],
)
def test_broken_files_get_one_line_errors(tmp_path, images, content, ext, msg):
    path = tmp_path / f"r.{ext}"
    path.write_bytes(content)
    with pytest.raises(InputError, match=re.escape(msg)) as err:
        read_responses([path], images)
    assert "\n" not in str(err.value)


def test_truncated_parquet(tmp_path, images):
    path = write_parquet(tmp_path / "r.parquet", [GOOD])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated Parquet"):
        read_responses([path], images)


def test_parquet_wrong_column_type(tmp_path, images):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "r.parquet"
    t = pa.table({"image_id": ["a"], "annotator_id": ["u"], "task": ["style"], "rating": ["four"]})
    pq.write_table(t, path)
    with pytest.raises(InputError, match="column 'rating' has type string"):
        read_responses([path], images)


def test_parquet_rows_are_located_by_row_group(tmp_path, images):
    rows = [{**GOOD, "annotator_id": f"u{k}"} for k in range(5)]
    rows[3]["rating"] = 0
    path = write_parquet(tmp_path / "r.parquet", rows, row_group_size=2)
    with pytest.raises(InputError, match=r"row group 1, row 1: field 'rating'"):
        read_responses([path], images)


def test_csv_line_numbers_and_json_cells(tmp_path, images):
    rows = [
        {**GOOD, "task": "coherence_points", "rating": None, "points": [[0.1, 0.2]]},
        {**GOOD, "task": "words", "rating": None, "selected": [0, 2]},
        {**GOOD, "rating": 6, "annotator_id": "u3"},
    ]
    path = write_csv(tmp_path / "r.csv", rows)
    with pytest.raises(InputError, match=r"line 4: field 'rating'"):
        read_responses([path], images)
    resp, _, _ = read_responses([path], images, on_error="skip")
    assert resp.points.tolist() == [[0.1, 0.2]] and resp.selected.tolist() == [0, 2]


def test_formats_give_identical_responses(tmp_path):
    image_rows, rows = make_rows(10, seed=5)
    imgs = read_images(write_jsonl(tmp_path / "images.jsonl", image_rows))
    parsed = [
        read_responses([writer(tmp_path / f"r.{ext}", rows)], imgs)[0]
        for writer, ext in ((write_jsonl, "jsonl"), (write_csv, "csv"), (write_parquet, "parquet"))
    ]
    for other in parsed[1:]:
        for name in (
            "image",
            "task",
            "weight",
            "point_offsets",
            "points",
            "selected_offsets",
            "selected",
        ):
            np.testing.assert_array_equal(
                getattr(parsed[0], name), getattr(other, name), err_msg=name
            )
        np.testing.assert_array_equal(parsed[0].rating, other.rating)


def test_default_weight_is_one(tmp_path, images):
    row = {k: v for k, v in GOOD.items() if k != "weight"}
    resp, _, _ = read_responses([write_jsonl(tmp_path / "r.jsonl", [row])], images)
    assert resp.weight.tolist() == [1.0]
