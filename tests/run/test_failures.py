"""How a run ends when it does not finish: bad input leaves nothing and says one line;
an interrupt, a SIGTERM or a failed write keeps the work folder and says, after its error
line, how to resume; checks that need no data come before anything is written."""

import builtins
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures import interrupt_at_partition, make_campaign
from store.test_ownership import CHILD

from rfengine.cli import main


@pytest.fixture
def campaign(tmp_path):
    (tmp_path / "in").mkdir()
    return make_campaign(tmp_path / "in", n_images=6, seed=4)


def _args(campaign, out: Path, *extra: str) -> list[str]:
    return [
        "aggregate", "--images", str(campaign.images_path), "--responses",
        str(campaign.responses_path), *extra, "--out", str(out), "--memory-budget", "100KB",
        "--quiet",
    ]  # fmt: skip


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_bad_input_is_one_line_and_leaves_no_work_folder(campaign, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    rows = campaign.responses_path.read_text().splitlines()
    rows.append(json.dumps({"image_id": "img000", "annotator_id": "z", "task": "style"}))
    bad.write_text("\n".join(rows) + "\n")  # the bad row comes last: read after the rest
    args = _args(campaign, tmp_path / "out")
    args[args.index("--responses") + 1] = str(bad)
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"rfengine: error: {bad}: line {len(rows)}")
    assert "--resume" not in err[0]
    assert _hidden(tmp_path) == [] and not (tmp_path / "out").exists()


def test_an_interrupt_keeps_the_work_and_says_how_to_resume(
    campaign, tmp_path, capsys, monkeypatch
):
    interrupt_at_partition(monkeypatch, 2)
    assert main(_args(campaign, tmp_path / "out")) == 130
    err = capsys.readouterr().err.strip().splitlines()
    work = tmp_path / ".out.rfengine-work"
    assert err == [
        "rfengine: interrupted",
        f"rfengine: the unfinished run is in {work}: rerun with --resume to continue it",
    ]
    monkeypatch.undo()
    assert main([*_args(campaign, tmp_path / "out"), "--resume"]) == 0
    assert _hidden(tmp_path) == []


def test_a_failed_write_keeps_the_work_and_says_how_to_resume(
    campaign, tmp_path, capsys, monkeypatch
):
    import rfengine.run.pipeline as pipeline

    def full(*a, **k):
        raise OSError(28, "No space left on device", str(tmp_path / "out"))

    monkeypatch.setattr(pipeline, "finalize_targets", full)
    assert main(_args(campaign, tmp_path / "out")) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("rfengine: error: ") and "disk is full" in err[0]
    assert err[1].startswith("rfengine: the unfinished run is in") and len(err) == 2
    assert ".out.rfengine-work" in _hidden(tmp_path)


def test_a_missing_extra_is_found_before_anything_is_written(
    campaign, tmp_path, capsys, monkeypatch
):
    real = builtins.__import__

    def no_ray(name, *a, **k):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    assert main([*_args(campaign, tmp_path / "out"), "--engine", "ray"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "rfengine: error: --engine ray needs Ray: pip install 'rfengine[ray]' (or pip install "
        "'ray[data]')"
    ]
    assert _hidden(tmp_path) == [] and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_sigterm_ends_the_run_as_an_interrupt_does(campaign, tmp_path):
    out = tmp_path / "out"
    args = [sys.executable, "-c", CHILD, "part-1", *_args(campaign, out)]
    with subprocess.Popen(args, stderr=subprocess.PIPE, text=True) as p:
        for line in p.stderr:
            if "paused at part-1" in line:
                break
        else:
            pytest.fail("the run ended before its second partition")
        p.send_signal(signal.SIGTERM)
        rest = p.stderr.read().strip().splitlines()
        assert p.wait(timeout=60) == 143
    work = tmp_path / ".out.rfengine-work"
    assert rest == [
        "rfengine: terminated",
        f"rfengine: the unfinished run is in {work}: rerun with --resume to continue it",
    ]
    assert (work / "progress.json").exists() and not out.exists()
