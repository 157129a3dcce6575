"""Pictures of results: heatmap overlays, coloured prompts and per-image panels (Pillow only).

Geometry and values come from the aggregation; this module only decides how they look.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# anchors of a "turbo"-like ramp: dark blue -> blue -> cyan -> green -> yellow -> orange -> red
_ANCHORS = np.array(
    [
        [48, 18, 59],
        [65, 105, 225],
        [30, 200, 230],
        [80, 240, 90],
        [245, 220, 40],
        [250, 120, 20],
        [190, 20, 10],
    ],
    dtype=np.float64,
)
LUT = np.stack(
    [
        np.interp(np.linspace(0, 1, 256), np.linspace(0, 1, len(_ANCHORS)), _ANCHORS[:, c])
        for c in range(3)
    ],
    axis=1,
).astype(np.uint8)  # (256, 3)


def colormap(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] (any shape) -> uint8 RGB (shape + (3,)); NaN and out-of-range clip."""
    v = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0)
    return LUT[np.clip(np.rint(v * 255), 0, 255).astype(np.int64)]


def overlay(image: Image.Image, heat: np.ndarray, alpha: float = 0.8) -> Image.Image:
    """The heatmap over the image: colour from ``colormap``, opacity ``alpha * sqrt(heat)``.

    ``heat`` is ``(h, w)`` in [0, 1] at any size; it is resized (bilinear) to the image's.
    The image underneath is half desaturated so that the colours read as heat; cold areas
    stay visible, and the square root keeps weaker areas (a minority of annotators) in view.
    """
    rgb = image.convert("RGB")
    grey = np.asarray(rgb.convert("L").convert("RGB"), dtype=np.float64)
    base = 0.5 * np.asarray(rgb, dtype=np.float64) + 0.5 * grey
    h, w = base.shape[:2]
    hm = np.asarray(heat, dtype=np.float32)
    if hm.shape != (h, w):
        hm = np.asarray(Image.fromarray(hm, mode="F").resize((w, h), Image.BILINEAR))
    hm = np.clip(np.nan_to_num(hm), 0.0, 1.0)
    a = (alpha * np.sqrt(hm))[..., None]
    out = base * (1 - a) + colormap(hm).astype(np.float64) * a
    return Image.fromarray(np.rint(out).astype(np.uint8), "RGB")


def word_colours(scores: np.ndarray) -> list[tuple[int, int, int]]:
    """One RGB per word, white for 0 through red for the largest score."""
    s = np.asarray(scores, dtype=np.float64)
    top = s.max() if s.size and s.max() > 0 else 1.0
    t = np.clip(s / top, 0, 1)
    return [(255, int(255 - 205 * v), int(255 - 215 * v)) for v in t]


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


#: words of a prompt drawn at most (the seed's prompts have a few dozen)
MAX_WORDS = 400


def prompt_image(
    words: list[str], scores: np.ndarray | None, width: int, size: int = 15
) -> Image.Image:
    """The prompt, wrapped to ``width`` pixels, each word on a background coloured by score.

    At most ``MAX_WORDS`` words are drawn (a prompt of 200,000 words would take minutes
    and a page no one reads); a last grey box says how many more there are."""
    font = _font(size)
    colours = word_colours(scores) if scores is not None else [(255, 255, 255)] * len(words)
    if len(words) > MAX_WORDS:
        more = len(words) - MAX_WORDS
        words = [*words[:MAX_WORDS], f"... ({more} more words)"]
        colours = [*colours[:MAX_WORDS], (220, 220, 220)]
    pad, gap, line_h = 6, 4, size + 8
    x, y, boxes = pad, pad, []
    for word, colour in zip(words, colours, strict=True):
        wlen = int(font.getlength(word)) + 6
        if x + wlen > width - pad and x > pad:
            x, y = pad, y + line_h
        boxes.append((x, y, wlen, word, colour))
        x += wlen + gap
    img = Image.new("RGB", (width, y + line_h + pad), "white")
    draw = ImageDraw.Draw(img)
    for x, y, wlen, word, colour in boxes:
        draw.rectangle([x, y, x + wlen, y + line_h - 2], fill=colour)
        draw.text((x + 3, y + 2), word, fill="black", font=font)
    return img


def colour_scale(width: int, height: int) -> Image.Image:
    """The heat colours from 0 (left) to 1 (right), as drawn over the images."""
    row = colormap(np.linspace(0.0, 1.0, width))
    return Image.fromarray(np.repeat(row[None], height, axis=0).astype(np.uint8))


def panel(
    image: Image.Image,
    words: list[str],
    word_scores: np.ndarray | None,
    heatmaps: dict[str, np.ndarray | None],
    title: str = "",
) -> Image.Image:
    """The image, then one overlay per heatmap, in a row; the coloured prompt below."""
    w, h = image.size
    tiles = [("image", image.convert("RGB"), False)]
    for name, heat in heatmaps.items():
        if heat is None:  # not collected: a grey copy says so
            tiles.append((f"{name}: not collected", image.convert("L").convert("RGB"), False))
        else:
            tiles.append((name, overlay(image, heat), True))
    label_h = 22
    prompt = prompt_image(words, word_scores, w * len(tiles) + 8 * (len(tiles) - 1))
    out = Image.new("RGB", (prompt.width, label_h * 2 + h + prompt.height), "white")
    draw = ImageDraw.Draw(out)
    draw.text((4, 3), title, fill="black", font=_font(14))
    for q, (name, tile, heat) in enumerate(tiles):
        x = q * (w + 8)
        draw.text((x + 2, label_h + 3), name, fill=(60, 60, 60), font=_font(13))
        out.paste(tile, (x, label_h * 2))
        if heat and w >= 140:  # the overlays' colour scale
            out.paste(colour_scale(64, 8), (x + w - 82, label_h + 8))
            draw.text((x + w - 90, label_h + 4), "0", fill=(60, 60, 60), font=_font(11))
            draw.text((x + w - 14, label_h + 4), "1", fill=(60, 60, 60), font=_font(11))
    out.paste(prompt, (0, label_h * 2 + h))
    return out
