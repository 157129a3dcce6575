"""Every command that reads an output back (render, report, export, evaluate, annotators)
on an output damaged in each way a disk, a copy or a hand edit can damage it: one line
naming the file and what is wrong, exit 1 (never 3), nothing written."""

import json
import shutil
from pathlib import Path

import pytest
from fixtures import cli_aggregate

from rfengine.cli import main


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    """A small output with images, estimated trust (annotators.parquet) and targets."""
    root = tmp_path_factory.mktemp("hostile-out")
    camp = root / "camp"
    assert main(["simulate", "--images", "3", "--out", str(camp), "--per-image", "4"]) == 0
    out = root / "out"
    cli_aggregate(camp / "images.jsonl", [camp / "responses.jsonl"], out, "--weights", "estimate")
    return out


def _first(folder: Path, pattern: str) -> Path:
    return sorted(folder.glob(pattern))[0]


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _flip(path: Path, at: float = 0.5) -> None:
    data = bytearray(path.read_bytes())
    k = int(len(data) * at)
    data[k] ^= 0xFF
    path.write_bytes(bytes(data))


def _edit_json(path: Path, fn) -> None:
    path.write_text(json.dumps(fn(json.loads(path.read_text()))))


def _set(key, value):
    def edit(doc):
        doc[key] = value
        return doc

    return edit


