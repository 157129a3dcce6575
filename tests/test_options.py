import pytest
import torch

from rfengine import AggregateOptions
from rfengine.cli import main
from rfengine.options import parse_bytes, parse_heatmap_size


def test_user_values_become_typed_options():
    opts = AggregateOptions.create(
        heatmap_size="512x256", dtype="float32", memory_budget="1GB", device="cpu"
    )
    assert opts.heatmap_size == (512, 256)
    assert opts.dtype is torch.float32 and opts.itemsize == 4
    assert opts.memory_budget == 2**30
    assert opts.device == torch.device("cpu")
    assert AggregateOptions.create(device="cpu").heatmap_size is None  # native


def test_json_round_trip_is_the_manifest_record():
    opts = AggregateOptions.create(
        preset="default", heatmap_size=(64, 48), dtype="float16", weights="uniform", device="cpu"
    )
    record = opts.to_json()
    assert record == {
        "preset": "default",
        "heatmap_size": "64x48",
        "device": "cpu",
        "dtype": "float16",
        "on_error": "fail",
        "weights": "uniform",
        "prior": "trust",
        "reliability": False,
        "memory_budget": 512 * 2**20,
        "outputs": ["dataset", "targets"],
        "dataset_heatmaps": True,
    }
    assert AggregateOptions.from_json(record) == opts


def test_options_are_frozen():
    opts = AggregateOptions.create(device="cpu")
    with pytest.raises(AttributeError):
        opts.preset = "rapidata-2025"  # type: ignore[misc]


def test_overrides_apply_over_a_base():
    base = AggregateOptions.create(heatmap_size="32x32", device="cpu")
    opts = AggregateOptions.create(base, weights="uniform")
    assert (opts.heatmap_size, opts.weights) == ((32, 32), "uniform")


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ({"preset": "fancy"}, r"preset must be one of 'default', 'rapidata-2025', got 'fancy'"),
        ({"dtype": "float64"}, r"dtype must be one of"),
        ({"weights": "learned"}, r"weights must be one of"),
        ({"prior": "estimate"}, r"prior must be one of 'trust', 'uniform'"),
        ({"reliability": "yes"}, r"reliability must be True or False"),
        ({"on_error": "ignore"}, r"on_error must be one of"),
        ({"heatmap_size": "512"}, r"heatmap size must be 'native' or HxW"),
        ({"heatmap_size": "0x5"}, r"must be positive"),
        ({"memory_budget": "0"}, r"memory budget must be positive"),
        ({"memory_budget": "1e400"}, r"finite size"),
        ({"preset": "rapidata-2025", "heatmap_size": "64x64"}, r"native resolution"),
    ],
)
def test_bad_values_are_refused(args, match):
    with pytest.raises(ValueError, match=match):
        AggregateOptions.create(device="cpu", **args)


def test_unknown_option_is_a_type_error():
    with pytest.raises(TypeError, match="unknown option"):
        AggregateOptions.create(device="cpu", heatmap="64x64")


def test_parsers():
    assert parse_heatmap_size("native") is None
    assert parse_heatmap_size(" 3 X 4 ") == (3, 4)
    assert parse_bytes("2GiB") == 2 * 2**30
    assert parse_bytes("1.5k") == 1536


@pytest.mark.parametrize(
    ("flag", "value"), [("--heatmap-size", "big"), ("--memory-budget", "lots")]
)
def test_cli_bad_option_values_are_usage_errors(flag, value, tmp_path, capsys):
    argv = ["aggregate", "--images", "i.jsonl", "--responses", "r.jsonl", "--out", "o"]
    with pytest.raises(SystemExit) as exc:
        main([*argv, flag, value])
    assert exc.value.code == 2
    assert f"argument {flag}" in capsys.readouterr().err
