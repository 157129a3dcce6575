"""Hostile responses: each is one rejected row naming file, line and field, under both
policies, whatever the rows around it; never a traceback."""

import json

import pytest
from fixtures import write_jsonl

from rfengine import InputError, read_images, read_responses

GOOD = {"image_id": "a", "annotator_id": "u1", "task": "style", "weight": 0.5, "rating": 4}
WORDS = {"image_id": "a", "annotator_id": "u1", "task": "words"}
POINTS = {"image_id": "a", "annotator_id": "u1", "task": "coherence_points"}


@pytest.fixture
def images(tmp_path):
    rows = [{"image_id": "a", "prompt": "a red cube", "width": 64, "height": 48}]
    return read_images(write_jsonl(tmp_path / "images.jsonl", rows))


def line(rec) -> bytes:
    return (rec if isinstance(rec, bytes) else json.dumps(rec).encode()) + b"\n"


# (the bad line, its field, words of the reason)
HOSTILE = [
    (line({**WORDS, "selected": [2**70]}), "selected", "word index out of range"),
    (line({**WORDS, "selected": [2**64, 1]}), "selected", "word index out of range"),
    (line({**WORDS, "selected": [0, 3]}), "selected", "[No_Mistake] (3) selected together"),
    (line({**GOOD, "rating": 2**80}), "rating", "integer 1-5"),
    (
        b'{"image_id": "a", "annotator_id": "u1", "task": "style", "rating": 1' + b"0" * 400 + b"}",
        "rating",
        "integer 1-5",  # 1e400 reads as inf
    ),
    (line({**POINTS, "points": [[10**400 // 10**390, 0.5]]}), "points", "outside [0, 1]"),
    (
        b'{"image_id": "a", "annotator_id": "u1", "task": "coherence_points", "points": '
        + b"[" * 100_000
        + b"]" * 100_000
        + b"}",
        "",
        "nested too deeply",
    ),
    (line({**GOOD, "weight": 1.7e308}), "weight", "in [0, 1e+06]"),
    (line({**GOOD, "weight": 2e6}), "weight", "in [0, 1e+06]"),
    (
        b'{"image_id": "a", "annotator_id": "u1", "task": "style", "rating": 3, '
        b'"weight": Infinity}',
        "weight",
        "in [0, 1e+06], got inf",
    ),
    (line({**GOOD, "annotator_id": ""}), "annotator_id", "missing"),
    (line({**GOOD, "image_id": ""}), "image_id", "missing"),
    (
        b'{"image_id": "a", "annotator_id": "u\xff", "task": "style", "rating": 3}',
        "",
        "invalid UTF-8",
    ),
    (line({**GOOD, "rating": {"deep": [1, 2]}}), "rating", "expected a number"),
    (line({**GOOD, "annotator_id": ["u1"]}), "annotator_id", "expected a string"),
    (line([1, 2, 3]), "", "expected a JSON object"),
    (b"null", "", "expected a JSON object"),  # pyarrow 26 reads it as an empty row, or crashes
    # a key given twice: json.loads and pyarrow would keep one value without a word
    (
        b'{"image_id": "a", "annotator_id": "u1", "task": "style", "rating": 5, "rating": 1}',
        "rating",
        "given twice",
    ),
    (
        b'{"image_id": "a", "annotator_id": "u1", "annotator_id": "u2", "task": "style", '
        b'"rating": 5}',
        "annotator_id",
        "given twice",
    ),
    (
        b'{"image_id": "a", "annotator_id": "u1", "task": "style", "rating": 5, "rating": null}',
        "rating",
        "given twice",
    ),
    # a lone surrogate (JSON's escape of half a UTF-16 pair): not Unicode, cannot be written
    (
        b'{"image_id": "a", "annotator_id": "u\\ud800", "task": "style", "rating": 3}',
        "annotator_id",
        "invalid Unicode",
    ),
    (
        b'{"image_id": "a\\udfff", "annotator_id": "u1", "task": "style", "rating": 3}',
        "image_id",
        "invalid Unicode",
    ),
    (line({**GOOD, "weight": 1e-300}), "weight", "0 or at least 1e-12"),
    (line({**GOOD, "weight": 5e-324}), "weight", "0 or at least 1e-12"),
]


@pytest.mark.parametrize("neighbour", [None, b"{not json\n"], ids=["alone", "beside-bad"])
@pytest.mark.parametrize(("bad", "field", "why"), HOSTILE, ids=[h[2] for h in HOSTILE])
def test_one_rejected_row_whatever_its_block(tmp_path, images, bad, field, why, neighbour):
    good = line({**GOOD, "annotator_id": "u9"})
    path = tmp_path / "r.jsonl"
    path.write_bytes(good + (neighbour or b"") + (bad if bad.endswith(b"\n") else bad + b"\n"))
    bad_line = 3 if neighbour else 2
    resp, rejected, stats = read_responses([path], images, on_error="skip")
    mine = [r for r in rejected if r.where == f"line {bad_line}"]
    assert len(mine) == 1, rejected
    assert mine[0].field == field and why in mine[0].reason
    assert mine[0].file == str(path)
    assert len(resp) == 1  # the good row
    assert stats.read == stats.used + stats.rejected == (3 if neighbour else 2)
    with pytest.raises(InputError, match=f"line {2 if neighbour else bad_line}"):
        read_responses([path], images)


def test_ids_are_compared_as_given(tmp_path, images):
    # two ids that differ only in bytes a lossy decoding would both turn into U+FFFD are
    # both rejected (not one kept and one a false duplicate)
    rows = [
        b'{"image_id": "a", "annotator_id": "u\xff", "task": "style", "rating": 3}',
        b'{"image_id": "a", "annotator_id": "u\xfe", "task": "style", "rating": 3}',
        line({**GOOD, "annotator_id": "u\u00ff"}).rstrip(),
    ]
    path = tmp_path / "r.jsonl"
    path.write_bytes(b"\n".join(rows) + b"\n")
    resp, rejected, _ = read_responses([path], images, on_error="skip")
    assert [r.where for r in rejected] == ["line 1", "line 2"]
    assert all("invalid UTF-8" in r.reason for r in rejected)
    assert len(resp) == 1


CSV_HEAD = "image_id,annotator_id,task,rating\n"


def test_csv_bom_is_accepted(tmp_path, images):
    path = tmp_path / "r.csv"
    path.write_text("\ufeff" + CSV_HEAD + "a,u1,style,3\n", encoding="utf-8")
    resp, rejected, _ = read_responses([path], images)
    assert len(resp) == 1 and not rejected


def test_csv_duplicate_header_is_refused(tmp_path, images):
    path = tmp_path / "r.csv"
    path.write_text("image_id,annotator_id,task,rating,rating\na,u1,style,3,5\n")
    with pytest.raises(InputError, match=r"line 1: column\(s\) named more than once: rating"):
        read_responses([path], images)


def test_csv_huge_cell_and_bad_bytes_are_rows_of_their_own(tmp_path, images):
    path = tmp_path / "r.csv"
    big = "u" * 200_000  # over the csv module's default 128 KiB cell limit
    path.write_bytes(
        (CSV_HEAD + f"a,{big},style,3\n").encode() + b"a,u\xff,style,3\n" + b"a,u2,style,4\n"
    )
    resp, rejected, stats = read_responses([path], images, on_error="skip")
    assert len(resp) == 2  # the long id is a valid id
    assert [(r.where, r.reason) for r in rejected] == [
        ("line 3", "field 'annotator_id': invalid UTF-8")
    ]
    assert stats.read == 3


def test_a_repeated_key_is_found_in_a_block_pyarrow_parses(tmp_path, images):
    """Many clean lines around it: the block's fast path must notice the repeat too."""
    rows = [line({**GOOD, "annotator_id": f"u{k}"}) for k in range(500)]
    rows[250] = (
        b'{"image_id": "a", "annotator_id": "x", "task": "style", "rating": 5, "rating": 1}\n'
    )
    path = tmp_path / "r.jsonl"
    path.write_bytes(b"".join(rows))
    resp, rejected, _ = read_responses([path], images, on_error="skip")
    got = [(r.where, r.field, r.reason) for r in rejected]
    assert got == [("line 251", "rating", "given twice")]
    assert len(resp) == 499


def test_a_field_name_inside_a_value_is_no_repeat(tmp_path, images):
    rows = [line({**GOOD, "annotator_id": '"rating"'}), line({**GOOD, "annotator_id": "u2"})]
    path = tmp_path / "r.jsonl"
    path.write_bytes(b"".join(rows))
    resp, rejected, _ = read_responses([path], images, on_error="skip")
    assert rejected == [] and len(resp) == 2


def test_a_parquet_value_out_of_range_is_one_row(tmp_path, images):
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = 1000
    table = pa.table(
        {
            "image_id": ["a"] * n,
            "annotator_id": [f"u{k}" for k in range(n)],
            "task": ["words"] * n,
            "selected": pa.array(
                [[1]] * 600 + [[2**64 - 1]] + [[2]] * (n - 601), pa.list_(pa.uint64())
            ),
        }
    )
    path = tmp_path / "r.parquet"
    pq.write_table(table, path, row_group_size=300)
    resp, rejected, _ = read_responses([path], images, on_error="skip")
    assert [(r.where, r.field) for r in rejected] == [("row group 2, row 0", "selected")]
    assert "out of range" in rejected[0].reason and str(2**64 - 1) in rejected[0].reason
    assert len(resp) == n - 1


def test_rejections_are_json_whatever_the_row_held(tmp_path, images):
    from rfengine import aggregate_to_disk

    path = tmp_path / "r.jsonl"
    path.write_bytes(
        line({**GOOD, "annotator_id": "u0"})
        + b'{"image_id": "a", "annotator_id": "u\\ud800", "task": "style", "rating": 3}\n'
        + b'{"image_id": "a", "annotator_id": "u2", "task": "style", "rating": 1e400}\n'
    )
    out = tmp_path / "out"
    aggregate_to_disk(images, [path], out, on_error="skip")
    rows = [json.loads(x) for x in (out / "rejected.jsonl").read_text().splitlines()]
    assert [r["where"] for r in rows] == ["line 2", "line 3"]
    assert rows[0]["row"]["annotator_id"] == "u\ud800"  # the same string, read back
    assert rows[1]["row"]["rating"] == "inf"


def test_a_byte_order_mark_starts_a_responses_file_as_it_may_a_table(tmp_path, images):
    path = tmp_path / "r.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + line(GOOD) + line({**GOOD, "annotator_id": "u2"}))
    resp, rejected, _ = read_responses([path], images, on_error="fail")
    assert rejected == [] and len(resp) == 2


def test_one_responses_file_given_twice_is_refused(tmp_path, images):
    from rfengine import aggregate

    path = write_jsonl(tmp_path / "r.jsonl", [GOOD])
    with pytest.raises(InputError, match="given twice as a responses file"):
        aggregate(images, [path, tmp_path / "." / "r.jsonl"])


@pytest.mark.parametrize("kind", ["folder", "fifo"])
def test_an_image_path_that_is_no_file_says_what_it_is(tmp_path, kind):
    import os

    target = tmp_path / "img.png"
    if kind == "folder":
        target.mkdir()
    else:
        os.mkfifo(target)
    rows = [{"image_id": "a", "prompt": "p", "path": "img.png"}]
    want = "a folder, not a file" if kind == "folder" else "not a regular file"
    with pytest.raises(InputError, match=want):
        read_images(write_jsonl(tmp_path / "images.jsonl", rows))