def _shard_meta(out: Path, key: str, value: str) -> None:
    """Rewrite one metadata value of the first target shard (a valid safetensors file)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    path = _first(out / "targets", "*.safetensors")
    with safe_open(str(path), "pt") as fh:
        meta = dict(fh.metadata())
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    meta[key] = value
    save_file(tensors, str(path), meta)


def _shard_tensor(out: Path, name: str, fn) -> None:
    from safetensors import safe_open
    from safetensors.torch import save_file

    path = _first(out / "targets", "*.safetensors")
    with safe_open(str(path), "pt") as fh:
        meta = dict(fh.metadata())
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    tensors[name] = fn(tensors[name]).contiguous()
    save_file(tensors, str(path), meta)


#: (name, damage, which commands it concerns)
DAMAGE = {
    "manifest not json": (lambda o: (o / "manifest.json").write_text("{nope"), "all"),
    "manifest a list": (lambda o: (o / "manifest.json").write_text("[1, 2]"), "all"),
    "manifest empty object": (lambda o: (o / "manifest.json").write_text("{}"), "all"),
    "manifest config missing": (
        lambda o: _edit_json(o / "manifest.json", _set("config", None)),
        "all",
    ),
    "manifest config bad preset": (
        lambda o: _edit_json(
            o / "manifest.json", lambda d: {**d, "config": {**d["config"], "preset": "x"}}
        ),
        "all",
    ),
    "manifest truncated": (lambda o: _truncate(o / "manifest.json"), "all"),
    "state.json empty object": (lambda o: (o / "dataset" / "state.json").write_text("{}"), "ds"),
    "state.json not json": (lambda o: (o / "dataset" / "state.json").write_text("{"), "ds"),
    "dataset_info not json": (
        lambda o: (o / "dataset" / "dataset_info.json").write_text("nope"),
        "ds",
    ),
    "arrow file truncated": (lambda o: _truncate(_first(o / "dataset", "*.arrow")), "ds"),
    "arrow file emptied": (lambda o: _first(o / "dataset", "*.arrow").write_bytes(b""), "ds"),
    "arrow file removed": (lambda o: _first(o / "dataset", "*.arrow").unlink(), "ds"),
    "dataset folder a file": (
        lambda o: (shutil.rmtree(o / "dataset"), (o / "dataset").write_text("x")),
        "ds",
    ),
    "index not json": (lambda o: (o / "targets" / "index.json").write_text("{"), "targets"),
    "index empty object": (lambda o: (o / "targets" / "index.json").write_text("{}"), "targets"),
    "index shards not a list": (
        lambda o: _edit_json(o / "targets" / "index.json", _set("shards", "x")),
        "targets",
    ),
    "index names a path out": (
        lambda o: _edit_json(
            o / "targets" / "index.json", _set("shards", [{"file": "../../etc/passwd"}])
        ),
        "targets",
    ),
    "index names a missing shard": (
        lambda o: _edit_json(o / "targets" / "index.json", _set("shards", [{"file": "no.st"}])),
        "targets",
    ),
    "shard truncated": (lambda o: _truncate(_first(o / "targets", "*.safetensors")), "targets"),
    "shard header flipped": (
        lambda o: _flip(_first(o / "targets", "*.safetensors"), 0.0),
        "targets",
    ),
    "shard garbage": (
        lambda o: _first(o / "targets", "*.safetensors").write_bytes(b"garbage" * 20),
        "targets",
    ),
    "shard ids not a list": (lambda o: _shard_meta(o, "image_ids", '"sim-0000"'), "targets"),
    "shard ids not json": (lambda o: _shard_meta(o, "image_ids", "[sim"), "targets"),
    "shard criteria missing": (lambda o: _shard_meta(o, "criteria", "null"), "targets"),
    "shard too few rows": (lambda o: _shard_tensor(o, "scores_norm", lambda t: t[:-1]), "targets"),
    "shard offsets past the end": (
        lambda o: _shard_tensor(o, "word_offsets", lambda t: t * 2 + 1),
        "targets",
    ),
    "annotators truncated": (lambda o: _truncate(o / "annotators.parquet"), "annotators"),
    "annotators garbage": (
        lambda o: (o / "annotators.parquet").write_bytes(b"PAR1xx"),
        "annotators",
    ),
}

COMMANDS = {
    "render": lambda o, t: ["render", str(o), "--out", str(t / "panels")],
    "report": lambda o, t: ["report", str(o), "--html", str(t / "r.html")],
    "export": lambda o, t: ["export", str(o), "--format", "richhf", "--out", str(t / "x")],
    "evaluate": lambda o, t: ["evaluate", "--target", str(o), "--pred", str(t / "pred")],
    "annotators": lambda o, t: ["annotators", str(o)],
}
#: the commands that read each part of an output
READS = {
    "all": ("render", "report", "export", "evaluate", "annotators"),
    "ds": ("render", "report", "export"),
    "targets": ("export", "evaluate"),
    "annotators": ("annotators", "report"),
}
CASES = [(d, c) for d, (_, part) in DAMAGE.items() for c in READS[part]]


def _prediction(out: Path, folder: Path) -> None:
    """A well-formed prediction file for ``evaluate`` (the damage is in the output)."""
    import torch
    from safetensors.torch import save_file

    folder.mkdir()
    save_file(
        {"scores_norm": torch.zeros(1, 3)},
        str(folder / "p.safetensors"),
        {"image_ids": '["sim-0000"]'},
    )


@pytest.mark.parametrize(("damage", "command"), CASES, ids=[f"{c}: {d}" for d, c in CASES])
def test_a_damaged_output_is_one_line(good, tmp_path, capsys, damage, command):
    out = tmp_path / "out"
    shutil.copytree(good, out)
    DAMAGE[damage][0](out)
    _prediction(out, tmp_path / "pred")
    before = sorted(p.name for p in tmp_path.iterdir())
    code = main(
        [*COMMANDS[command](out, tmp_path), "--invalid", "exclude"]
        if command == "evaluate"
        else COMMANDS[command](out, tmp_path)
    )
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 1, err
    assert len(lines) == 1 and lines[0].startswith("rfengine: error: ") and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


def test_the_undamaged_output_passes_every_command(good, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(good, out)
    _prediction(out, tmp_path / "pred")
    for command, args in COMMANDS.items():
        extra = ["--invalid", "exclude"] if command == "evaluate" else []
        assert main([*args(out, tmp_path), *extra]) == 0, (command, capsys.readouterr().err)
