"""The demo end to end: simulate -> aggregate twice -> report, and what it shows."""

import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from rfengine.cli import main
from rfengine.sim.demo import run_demo


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "d"
    report, figures = run_demo(out, progress=False)
    return out, report, figures


def assert_recovers_better(w: dict, u: dict) -> None:
    """Weighted figures ``w`` beat the uniform ones ``u``: closer heatmap peaks to the
    planted defects, higher rank correlation of every score with the truth."""
    assert w["coherence_peak_distance"] < u["coherence_peak_distance"]
    assert w["alignment_peak_distance"] < u["alignment_peak_distance"]
    for c in ("style", "coherence", "alignment"):
        assert w[f"{c}_spearman"] > u[f"{c}_spearman"]


def test_trust_weighting_recovers_the_truth_better(demo):
    _, _, f = demo
    t, u = f["trust"], f["uniform"]
    assert_recovers_better(t, u)
    assert t["top_word_accuracy"] >= u["top_word_accuracy"] >= 0.8
    # the heatmaps find the defects: peaks within a tenth of the image's side on average
    assert t["coherence_peak_distance"] < 0.1 and t["alignment_peak_distance"] < 0.1


def test_region_heatmaps_recover_the_planted_objects_better_than_points(demo):
    """The simulated annotators outline the planted objects (some too large, some not at
    all, spammers anywhere): the region heatmap correlates with the objects' mask better
    than the point heatmap does, on the same images, in every weighting."""
    _, _, figures = demo
    for f in figures.values():
        for crit in ("coherence", "alignment"):
            assert f[f"{crit}_mask_images"] > 0
            assert f[f"{crit}_region_mask_cc"] > f[f"{crit}_mask_cc"] + 0.05


def test_estimated_trust_without_given_trust_beats_uniform(demo):
    out, report, f = demo
    assert_recovers_better(f["estimate"], f["uniform"])
    assert (out / "aggregate-estimated" / "annotators.parquet").is_file()
    text = report.read_text()
    assert "estimated trust" in text and "weight_estimated histogram" in text


def test_report_content(demo):
    out, report, _ = demo
    text = report.read_text()
    for section in (
        "Recovery of the planted truth",
        "Scores",
        "Lowest-scoring images",
        "All images",
        "Manifest",
    ):
        assert section in text
    assert text.count("data:image/png;base64") > 48 * 3
    assert 'class="w" style="background:rgb(255,50,40)"' in text  # a top-scored word in red


def test_render_panels(demo, tmp_path):
    out, _, _ = demo
    assert (
        main(["render", str(out / "aggregate"), "--image", "sim-0002", "--out", str(tmp_path)]) == 0
    )
    with Image.open(tmp_path / "sim-0002.png") as img:
        # sim-0002 is 240 px wide: the image, two point and two region overlays
        assert img.width == 5 * 240 + 4 * 8


def test_demo_refuses_a_foreign_folder(tmp_path):
    (tmp_path / "thesis.tex").write_text("x")
    with pytest.raises(FileExistsError, match="exists; pass --overwrite"):
        run_demo(tmp_path, n_images=2, progress=False)
    with pytest.raises(FileExistsError, match="not written by rfengine demo"):
        run_demo(tmp_path, n_images=2, progress=False, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["thesis.tex"]


def test_demo_writes_panels_and_replaces_only_its_own(demo):
    out, _, _ = demo
    panels = sorted(p.name for p in (out / "render").glob("*.png"))
    assert panels == [f"sim-{k:04d}.png" for k in range(4)]


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium")
def test_report_renders_in_headless_chromium(demo, tmp_path):
    _, report, _ = demo
    shot = tmp_path / "shot.png"
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ]
    args = [
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1200,1600",
        f"--screenshot={shot}",
    ]
    subprocess.run(
        ["chromium", *flags, *args, report.resolve().as_uri()],
        check=True,
        capture_output=True,
        timeout=120,
    )
    with Image.open(shot) as im:
        px = np.asarray(im.convert("RGB"), dtype=np.int16)
    assert px.shape[:2] == (1600, 1200)
    non_white = (px < 235).any(-1).mean()
    assert non_white > 0.05, f"screenshot looks blank ({non_white:.1%} non-white)"
    assert len(np.unique(px.reshape(-1, 3), axis=0)) > 200  # images and colours, not just text


def test_render_names_never_collide_and_never_overwrite(tmp_path):
    from fixtures import make_campaign, write_jsonl

    from rfengine import aggregate, save_output
    from rfengine.render import panel_name

    c = make_campaign(tmp_path, n_images=3, seed=2)
    ids = ["a/b", "a_b", "a:b"]  # sanitise alike
    rows = []
    for im, new in zip(c.images, ids, strict=True):
        Image.new("RGB", (im["width"], im["height"])).save(tmp_path / f"{im['image_id']}.png")
        rows.append({**im, "image_id": new, "path": f"{im['image_id']}.png"})
    write_jsonl(c.images_path, rows)
    old = {im["image_id"]: new for im, new in zip(c.images, ids, strict=True)}
    write_jsonl(c.responses_path, [{**r, "image_id": old[r["image_id"]]} for r in c.responses])
    out = save_output(aggregate(c.images_path, c.responses_path), tmp_path / "out")
    assert len({panel_name(i) for i in ids}) == 3
    assert main(["render", str(out), "--out", str(tmp_path / "p")]) == 0
    assert sorted(p.name for p in (tmp_path / "p").glob("*.png")) == sorted(map(panel_name, ids))
    assert main(["render", str(out), "--out", str(tmp_path / "p")]) == 1  # never overwrites
    assert main(["render", str(out), "--out", str(tmp_path / "p"), "--overwrite"]) == 0
    assert main(["report", str(out)]) == 0
    assert main(["report", str(out)]) == 1
    assert main(["report", str(out), "--overwrite"]) == 0


def test_an_undecodable_embedded_image_is_one_line(tmp_path, capsys):
    from fixtures import make_campaign, write_jsonl

    from rfengine import aggregate, save_output

    c = make_campaign(tmp_path, n_images=2, seed=2)
    for im in c.images:
        Image.new("RGB", (im["width"], im["height"])).save(tmp_path / f"{im['image_id']}.png")
    write_jsonl(c.images_path, [{**im, "path": f"{im['image_id']}.png"} for im in c.images])
    res = aggregate(c.images_path, c.responses_path)
    (tmp_path / f"{c.images[1]['image_id']}.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    out = save_output(res, tmp_path / "out")  # the bytes changed after they were checked
    assert main(["render", str(out), "--out", str(tmp_path / "p")]) == 1
    err = capsys.readouterr().err
    assert f"dataset row 1 (image_id {c.images[1]['image_id']!r}): the image cannot be" in err
    assert main(["report", str(out)]) == 1
    assert "Traceback" not in capsys.readouterr().err
