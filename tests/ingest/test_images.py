from pathlib import Path

import numpy as np
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
            "line 1: field 'width': expected an integer in 1..16384",
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


# ---------------------------------------------------------------- hostile tables and files


def _table(tmp_path, **row):
    return write_jsonl(tmp_path / "images.jsonl", [{"image_id": "x", "prompt": "p", **row}])


@pytest.fixture
def outside(tmp_path):
    """A readable image and a secret outside the table's folder ``tmp_path / 'in'``."""
    (tmp_path / "in").mkdir()
    Image.new("RGB", (8, 6)).save(tmp_path / "pic.png")
    (tmp_path / "secret.env").write_text("TOKEN=hunter2\n")
    return tmp_path / "in"


@pytest.mark.parametrize(
    "rel", ["../pic.png", "../secret.env", "/etc/passwd", "/proc/self/environ", "link.png"]
)
def test_paths_leaving_the_tables_folder_are_refused(outside, rel):
    (outside / "link.png").symlink_to(outside.parent / "pic.png")
    table = _table(outside, path=rel, width=8, height=6)
    with pytest.raises(InputError, match=r"line 1: field 'path': .* leads outside the table's"):
        read_images(table)


def test_allow_outside_paths_embeds_a_real_image_only(outside):
    imgs = read_images(_table(outside, path="../pic.png"), allow_outside_paths=True)
    assert imgs.paths[0] == (outside.parent / "pic.png").resolve()
    with pytest.raises(InputError, match=r"field 'path': .*secret.env: not a readable image"):
        read_images(_table(outside, path="../secret.env"), allow_outside_paths=True)


def test_a_link_inside_the_folder_is_fine(outside):
    (outside / "img").mkdir()
    Image.new("RGB", (8, 6)).save(outside / "img" / "a.png")
    (outside / "b.png").symlink_to(outside / "img" / "a.png")
    assert read_images(_table(outside, path="b.png")).width.tolist() == [8]


def test_a_non_image_with_sizes_given_is_refused(tmp_path):
    (tmp_path / "notes.png").write_text("not an image at all")
    with pytest.raises(InputError, match=r"field 'path': .*notes.png: not a readable image"):
        read_images(_table(tmp_path, path="notes.png", width=8, height=6))


def test_sizes_must_match_the_file(tmp_path):
    Image.new("RGB", (8, 6)).save(tmp_path / "a.png")
    with pytest.raises(InputError, match=r"field 'height': 7 differs from the image file's 6"):
        read_images(_table(tmp_path, path="a.png", width=8, height=7))


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    Image.new("L", (200, 200)).save(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)  # a bomb at this scale
    with pytest.raises(InputError, match=r"field 'path': .*decompression bomb"):
        read_images(_table(tmp_path, path="bomb.png"))


def test_truncated_image_is_refused(tmp_path):
    Image.new("RGB", (64, 64), (10, 200, 30)).save(tmp_path / "a.png")
    data = (tmp_path / "a.png").read_bytes()
    (tmp_path / "a.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"field 'path': .*not a readable image"):
        read_images(_table(tmp_path, path="a.png", width=64, height=64))


def _lying_png(path: Path, claimed_rows: int, interlace: int = 0) -> None:
    """A PNG of 4 real rows whose header (CRC fixed) claims ``claimed_rows``."""
    import io
    import zlib

    buf = io.BytesIO()
    Image.new("RGB", (32, 4), (10, 200, 30)).save(buf, "PNG", interlace=interlace)
    b = bytearray(buf.getvalue())
    i = b.index(b"IHDR")
    b[i + 8 : i + 12] = claimed_rows.to_bytes(4, "big")
    b[i + 17 : i + 21] = (zlib.crc32(bytes(b[i : i + 17])) & 0xFFFFFFFF).to_bytes(4, "big")
    path.write_bytes(bytes(b))


@pytest.mark.parametrize("interlace", [0, 1])
def test_a_png_header_that_claims_more_rows_than_its_data_is_refused(tmp_path, interlace):
    _lying_png(tmp_path / "a.png", 32, interlace)
    with Image.open(tmp_path / "a.png") as im:  # what Pillow alone lets through
        im.verify()
    with pytest.raises(InputError, match=r"field 'path': .*truncated: its pixel data inflates"):
        read_images(_table(tmp_path, path="a.png"))
    _lying_png(tmp_path / "b.png", 4, interlace)  # the same bytes, an honest header
    assert read_images(_table(tmp_path, path="b.png")).height.tolist() == [4]


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGB", "RGBA", "I;16"])
@pytest.mark.parametrize("interlace", [0, 1])
def test_every_png_layout_passes_the_data_check(tmp_path, mode, interlace):
    rng = np.random.default_rng(0)
    img = Image.fromarray((rng.random((37, 53, 3)) * 255).astype(np.uint8)).convert(mode)
    img.save(tmp_path / "a.png", interlace=interlace)
    assert read_images(_table(tmp_path, path="a.png")).width.tolist() == [53]


@pytest.mark.parametrize(
    ("value", "fld"),
    [(2**70, "width"), (100_000, "width"), (-3, "height"), ("70000", "width"), (True, "height")],
)
def test_sizes_are_bounded(tmp_path, value, fld):
    row = {"width": 8, "height": 6, fld: value}
    with pytest.raises(InputError, match=rf"field '{fld}': expected an integer in 1..16384"):
        read_images(_table(tmp_path, **row))


def test_invalid_utf8_names_the_line(tmp_path):
    p = tmp_path / "images.jsonl"
    p.write_bytes(
        b'{"image_id": "a", "prompt": "p", "width": 4, "height": 4}\n{"image_id": "b\xff"}\n'
    )
    with pytest.raises(InputError, match=r"images.jsonl: line 2: invalid UTF-8"):
        read_images(p)
    c = tmp_path / "images.csv"
    c.write_bytes(b"image_id,prompt,width,height\na,p,4,4\nb\xff,p,4,4\n")
    with pytest.raises(InputError, match=r"images.csv: line 3: field 'image_id': invalid UTF-8"):
        read_images(c)


def test_csv_header_bom_and_duplicates(tmp_path):
    c = tmp_path / "images.csv"
    c.write_text("\ufeffimage_id,prompt,width,height\na,p,4,4\n", encoding="utf-8")
    assert read_images(c).ids == ["a"]
    c.write_text("image_id,prompt,width,width,height\na,p,4,5,4\n")
    with pytest.raises(InputError, match=r"line 1: column\(s\) named more than once: width"):
        read_images(c)
