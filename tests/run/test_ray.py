"""``engine="ray"`` on a local Ray runtime against the local engine: the same bytes, the
same errors, the same rejections, resume across engines, and nothing published on Ctrl-C."""

import hashlib
import json

import pytest
from fixtures import interrupt_at_partition, make_rows, write_csv, write_jsonl, write_parquet

from rfengine import InputError, aggregate_to_disk
from rfengine.cli import main

ray = pytest.importorskip(
    "ray", reason="the ray extra is not installed (pip install 'rfengine[ray]')"
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def ray_runtime():
    """One local Ray runtime for the module (2 CPUs, as CI has), shut down after it."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray")
    images, rows = make_rows(36, seed=21)
    rows.append(dict(rows[5]))  # a duplicate: rejected by the aggregation stage
    k = len(rows) // 3
    files = [
        write_jsonl(root / "a.jsonl", rows[:k]),
        write_parquet(root / "b.parquet", rows[k : 2 * k], row_group_size=41),
        write_csv(root / "c.csv", rows[2 * k :]),
    ]
    return root, write_jsonl(root / "images.jsonl", images), files


def _digests(out):
    """sha256 of every file of an output but the manifest, and the manifest without ``run``."""
    files = {
        str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name != "manifest.json"
    }
    manifest = json.loads((out / "manifest.json").read_text())
    manifest.pop("run")
    return files, manifest


@pytest.mark.parametrize(
    "args",
    [
        {"heatmap_size": "24x24", "on_error": "skip"},
        {"weights": "estimate", "reliability": True, "on_error": "skip"},
        {"preset": "rapidata-2025", "on_error": "skip"},
    ],
    ids=["default", "estimate", "rapidata-2025"],
)
def test_ray_output_is_bit_identical_to_local(inputs, tmp_path, args):
    root, ip, files = inputs
    local = tmp_path / "local"
    on_ray = tmp_path / "ray"
    m1 = aggregate_to_disk(ip, files, local, memory_budget="200KB", **args)
    m2 = aggregate_to_disk(ip, files, on_ray, memory_budget="200KB", engine="ray", **args)
    assert m1["partitions"]["count"] > 3 and m2["run"]["engine"] == "ray"
    assert _digests(local) == _digests(on_ray)
    assert (local / "rejected.jsonl").read_bytes()  # the duplicate, in both


def test_ray_errors_name_the_same_file_line_and_field(inputs, tmp_path):
    root, ip, files = inputs
    bad = root / "bad.jsonl"
    lines = files[0].read_text().splitlines()
    row = json.loads(lines[3])
    row["weight"] = -2
    bad.write_text("\n".join(lines[:3] + [json.dumps(row)] + lines[4:]) + "\n")
    messages = []
    for engine in ("local", "ray"):
        with pytest.raises(InputError) as err:
            aggregate_to_disk(ip, [files[1], bad], tmp_path / engine, engine=engine)
        messages.append(str(err.value))
        assert not (tmp_path / engine).exists()
    assert messages[0] == messages[1]
    assert "bad.jsonl" in messages[0] and "line 4" in messages[0] and "weight" in messages[0]


def test_resume_on_ray_reuses_a_local_run(inputs, tmp_path, monkeypatch):
    root, ip, files = inputs
    out = tmp_path / "out"
    interrupt_at_partition(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        aggregate_to_disk(
            ip, files, out, memory_budget="200KB", heatmap_size="24x24", on_error="skip"
        )
    state = json.loads((tmp_path / ".out.rfengine-work" / "progress.json").read_text())
    assert sorted(state["parts"]) == ["0", "1"]
    monkeypatch.undo()
    import rfengine.run.ray as distributed

    real_task, seen = distributed.aggregate_task, tmp_path / "seen"
    seen.mkdir()

    def recording(spec, opts, trust, task, *pieces):  # in a Ray worker: a file per partition
        (seen / str(task.p)).touch()
        return real_task(spec, opts, trust, task, *pieces)

    monkeypatch.setattr(distributed, "aggregate_task", recording)
    aggregate_to_disk(
        ip, files, out, memory_budget="200KB", heatmap_size="24x24", on_error="skip",
        resume=True, engine="ray",
    )  # fmt: skip
    assert min(int(f.name) for f in seen.iterdir()) == 2  # partitions 0 and 1 were reused
    ref = tmp_path / "ref"
    aggregate_to_disk(ip, files, ref, memory_budget="200KB", heatmap_size="24x24", on_error="skip")
    assert _digests(out) == _digests(ref)


def test_interrupted_ray_run_publishes_nothing(inputs, tmp_path, monkeypatch):
    root, ip, files = inputs
    out = tmp_path / "out"
    calls = []
    real_wait = ray.wait

    def wait(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C while partitions run
        return real_wait(*a, **k)

    monkeypatch.setattr(ray, "wait", wait)
    with pytest.raises(KeyboardInterrupt):
        aggregate_to_disk(ip, files, out, memory_budget="200KB", engine="ray", on_error="skip")
    assert not out.exists()
    state = json.loads((tmp_path / ".out.rfengine-work" / "progress.json").read_text())
    assert len(state["parts"]) == 1  # the one finished before the interrupt is kept


def test_cli_engine_flags(inputs, tmp_path, capsys):
    root, ip, files = inputs
    args = ["aggregate", "--images", str(ip), "--responses", *map(str, files), "--quiet"]
    assert main([*args, "--out", str(tmp_path / "o"), "--engine", "ray", "--on-error", "skip"]) == 0
    with pytest.raises(SystemExit) as exit_:
        main([*args, "--out", str(tmp_path / "p"), "--gpus-per-task", "1"])
    assert exit_.value.code == 2
    assert "need --engine ray" in capsys.readouterr().err
