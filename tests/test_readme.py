"""The README's code blocks run as written, in order, so that the first hour cannot drift
from the code: every ``bash`` and ``python`` block is run in one fresh folder, after the
set-up block's own last command (``rfengine demo``), unless a comment right above it says
``<!-- readme-test: not run (why) -->``. The inputs a block names (``images.jsonl``,
``responses/``, Rapidata results) are laid out first from the demo's campaign, as a user
would bring their own."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.json as pj
import pyarrow.parquet as pq
import pytest
from fixtures import to_rapidata_results

ROOT = Path(__file__).parent.parent
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.S | re.M)
SKIP = re.compile(r"<!-- readme-test: not run \((.+)\) -->\n$")


def blocks(text: str) -> list[tuple[str, str, str | None]]:
    """``(language, code, reason it is not run or None)`` of every fenced block."""
    found = []
    for m in FENCE.finditer(text):
        before = text[: m.start()].splitlines(keepends=True)[-1:] or [""]
        skip = SKIP.search(before[0])
        found.append((m[1], m[2], skip[1] if skip else None))
    return found


def test_every_block_is_run_or_says_why_not():
    for lang, code, reason in blocks((ROOT / "README.md").read_text()):
        assert lang, f"a code block needs a language (text for a drawing):\n{code[:200]}"
        if lang not in ("bash", "python"):
            continue
        assert reason is None or len(reason) > 10, code[:200]


def test_blocks_are_found_with_their_reasons():
    text = "a\n```bash\necho 1\n```\n<!-- readme-test: not run (needs a cluster) -->\n"
    text += "```python\nx = 1\n```\n```text\nart\n```\n"
    assert blocks(text) == [
        ("bash", "echo 1\n", None),
        ("python", "x = 1\n", "needs a cluster"),
        ("text", "art\n", None),
    ]


def _inputs(folder: Path) -> None:
    """What the blocks name, from the demo's campaign: the images table and its images,
    responses split into responses/*.jsonl, a.jsonl and b.parquet, Rapidata results."""
    camp = folder / "rfengine-demo" / "campaign"
    shutil.copy(camp / "images.jsonl", folder / "images.jsonl")
    shutil.copytree(camp / "images", folder / "images")
    rows = [json.loads(x) for x in (camp / "responses.jsonl").read_text().splitlines()]
    (folder / "responses").mkdir()
    half = len(rows) // 2
    for name, part in (("part-1", rows[:half]), ("part-2", rows[half:])):
        text = "".join(json.dumps(r) + "\n" for r in part)
        (folder / "responses" / f"{name}.jsonl").write_text(text)
    (folder / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:half]))
    pq.write_table(pj.read_json(folder / "responses" / "part-2.jsonl"), folder / "b.parquet")
    images = [json.loads(x) for x in (camp / "images.jsonl").read_text().splitlines()]
    names = {
        "style": "style.json",
        "coherence": "coherence.json",
        "alignment": "alignment.json",
        "coherence_points": "coh_points.json",
        "alignment_points": "ali_points.json",
        "words": "words.json",
    }
    for task, name in names.items():
        (folder / name).write_text(json.dumps(to_rapidata_results(rows, images, task)))


@pytest.mark.slow
def test_the_readme_runs_as_written(tmp_path):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env["PYTHONPATH"] = ""  # nothing of the test run's own path

    def bash(code: str) -> None:
        done = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", code],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, f"$ {code}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"

    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    bash("rfengine demo --quiet")  # the set-up block's last command
    _inputs(tmp_path)
    ran = 0
    for lang, code, reason in blocks((ROOT / "README.md").read_text()):
        if reason is not None or lang not in ("bash", "python"):
            continue
        if lang == "bash":
            bash(code)
        else:
            script = tmp_path / f"block-{ran}.py"
            script.write_text(code)
            bash(f"{sys.executable} {script.name}")
        ran += 1
    assert ran >= 5  # the blocks named in the module docstring, at least
    assert (tmp_path / "out" / "manifest.json").is_file()  # "Aggregating"
    assert (tmp_path / "responses.jsonl").is_file()  # "Rapidata results"
    assert (tmp_path / "out-estimated" / "annotators.parquet").is_file()  # "Python API"
    assert json.loads((tmp_path / "report.json").read_text())["coverage"]["missing"] > 0
