import numpy as np
import torch
from PIL import Image
from rfengine.kernels import Points, splat_heatmaps

from rfengine.render import colormap, overlay, panel, prompt_image, safe_name, word_colours


def click_heatmap(x, y, w, h):
    t = torch.tensor
    one = Points(t([x]), t([y]), t([0]), t([0]), t([0]), t([1.0]), t([w]), t([h]))
    return splat_heatmaps(one, (h, w))[0].numpy()


def test_colormap_ends():
    c = colormap(np.array([0.0, 1.0, np.nan, 2.0]))
    assert c.dtype == np.uint8 and c.shape == (4, 3)
    assert tuple(c[2]) == tuple(c[0]) and tuple(c[3]) == tuple(c[1])


def test_overlay_has_image_size_and_hot_spot_at_the_click():
    img = Image.new("RGB", (120, 80), (128, 128, 128))
    heat = click_heatmap(0.75, 0.25, 60, 40)  # heatmap at half resolution
    out = overlay(img, heat)
    assert out.size == img.size
    base = np.asarray(img.convert("L").convert("RGB"), dtype=float)
    change = np.abs(np.asarray(out, dtype=float) - base).sum(-1)
    i, j = np.unravel_index(change.argmax(), change.shape)
    assert abs(j - 0.75 * 120) <= 3 and abs(i - 0.25 * 80) <= 3
    assert change[70, 10] < 1  # far from the click the image shows through


def test_word_colours_reddest_for_top_score():
    cols = word_colours(np.array([0.0, 2.0, 0.5]))
    assert cols[0] == (255, 255, 255)
    assert min(cols, key=lambda c: c[1]) == cols[1]


def test_prompt_and_panel_sizes():
    words = "a red cube on a table".split()
    p = prompt_image(words, np.arange(6.0), 300)
    assert p.width == 300 and p.height > 15
    img = Image.new("RGB", (64, 48), "white")
    out = panel(img, words, None, {"coherence": click_heatmap(0.5, 0.5, 64, 48), "alignment": None})
    assert out.width == 3 * 64 + 16


def test_safe_name():
    assert safe_name("../../etc/passwd") == "_etc_passwd"
    assert safe_name("a b/c.png") == "a_b_c.png"
    assert safe_name("...") == "_"


def test_each_overlay_carries_its_colour_scale():
    from PIL import Image

    from rfengine.render.overlay import colour_scale

    w = 200
    maps = {"coherence": np.zeros((5, 5)), "alignment": None}
    out = panel(Image.new("RGB", (w, 100), "white"), ["a"], None, maps)
    px = np.asarray(out)
    scale = np.asarray(colour_scale(64, 8))
    coherence_x, alignment_x = (w + 8) + w - 82, 2 * (w + 8) + w - 82
    assert (px[22 + 8 : 22 + 16, coherence_x : coherence_x + 64] == scale).all()
    assert not (px[22 + 8 : 22 + 16, alignment_x : alignment_x + 64] == scale).all()  # none
    assert scale[0, 0].tolist() != scale[0, -1].tolist()  # cold to hot


def test_a_huge_prompt_draws_a_bounded_number_of_words():
    from rfengine.render.overlay import MAX_WORDS

    words = [f"w{k}" for k in range(200_000)]  # took minutes before the cap
    img = prompt_image(words, np.zeros(len(words)), 600)
    short = prompt_image(words[: MAX_WORDS + 1], np.zeros(MAX_WORDS + 1), 600)
    assert img.size == short.size  # the same boxes: the first words and one "... more"
    assert img.height < 2000
