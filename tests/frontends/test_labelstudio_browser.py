"""A real annotator's screen: Label Studio's labeling page in headless Chromium (Debian's
package, driven by Playwright). Three ratings, a word, two clicks and a brush stroke are
given through the page; ``fetch`` + ``aggregate`` then hold exactly those, each heatmap's
peak is within a pixel of the pixel clicked, the region map covers the stroke, and the
page's own brush RLE decodes as the SDK's decoder decodes it.

``RFENGINE_SCREENSHOTS=DIR`` also saves the labeling page's screenshots there (the README's
``docs/labelstudio-*.png`` come from this test).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import ls_server
import numpy as np
import pytest
from PIL import Image

from rfengine import aggregate
from rfengine.cli import main

pytestmark = pytest.mark.slow
CHROMIUM = "/usr/bin/chromium"
playwright = pytest.importorskip("playwright.sync_api", reason="needs: pip install playwright")
if not Path(CHROMIUM).exists():
    pytest.skip("needs Debian's chromium (apt-get install chromium)", allow_module_level=True)

W, H = 64, 48
PROMPT = "a green apple beside a red cup"
RATINGS = {"style": 4, "coherence": 5, "alignment": 2}  # as clicked (coherence: severity)
WORD = 2  # "apple"
CLICKS = {"coherence_points": (12, 30), "alignment_points": (50, 7)}
STROKE = ((40, 20), (58, 20))  # a brush stroke along this row of pixels


def _shot(page, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    page.screenshot(path=str(path))
    if os.environ.get("RFENGINE_SCREENSHOTS"):
        shutil.copy(path, Path(os.environ["RFENGINE_SCREENSHOTS"]) / name)


def _open(page, url: str, task: int, project: int, wait: str) -> None:
    page.goto(f"{url}/projects/{project}/data?task={task}")
    page.wait_for_selector(wait, timeout=90_000)


def _submit(page, server, task: int) -> None:
    page.click('[data-testid="bottombar-submit-button"]')
    for _ in range(60):  # until the server has the annotation
        if server.api("GET", f"/api/tasks/{task}/")["total_annotations"] == 1:
            return
        page.wait_for_timeout(500)
    raise AssertionError("the submitted annotation never reached the server")


def _task_id(server, project: int) -> int:
    (task,) = server.api("GET", f"/api/tasks/?project={project}&page_size=10")["tasks"]
    return task["id"]


def test_an_annotator_labels_in_chromium(label_studio, tmp_path, monkeypatch, capsys):
    server = label_studio
    folder = server.root / "browser"
    folder.mkdir()
    yy, xx = np.mgrid[0:H, 0:W]
    Image.fromarray(np.stack([xx * 4, yy * 5, 160 + 0 * xx], -1).astype(np.uint8)).save(
        folder / "apple.png"
    )
    row = {"image_id": "apple", "prompt": PROMPT, "width": W, "height": H, "path": "apple.png"}
    (folder / "images.jsonl").write_text(json.dumps(row) + "\n")
    monkeypatch.setenv("LABEL_STUDIO_URL", server.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", server.token)
    camp = tmp_path / "campaign.json"
    launch = ls_server.launch_args(server, folder / "images.jsonl", camp)
    assert main([*launch, "--regions", "brush"]) == 0
    one = json.loads(camp.read_text())["projects"][0]["project_id"]

    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-dev-shm-usage"],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 1100})
        page.goto(server.url + "/user/login")
        page.fill("#email", server.email)
        page.fill("#password", server.password)
        page.click("button[type=submit]")
        page.wait_for_load_state("networkidle")

        task = _task_id(server, one)
        _open(page, server.url, task, one, ".lsf-richtext__line")
        rates = page.locator("ul.ant-rate")
        assert rates.count() == 3
        for k, name in enumerate(("style", "coherence", "alignment")):
            rates.nth(k).locator(f'[role=radio][aria-posinset="{RATINGS[name]}"]').click()
        page.locator(".lsf-label__text", has_text=re.compile(r"^Mistake$")).click()
        word = list(re.finditer(r"\S+", PROMPT))[WORD]
        page.locator(".lsf-richtext__line").first.evaluate(
            """(el, [s, e]) => {
                const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
                const node = walker.nextNode();
                const range = document.createRange();
                range.setStart(node, s); range.setEnd(node, e);
                const sel = window.getSelection();
                sel.removeAllRanges(); sel.addRange(range);
                el.dispatchEvent(new MouseEvent("mouseup", {bubbles: true}));
            }""",
            [word.start(), word.start() + 3],  # part of the word selects the word
        )
        page.wait_for_timeout(500)
        _shot(page, tmp_path, "labelstudio-stage-one.png")
        _submit(page, server, task)

        capsys.readouterr()
        assert main(["campaign", "next-stage", str(camp)]) == 0
        two = json.loads(camp.read_text())["projects"][1]["project_id"]
        task = _task_id(server, two)
        _open(page, server.url, task, two, "canvas")
        page.wait_for_timeout(1000)  # the image loaded and laid out
        box = page.locator(".lsf-object canvas, canvas").first.bounding_box()
        scale = box["width"] / W
        assert abs(box["height"] / H - scale) < 0.02 * scale  # the image fills the canvas
        for name, label in (("coherence_points", "Error"), ("alignment_points", "Mismatch")):
            page.locator(".lsf-label__text", has_text=re.compile(f"^{label}$")).click()
            x, y = CLICKS[name]
            page.mouse.click(box["x"] + (x + 0.5) * scale, box["y"] + (y + 0.5) * scale)
            page.wait_for_timeout(300)
        # a brush stroke over the alignment error's area: LS's own RLE encoder writes it
        page.keyboard.press("Escape")
        page.locator(".lsf-label__text", has_text=re.compile(r"^Mismatch area$")).click()
        (x0, y0), (x1, y1) = STROKE
        page.mouse.move(box["x"] + (x0 + 0.5) * scale, box["y"] + (y0 + 0.5) * scale)
        page.mouse.down()
        for t in np.linspace(0, 1, 12):
            px, py = x0 + t * (x1 - x0), y0 + t * (y1 - y0)
            page.mouse.move(box["x"] + (px + 0.5) * scale, box["y"] + (py + 0.5) * scale)
        page.mouse.up()
        page.wait_for_timeout(500)
        _shot(page, tmp_path, "labelstudio-stage-two.png")
        _submit(page, server, task)
        browser.close()

    out = tmp_path / "responses.jsonl"
    assert main(["campaign", "fetch", str(camp), "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    got = {r["task"]: r for r in rows}
    assert got["style"]["rating"] == 4 and got["alignment"]["rating"] == 2
    assert got["coherence"]["rating"] == 6 - 5  # asked as error severity
    assert got["words"]["selected"] == [WORD]
    res = aggregate(folder / "images.jsonl", out, device="cpu", dtype="float32")
    for name, (x, y) in CLICKS.items():
        heat = res.heatmaps[name.removesuffix("_points")][0]
        assert heat.shape == (H, W)
        py, px = np.unravel_index(np.argmax(heat), heat.shape)
        assert abs(px - x) <= 1 and abs(py - y) <= 1, (name, (px, py), (x, y))
    # the brush stroke: one annotator, so the region map is the mask itself (0 or 1); it
    # covers the stroke's row between its ends, and nothing far from it
    (x0, y0), (x1, _) = STROKE
    region = res.heatmaps["alignment_region"][0]
    assert set(np.unique(region)) <= {0.0, 1.0}
    assert region[y0, x0 + 2 : x1 - 1].all()
    assert not region[:, : x0 - 8].any() and not region[y0 + 12 :].any()
    assert res.heatmaps["coherence_region"][0].max() == 0  # asked, nothing drawn: an answer
    export = next((camp.parent / "campaign-results").glob("stage2-*.json"))
    (rle,) = [
        r["value"]["rle"]
        for t in json.loads(export.read_text())
        for a in t["annotations"]
        for r in a["result"]
        if r["type"] == "brushlabels"
    ]
    from rfengine.frontends.labelstudio.results import decode_rle

    decode = (
        "from label_studio_sdk.converter.brush import decode_rle\nout = decode_rle(data).tolist()"
    )
    np.testing.assert_array_equal(decode_rle(rle), ls_server.sdk_call(decode, rle))
