"""One writing rule for every command that writes (rfengine.store.owned): a target that
exists is refused unless --overwrite, and --overwrite replaces only what the same command
wrote. Each case puts a user's file where a command writes and checks it survives."""

import hashlib
import json
from pathlib import Path

import pytest
import torch
from fixtures import cli_aggregate, make_campaign, to_rapidata_results
from safetensors.torch import save_file

from rfengine import load_output
from rfengine.cli import main
from rfengine.store.owned import MARK, check_folder, new_folder, write_mark


def digest(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` and the SHA-256 of its bytes."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def users_folder(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "thesis.tex").write_text("three years of work")
    return path


@pytest.fixture(scope="module")
def output(tmp_path_factory) -> Path:
    """An aggregation output with images (4 simulated images)."""
    root = tmp_path_factory.mktemp("owned")
    assert main(["simulate", "--images", "4", "--out", str(root / "camp"), "--per-image", "4"]) == 0
    out = root / "out"
    cli_aggregate(root / "camp" / "images.jsonl", [root / "camp" / "responses.jsonl"], out)
    return out


@pytest.fixture(scope="module")
def pred(output, tmp_path_factory) -> Path:
    """Predictions equal to the output's targets (a file per shard); returns the first,
    with the others beside it in the same folder."""
    folder = tmp_path_factory.mktemp("pred")
    for n, (tensors, meta) in enumerate(load_output(output).targets):
        maps = {
            f"{k}_heatmap": torch.nan_to_num(tensors[f"{k}_heatmap"].float()).contiguous()
            for k in ("coherence", "alignment")
        }
        save_file(
            {**maps, "scores_norm": tensors["scores_norm"].contiguous()},
            str(folder / f"pred-{n}.safetensors"),
            {"image_ids": json.dumps(meta["image_ids"])},
        )
    return folder / "pred-0.safetensors"


# --- folders: export, simulate, demo ------------------------------------------------------

FOLDER_COMMANDS = {
    "export": lambda out, dest: ["export", str(out), "--format", "richhf", "--out", str(dest)],
    "simulate": lambda out, dest: ["simulate", "--images", "2", "--out", str(dest)],
}


@pytest.mark.parametrize("command", sorted(FOLDER_COMMANDS))
def test_a_users_folder_is_never_replaced(command, output, tmp_path, capsys):
    dest = users_folder(tmp_path / "dest")
    before = digest(dest)
    args = FOLDER_COMMANDS[command](output, dest)
    assert main(args) == 1
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 1
    assert f"not written by rfengine {command}" in capsys.readouterr().err
    assert digest(dest) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dest"]  # nothing left beside it


@pytest.mark.parametrize("command", sorted(FOLDER_COMMANDS))
def test_overwrite_replaces_the_same_commands_folder_only_whole(command, output, tmp_path, capsys):
    dest = tmp_path / "dest"
    args = FOLDER_COMMANDS[command](output, dest)
    assert main(args) == 0
    first = digest(dest)
    assert MARK in first
    assert main(args) == 1  # exists
    assert main([*args, "--overwrite"]) == 0
    assert digest(dest) == first  # same inputs, same bytes
    (dest / "notes.txt").write_text("mine")  # the user adds a file: no longer only ours
    capsys.readouterr()
    assert main([*args, "--overwrite"]) == 1
    assert "did not write (notes.txt)" in capsys.readouterr().err
    assert (dest / "notes.txt").read_text() == "mine"


def test_one_commands_folder_is_not_anothers(output, tmp_path, capsys):
    dest = tmp_path / "dest"
    assert main(FOLDER_COMMANDS["simulate"](output, dest)) == 0
    before = digest(dest)
    assert main([*FOLDER_COMMANDS["export"](output, dest), "--overwrite"]) == 1
    assert "not written by rfengine export" in capsys.readouterr().err
    assert digest(dest) == before


def test_an_empty_folder_is_free_and_a_file_is_not(output, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(FOLDER_COMMANDS["simulate"](output, tmp_path / "empty")) == 0
    (tmp_path / "file").write_text("x")
    assert main([*FOLDER_COMMANDS["simulate"](output, tmp_path / "file"), "--overwrite"]) == 1
    assert "is not a folder" in capsys.readouterr().err
    assert (tmp_path / "file").read_text() == "x"


def test_a_failed_build_leaves_the_old_folder_and_nothing_else(tmp_path):
    dest = tmp_path / "dest"
    with new_folder(dest, "export", overwrite=False) as tmp:
        (tmp / "a").write_text("old")
    with pytest.raises(RuntimeError), new_folder(dest, "export", overwrite=True) as tmp:
        (tmp / "a").write_text("new")
        raise RuntimeError("killed half-way")
    assert (dest / "a").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dest"]


def test_a_subtree_entry_covers_what_is_under_it(tmp_path):
    dest = tmp_path / "dest"
    (dest / "campaign" / "images").mkdir(parents=True)
    (dest / "campaign" / "images" / "x.png").write_bytes(b"x")
    doc = {"format": "rfengine-written/1", "command": "demo", "files": ["campaign/"]}
    (dest / MARK).write_text(json.dumps(doc))
    check_folder(dest, "demo", overwrite=True)  # covered: replaceable
    (dest / "thesis.tex").write_text("x")
    with pytest.raises(FileExistsError, match=r"did not write \(thesis.tex\)"):
        check_folder(dest, "demo", overwrite=True)


def test_a_forged_or_broken_mark_is_not_a_mark(tmp_path):
    dest = users_folder(tmp_path / "dest")
    for text in ("{", "[]", '{"format": "rfengine-written/1", "command": "export"}'):
        (dest / MARK).write_text(text)
        with pytest.raises(FileExistsError, match="not written by rfengine export"):
            check_folder(dest, "export", overwrite=True)
    write_mark(dest, "export")  # a real mark lists what is there: then it is ours
    check_folder(dest, "export", overwrite=True)


# --- render: writes into a folder of its own ----------------------------------------------


def test_render_never_writes_into_a_users_folder(output, tmp_path, capsys):
    dest = users_folder(tmp_path / "dest")
    before = digest(dest)
    for extra in ([], ["--overwrite"]):
        assert main(["render", str(output), "--out", str(dest), *extra]) == 1
        assert "not a folder of rfengine render's" in capsys.readouterr().err
    assert digest(dest) == before


def test_render_adds_to_and_replaces_in_its_own_folder(output, tmp_path):
    dest = tmp_path / "p"
    ids = [r["image_id"] for r in load_output(output).dataset.select_columns(["image_id"])]
    assert main(["render", str(output), "--image", ids[0], "--out", str(dest)]) == 0
    assert main(["render", str(output), "--image", ids[1], "--out", str(dest)]) == 0  # adds
    assert main(["render", str(output), "--image", ids[1], "--out", str(dest)]) == 1  # exists
    assert main(["render", str(output), "--out", str(dest), "--overwrite"]) == 0
    assert sorted(p.name for p in dest.glob("*.png")) == sorted(f"{i}.png" for i in ids)
    (dest / "notes.txt").write_text("mine")
    assert main(["render", str(output), "--out", str(dest), "--overwrite"]) == 1


# --- files: report --html, evaluate --json, responses files -------------------------------


def test_report_replaces_only_a_report(output, tmp_path, capsys):
    page = tmp_path / "index.html"
    page.write_text("<html>my homepage</html>")
    for extra in ([], ["--overwrite"]):
        assert main(["report", str(output), "--html", str(page), *extra]) == 1
    assert "is not an rfengine report" in capsys.readouterr().err
    assert page.read_text() == "<html>my homepage</html>"
    ours = tmp_path / "r.html"
    assert main(["report", str(output), "--html", str(ours)]) == 0
    assert main(["report", str(output), "--html", str(ours)]) == 1
    assert main(["report", str(output), "--html", str(ours), "--overwrite"]) == 0


def test_evaluate_never_overwrites_its_input_or_a_users_file(output, pred, tmp_path, capsys):
    before = pred.read_bytes()
    for extra in ([], ["--overwrite"]):
        args = ["evaluate", "--target", str(output), "--pred", str(pred.parent)]
        assert main([*args, "--json", str(pred), *extra]) == 1
    assert pred.read_bytes() == before
    mine = tmp_path / "results.json"
    mine.write_text('{"accuracy": 0.99}')
    capsys.readouterr()
    args = ["evaluate", "--target", str(output), "--pred", str(pred.parent), "--json", str(mine)]
    assert main([*args, "--overwrite"]) == 1
    assert "is not a report rfengine evaluate wrote" in capsys.readouterr().err
    assert mine.read_text() == '{"accuracy": 0.99}'
    ours = tmp_path / "report.json"
    args = ["evaluate", "--target", str(output), "--pred", str(pred.parent), "--json", str(ours)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert ours.read_text() == printed  # the file is what was printed
    assert json.loads(printed)["generator"] == "rfengine evaluate"
    assert main(args) == 1
    assert main([*args, "--overwrite"]) == 0


@pytest.fixture
def rapidata_jobs(tmp_path):
    c = make_campaign(tmp_path, n_images=3, seed=1)
    jobs = []
    for task in ("style", "coherence"):
        path = tmp_path / f"{task}.json"
        path.write_text(json.dumps(to_rapidata_results(c.responses, c.images, task)))
        jobs.append(f"{task}={path}")
    return ["import-rapidata", "--images", str(c.images_path), *jobs]


def test_import_never_replaces_a_jsonl_and_replaces_only_its_own_parquet(
    rapidata_jobs, tmp_path, capsys
):
    mine = tmp_path / "mine.jsonl"
    mine.write_text('{"hand": "labelled"}\n')
    for extra in ([], ["--overwrite"]):
        assert main([*rapidata_jobs[:3], "--out", str(mine), *extra, *rapidata_jobs[3:]]) == 1
    assert "only .parquet ones carry rfengine's mark" in capsys.readouterr().err
    assert mine.read_text() == '{"hand": "labelled"}\n'
    import pyarrow as pa
    import pyarrow.parquet as pq

    theirs = tmp_path / "theirs.parquet"
    pq.write_table(pa.table({"x": [1]}), theirs)
    args = [*rapidata_jobs[:3], "--out", str(theirs), "--overwrite", *rapidata_jobs[3:]]
    assert main(args) == 1
    assert pq.read_table(theirs).column_names == ["x"]
    ours = tmp_path / "ours.parquet"
    args = [*rapidata_jobs[:3], "--out", str(ours), *rapidata_jobs[3:]]
    assert main(args) == 0
    first = ours.read_bytes()
    assert main(args) == 1
    assert main([*args[:5], "--overwrite", *args[5:]]) == 0
    assert ours.read_bytes() == first
