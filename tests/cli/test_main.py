import json

import pytest
from fixtures import make_campaign

from rfengine.cli import main


@pytest.fixture
def campaign(tmp_path):
    return make_campaign(tmp_path, n_images=6, seed=4)


def test_aggregate_end_to_end(campaign, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(
        [
            "aggregate",
            "--images",
            str(campaign.images_path),
            "--responses",
            str(campaign.responses_path),
            "--out",
            str(out),
            "--heatmap-size",
            "32x32",
        ]
    )
    assert rc == 0
    assert (out / "dataset" / "dataset_info.json").exists()
    assert (out / "targets" / "32x32-00000.safetensors").exists()
    assert "6 images" in capsys.readouterr().err


def test_quiet_prints_nothing(campaign, tmp_path, capfd):
    rc = main(
        [
            "aggregate",
            "--images",
            str(campaign.images_path),
            "--responses",
            str(campaign.responses_path),
            "--out",
            str(tmp_path / "o"),
            "--quiet",
        ]
    )
    assert rc == 0
    cap = capfd.readouterr()
    assert cap.err == "" and cap.out == ""


def test_bad_input_fails_with_location(campaign, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps({"image_id": "img000", "annotator_id": "x", "task": "style", "rating": 0}) + "\n"
    )
    out = tmp_path / "o"
    args = [
        "aggregate",
        "--images",
        str(campaign.images_path),
        "--responses",
        str(campaign.responses_path),
        str(bad),
        "--out",
        str(out),
        "--quiet",
    ]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert f"{bad}: line 1: field 'rating': rating must be an integer 1-5, got 0" in err
    assert "Traceback" not in err and not out.exists()
    assert main(args + ["--on-error", "skip"]) == 0
    rejected = [json.loads(x) for x in (out / "rejected.jsonl").read_text().splitlines()]
    assert len(rejected) == 1 and rejected[0]["field"] == "rating"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["rows_rejected"] == 1
    assert manifest["counts"]["rows_read"] == len(campaign.responses) + 1


def test_missing_file_is_a_clean_error(tmp_path, capsys):
    assert (
        main(
            [
                "aggregate",
                "--images",
                str(tmp_path / "nope.jsonl"),
                "--responses",
                "x.jsonl",
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 1
    )
    assert "no such file" in capsys.readouterr().err


def test_usage_error_exits_2():
    with pytest.raises(SystemExit) as e:
        main(["aggregate", "--preset", "nope"])
    assert e.value.code == 2


def _aggregate_args(campaign, out, *extra):
    return [
        "aggregate", "--images", str(campaign.images_path), "--responses",
        str(campaign.responses_path), "--out", str(out), "--quiet", *extra,
    ]  # fmt: skip


@pytest.mark.parametrize(
    "extra",
    [
        ["--memory-budget", "0"],
        ["--memory-budget", "1e400"],
        ["--memory-budget", "lots"],
        ["--heatmap-size", "512"],
        ["--preset", "rapidata-2025", "--heatmap-size", "64x64"],
        ["--preset", "fancy"],
    ],
)
def test_bad_option_values_are_usage_errors(campaign, tmp_path, capsys, extra):
    with pytest.raises(SystemExit) as exc:
        main(_aggregate_args(campaign, tmp_path / "o", *extra))
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "usage:" in err and "Traceback" not in err


def test_unwritable_output_is_one_line(campaign, tmp_path, capsys, monkeypatch):
    import rfengine.store.work as work

    def full(self, ready, overwrite):
        raise OSError(28, "No space left on device", str(self.out))

    monkeypatch.setattr(work.WorkDir, "publish", full)
    assert main(_aggregate_args(campaign, tmp_path / "o")) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith(f"rfengine: error: {tmp_path / 'o'}: No space left on device")
    assert "disk is full" in err[0] and not any("Traceback" in line for line in err)
    assert err[1:] == [  # a full disk can be resumed once there is room: the hint follows
        f"rfengine: the unfinished run is in {tmp_path / '.o.rfengine-work'}: rerun with "
        "--resume to continue it"
    ]


def test_a_bug_is_not_disguised_as_bad_input(campaign, tmp_path, capsys, monkeypatch):
    import rfengine.run.stages as partition

    def bug(*a, **k):
        raise ValueError("an internal invariant broke")

    monkeypatch.setattr(partition, "compute", bug)
    assert main(_aggregate_args(campaign, tmp_path / "o")) == 3
    err = capsys.readouterr().err
    assert "internal error: ValueError: an internal invariant broke" in err
    assert "--debug" in err and "Traceback" not in err
    with pytest.raises(ValueError, match="an internal invariant broke"):
        main(["--debug", *_aggregate_args(campaign, tmp_path / "o2")])


#: what a command loads only when its work needs it
HEAVY = ("torch", "pyarrow", "datasets", "pandas", "ray", "rapidata", "PIL", "scipy")
PROBE = """
import sys
from rfengine.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print("loaded:", ",".join(m for m in {heavy!r} if m in sys.modules))
"""


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["--version"],
        ["aggregate", "--help"],
        ["campaign", "launch", "--help"],
        ["evaluate", "--help"],
        ["aggregate", "--images"],  # a usage error
        ["render", "--bogus"],
    ],
    ids=" ".join,
)
def test_help_and_usage_errors_load_nothing_heavy(argv):
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY), *argv],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.stdout.splitlines()[-1] == "loaded: ", out.stdout


def test_an_unknown_flag_prints_the_subcommands_usage(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["render", "out/", "--bogus"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: rfengine render") and "unrecognized arguments: --bogus" in err
