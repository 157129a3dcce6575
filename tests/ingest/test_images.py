import pytest
from fixtures import write_jsonl
from PIL import Image

from rfengine import InputError, read_images


def test_sizes_from_image_header(tmp_path):
    (tmp_path / "img").mkdir()
    Image.new("RGB", (37, 21)).save(tmp_path / "img" / "x.png")
    imgs = read_images(
        write_jsonl(
            tmp_path / "images.jsonl", [{"image_id": "x", "prompt": "p q", "path": "img/x.png"}]
        )
    )
    assert (imgs.width[0], imgs.height[0]) == (37, 21)
    assert imgs.paths[0] == (tmp_path / "img" / "x.png").resolve()
    assert imgs.tokens[0] == ["p", "q"] and imgs.n_tokens.tolist() == [2]


@pytest.mark.parametrize(
    "rows,msg",
    [
        (
            [{"image_id": "x", "prompt": "p", "width": 4, "height": 4}] * 2,
            "line 2: field 'image_id': duplicate",
        ),
        (
            [{"image_id": "x", "prompt": "p", "width": 0, "height": 4}],
            "line 1: field 'width': expected a positive",
        ),
        ([{"image_id": "x", "prompt": "p", "height": 4}], "field 'width': missing, and no path"),
        ([{"image_id": "x", "width": 4, "height": 4}], "field 'prompt': missing"),
        ([{"prompt": "p", "width": 4, "height": 4}], "field 'image_id': missing"),
        ([{"image_id": "x", "prompt": "p", "path": "nope.png"}], "field 'path': no such file"),
        (
            [{"image_id": "x", "prompt": "p", "width": 4, "height": 4, "path": "nope.png"}],
            "line 1: field 'path': no such file",
        ),
    ],
)
def test_bad_images_tables(tmp_path, rows, msg):
    with pytest.raises(InputError, match=msg):
        read_images(write_jsonl(tmp_path / "images.jsonl", rows))


def test_csv_and_parquet_images_tables(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "i.csv").write_text('image_id,prompt,width,height\nx,"a, b",10,20\n')
    pq.write_table(
        pa.table({"image_id": ["x"], "prompt": ["a, b"], "width": [10], "height": [20]}),
        tmp_path / "i.parquet",
    )
    for name in ("i.csv", "i.parquet"):
        imgs = read_images(tmp_path / name)
        assert (
            imgs.ids == ["x"]
            and imgs.prompts == ["a, b"]
            and imgs.width[0] == 10
            and imgs.height[0] == 20
        )
