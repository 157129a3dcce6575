"""Outputs are owned: what --overwrite may replace, one run at a time, nothing left behind
by a kill at any moment, and the same bytes for the same run."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fixtures import make_campaign, write_jsonl
from PIL import Image

from rfengine import InputError, aggregate, aggregate_to_disk, save_output
from rfengine.store import WorkDir


@pytest.fixture
def campaign(tmp_path):
    (tmp_path / "in").mkdir()
    return make_campaign(tmp_path / "in", n_images=6, seed=4)


def test_overwrite_replaces_only_an_rfengine_output(campaign, tmp_path):
    res = aggregate(campaign.images_path, campaign.responses_path)
    # a web app's folder that happens to hold a manifest.json
    app = tmp_path / "app"
    app.mkdir()
    (app / "manifest.json").write_text('{"name": "my web app"}')
    (app / "index.html").write_text("<html></html>")
    with pytest.raises(FileExistsError, match=r"not an rfengine output .*index.html"):
        save_output(res, app, overwrite=True)
    assert (app / "index.html").exists()
    # an rfengine output with something added to it
    out = save_output(res, tmp_path / "out")
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"holds files an rfengine output does not \(notes"):
        aggregate_to_disk(campaign.images_path, campaign.responses_path, out, overwrite=True)
    assert (out / "notes.txt").read_text() == "mine"
    (out / "notes.txt").unlink()
    aggregate_to_disk(campaign.images_path, campaign.responses_path, out, overwrite=True)
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    # a file in the way
    (tmp_path / "f").write_text("x")
    with pytest.raises(FileExistsError, match="is not a folder"):
        save_output(res, tmp_path / "f", overwrite=True)


def test_one_run_at_a_time(campaign, tmp_path):
    out = tmp_path / "out"
    with WorkDir(out):
        with pytest.raises(InputError, match=rf"another rfengine run \(process {os.getpid()}\)"):
            aggregate_to_disk(campaign.images_path, campaign.responses_path, out)
        assert not out.exists()
    aggregate_to_disk(campaign.images_path, campaign.responses_path, out)  # free again
    assert not (tmp_path / ".out.rfengine-lock").exists()


#: a child that runs ``rfengine aggregate`` and, at the named moment, says so and waits to
#: be killed (the hooks wrap the real stages; nothing in the package knows about them)
CHILD = """
import sys, time
import rfengine.run.local as local
from rfengine.cli import main
from rfengine.store.work import WorkDir

stage = sys.argv[1]

def pause():
    print("paused at", stage, file=sys.stderr, flush=True)
    time.sleep(60)

real_partition, real_part, real_publish = (
    local.read_partitions, local.compute_part, WorkDir.publish
)

def partition(*a):
    out = real_partition(*a)
    if stage == "partitioned":
        pause()
    return out

def part(run, p, *a):
    if stage == "part-1" and p == 1:
        pause()
    return real_part(run, p, *a)

def publish(self, ready, overwrite):
    if stage == "finalised":
        pause()
    if stage == "replaced":
        self.out.rename(self.dir / "replaced")
        pause()
    return real_publish(self, ready, overwrite)

