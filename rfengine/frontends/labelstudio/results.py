"""One Label Studio result item's value -> a response's field: a rating, the words a
span touches, a point, a region (brush mask or polygon). A value that cannot be read raises
``Bad`` naming its field.

Brush masks are Label Studio's own run-length format (``value.rle``: the RGBA pixels of
``original_height x original_width``, packed by thi.ng's rle-pack; a pixel is marked where
its alpha is non-zero), decoded here as ``label_studio_sdk.converter.brush.decode_rle``
decodes them (tests compare the two on masks a real server exported), then re-encoded as
the responses format's row-major run lengths. Polygon ``value.points`` are percent of the
image, as key points are.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from rfengine.errors import shorten
from rfengine.frontends.writer import CoherenceScale
from rfengine.ingest.regions import mask_counts
from rfengine.schema import MAX_VERTICES


class Bad(Exception):
    """A bad annotation: the field (its path in the result) and why."""

    def __init__(self, field_: str, why: str):
        super().__init__(why)
        self.field, self.why = field_, why


def rating(value: dict, task: str, scale: CoherenceScale) -> int:
    n = value.get("rating")
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 5:
        raise Bad(f"{task}.rating", f"expected 1-5, got {shorten(n)}")
    return 6 - n if task == "coherence" and scale == "severity" else n


def words(spans: list[dict], text: str, name: str) -> set[int]:
    """Character spans over ``text`` -> the indices of the words of ``text.split()`` each
    span touches."""
    words = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
    chosen: set[int] = set()
    for value in spans:
        s, e = value.get("start"), value.get("end")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (s, e)) or not (
            0 <= s < e <= len(text)
        ):
            raise Bad(f"{name}.start/end", f"expected offsets into the prompt, got {s!r}, {e!r}")
        if "text" in value and value["text"] != text[s:e]:
            why = f"span text {shorten(value['text'])} is not the prompt's {text[s:e]!r} there"
            raise Bad(f"{name}.text", why)
        hit = {k for k, (a, b) in enumerate(words) if a < e and s < b}
        if not hit:
            raise Bad(f"{name}.start/end", f"span {s}-{e} covers no word of the prompt")
        chosen |= hit
    return chosen


def point(item: dict, value: dict, name: str) -> list[float]:
    x, y = value.get("x"), value.get("y")
    if not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 100 for v in (x, y)
    ):
        raise Bad(f"{name}.x/y", f"expected percent of the image (0-100), got {x!r}, {y!r}")
    if item.get("image_rotation", 0) not in (0, None):
        raise Bad(f"{name}.image_rotation", "a rotated image's points are not supported")
    return [x / 100, y / 100]


def decode_rle(rle: Any) -> np.ndarray:
    """Label Studio's brush RLE (a list of bytes) -> its ``(num,)`` uint8 values, as
    ``label_studio_sdk.converter.brush.decode_rle`` (a Python loop over runs, not bits)."""
    if not isinstance(rle, list) or not all(
        isinstance(b, int) and not isinstance(b, bool) and 0 <= b < 256 for b in rle
    ):
        raise ValueError("expected a list of bytes (0-255)")
    data = bytes(rle) + bytes(8)
    end = len(rle) * 8
    pos = 0

    def read(n: int) -> int:
        nonlocal pos
        if pos + n > end:
            raise ValueError("the RLE ends early")
        chunk = int.from_bytes(data[pos >> 3 : (pos >> 3) + 8], "big")
        value = (chunk >> (64 - (pos & 7) - n)) & ((1 << n) - 1)
        pos += n
        return value

    num = read(32)
    word = read(5) + 1
    sizes = [read(4) + 1 for _ in range(4)]
    if num > 4 * 16384 * 16384 or word > 8:
        raise ValueError(f"a mask of {num} values of {word} bits is not a brush mask")
    out = np.zeros(num, dtype=np.uint8)
    i = 0
    while i < num:
        repeat = read(1)
        j = i + 1 + read(sizes[read(2)])
        if j > num:
            raise ValueError("a run goes past the mask's end")
        if repeat:
            out[i:j] = read(word)
        else:
            out[i:j] = [read(word) for _ in range(j - i)]
        i = j
    return out


def region(item: dict, value: dict, name: str, size: tuple[int, int]) -> dict[str, Any]:
    """A ``brushlabels`` or ``polygonlabels`` result -> a region of the responses format;
    ``size``: the image's ``(height, width)`` in the images table, which a mask must have."""
    if item.get("image_rotation", 0) not in (0, None):
        raise Bad(f"{name}.image_rotation", "a rotated image's regions are not supported")
    if item.get("type") == "polygonlabels":
        pts = value.get("points")
        ok = isinstance(pts, list) and all(
            isinstance(p, list)
            and len(p) == 2
            and all(
                isinstance(c, (int, float)) and not isinstance(c, bool) and 0 <= c <= 100 for c in p
            )
            for p in pts
        )
        if not ok or not 3 <= len(pts) <= MAX_VERTICES:
            why = f"expected 3-{MAX_VERTICES} [x, y] points in percent (0-100), got {shorten(pts)}"
            raise Bad(f"{name}.points", why)
        return {"polygon": [[x / 100, y / 100] for x, y in pts]}
    if value.get("format", "rle") != "rle":
        raise Bad(
            f"{name}.format", f"expected an 'rle' brush mask, got {shorten(value.get('format'))}"
        )
    h, w = size
    got = (item.get("original_height"), item.get("original_width"))
    if got != (h, w):
        raise Bad(
            f"{name}.original_width/height",
            f"the mask is {got[1]}x{got[0]}, the images table's image {w}x{h} (width x height)",
        )
    try:
        pixels = decode_rle(value.get("rle"))
    except ValueError as exc:
        raise Bad(f"{name}.rle", f"not a Label Studio brush RLE: {exc}") from None
    if pixels.size != h * w * 4:
        raise Bad(f"{name}.rle", f"{pixels.size} values, not {w}x{h} RGBA pixels ({h * w * 4})")
    mask = pixels.reshape(h, w, 4)[:, :, 3] > 0
    if not mask.any():
        raise Bad(f"{name}.rle", "an empty brush mask (no pixel painted)")
    return {"mask": {"size": [h, w], "counts": mask_counts(mask)}}