local.read_partitions, local.compute_part, WorkDir.publish = partition, part, publish
sys.exit(main(sys.argv[2:]))
"""


def _run_until(stage: str, out: Path, campaign) -> None:
    """Run ``rfengine aggregate --overwrite`` in a child; kill -9 it at ``stage``."""
    args = [
        sys.executable, "-c", CHILD, stage, "aggregate", "--images",
        str(campaign.images_path), "--responses", str(campaign.responses_path), "--out",
        str(out), "--memory-budget", "100KB", "--device", "cpu", "--overwrite", "--quiet",
    ]  # fmt: skip
    with subprocess.Popen(args, stderr=subprocess.PIPE, text=True) as p:
        for line in p.stderr:
            if f"paused at {stage}" in line:
                break
        else:
            pytest.fail(f"the run ended before reaching {stage}")
        p.send_signal(signal.SIGKILL)


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["partitioned", "part-1", "finalised", "replaced"])
def test_a_kill_at_any_stage_leaves_nothing_but_the_work_folder(campaign, tmp_path, stage):
    out = tmp_path / "out"
    aggregate_to_disk(campaign.images_path, campaign.responses_path, out)
    before = json.loads((out / "manifest.json").read_text())["counts"]
    _run_until(stage, out, campaign)
    hidden = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("."))
    assert hidden in ([".out.rfengine-lock", ".out.rfengine-work"], [".out.rfengine-work"])
    # the old output is still there, or (killed between the two renames of the publish)
    # inside the work folder, where --resume publishes the new one
    if stage != "replaced":
        assert json.loads((out / "manifest.json").read_text())["counts"] == before
    else:
        assert not out.exists() and (tmp_path / ".out.rfengine-work" / "replaced").is_dir()
    m = aggregate_to_disk(
        campaign.images_path, campaign.responses_path, out, overwrite=True, resume=True,
        memory_budget="100KB",
    )  # fmt: skip
    assert m["counts"] == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out"]


def _bytes(folder: Path) -> dict[str, bytes]:
    files = {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    manifest = json.loads(files.pop("manifest.json"))
    manifest.pop("run")  # when it ran and how long: the one field that may differ
    files["manifest.json"] = json.dumps(manifest).encode()
    return files


def test_two_runs_write_the_same_bytes(campaign, tmp_path):
    a = aggregate_to_disk(campaign.images_path, campaign.responses_path, tmp_path / "a")
    b = aggregate_to_disk(campaign.images_path, campaign.responses_path, tmp_path / "b")
    assert a["outputs"] == b["outputs"]
    assert _bytes(tmp_path / "a") == _bytes(tmp_path / "b")
    res = aggregate(campaign.images_path, campaign.responses_path)
    assert _bytes(save_output(res, tmp_path / "c")) == _bytes(save_output(res, tmp_path / "d"))


def test_resume_notices_a_changed_image_file(tmp_path, monkeypatch, capsys):
    import rfengine.run.local as local

    folder = tmp_path / "in"
    folder.mkdir()
    Image.new("RGB", (16, 12), (200, 0, 0)).save(folder / "a.png")
    images = write_jsonl(
        folder / "images.jsonl", [{"image_id": "a", "prompt": "red", "path": "a.png"}]
    )
    resp = write_jsonl(
        folder / "r.jsonl", [{"image_id": "a", "annotator_id": "u", "task": "style", "rating": 3}]
    )
    monkeypatch.setattr(local, "compute_part", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        aggregate_to_disk(images, resp, tmp_path / "out")
    monkeypatch.undo()
    time.sleep(0.01)
    Image.new("RGB", (16, 12), (0, 0, 200)).save(folder / "a.png")  # same size, new bytes
    aggregate_to_disk(images, resp, tmp_path / "out", resume=True, progress=True)
    assert "(its image files changed)" in capsys.readouterr().err


def test_shard_headers_are_reproducible_for_any_id(tmp_path):
    import torch
    from safetensors import safe_open

    from rfengine.store.targets import save_shard

    ids = json.dumps(['é\u0001\u2028"q\\', "\x7f", "a/b", "日本"], ensure_ascii=False)
    meta = {"image_ids": ids, "b": "1", "a": "2", "format": "x"}
    paths = [tmp_path / "one.safetensors", tmp_path / "two.safetensors"]
    for p in paths:
        save_shard({"x": torch.arange(5), "y": torch.ones(2, 3)}, p, meta)
    assert paths[0].read_bytes() == paths[1].read_bytes()
    data = paths[0].read_bytes()
    header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
    assert list(header["__metadata__"]) == sorted(meta)  # in the file, keys sorted
    with safe_open(str(paths[0]), "pt") as fh:
        assert fh.metadata() == meta
        assert torch.equal(fh.get_tensor("x"), torch.arange(5))
