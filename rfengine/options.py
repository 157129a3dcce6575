"""The options of one aggregation run: parsed and checked once, typed, frozen.

``AggregateOptions.create`` takes what a user writes (``heatmap_size="512x512"``,
``memory_budget="1GB"``, ``dtype="float16"``) and returns typed values (``(512, 512)``,
bytes, ``torch.float16``); below the entry points (CLI, ``aggregate``,
``aggregate_to_disk``) nothing sees a raw option string. ``to_json``/``from_json`` give the
manifest's ``config`` record and read it back for ``--resume``.

>>> opts = AggregateOptions.create(heatmap_size="64x48", dtype="float32", device="cpu")
>>> opts.heatmap_size, opts.dtype, opts.itemsize
((64, 48), torch.float32, 4)
>>> AggregateOptions.from_json(opts.to_json()) == opts
True
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, Literal, TypedDict, get_args

if TYPE_CHECKING:  # torch, numpy and pyarrow load when an option needs them, not for --help
    import numpy as np
    import pyarrow as pa
    import torch

#: the heatmap definitions (``kernels.splat_heatmaps``' ``preset``; tests/test_layout.py
#: checks that the two lists agree)
Preset = Literal["default", "rapidata-2025"]


OnError = Literal["fail", "skip"]
Weights = Literal["trust", "uniform", "estimate"]
Prior = Literal["trust", "uniform"]
DTypeName = Literal["float16", "float32"]

#: heatmap dtypes, by the names the options take
DTYPES: tuple[DTypeName, ...] = get_args(DTypeName)


def torch_dtype(name: DTypeName) -> torch.dtype:
    """The torch dtype of a heatmap dtype name."""
    import torch

    return {"float16": torch.float16, "float32": torch.float32}[name]


def _cpu() -> torch.device:
    import torch

    return torch.device("cpu")


def _float16() -> torch.dtype:
    import torch

    return torch.float16


DEFAULT_BUDGET = 512 * 2**20
#: what a run can write: the Hugging Face dataset and the safetensors targets
OUTPUTS = ("dataset", "targets")
#: output grids up to this many pixels per heatmap
MAX_GRID_PIXELS = 1 << 28


def parse_heatmap_size(text: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """``"native"`` or None -> None; ``"HxW"`` (e.g. ``"512x512"``) or ``(H, W)`` -> ``(H, W)``.

    >>> parse_heatmap_size("512x256"), parse_heatmap_size("native")
    ((512, 256), None)
    """
    if text is None or text == "native":
        return None
    if isinstance(text, tuple):
        h, w = text
    else:
        m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(text))
        if not m:
            raise ValueError(f"heatmap size must be 'native' or HxW such as 512x512, got {text!r}")
        h, w = int(m[1]), int(m[2])
    if h <= 0 or w <= 0 or h * w > MAX_GRID_PIXELS:
        raise ValueError(f"heatmap size must be positive and at most 2^28 pixels, got {h}x{w}")
    return int(h), int(w)


def parse_outputs(value: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """``"dataset,targets"`` (or a sequence) -> the outputs in ``OUTPUTS`` order.

    >>> parse_outputs("targets")
    ('targets',)
    """
    names = value.split(",") if isinstance(value, str) else list(value)
    names = [n.strip() for n in names if n.strip()]
    bad = sorted(set(names) - set(OUTPUTS))
    if bad or not names:
        raise ValueError(f"outputs must be one or both of {', '.join(OUTPUTS)}, got {value!r}")
    return tuple(o for o in OUTPUTS if o in names)


def format_heatmap_size(size: tuple[int, int] | None) -> str:
    """The inverse of ``parse_heatmap_size``: ``"native"`` or ``"HxW"``."""
    return "native" if size is None else f"{size[0]}x{size[1]}"


def parse_bytes(text: str | int) -> int:
    """``"512MB"``, ``"2GiB"``, ``"1e9"`` or an int -> bytes (powers of 1024 for units).

    >>> parse_bytes("512MB"), parse_bytes(4096)
    (536870912, 4096)
    """
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*([\d.eE+]+)\s*([kKmMgGtT]i?[bB]?|[bB])?\s*", text)
    if not m:
        raise ValueError(f"expected a size such as 512MB or 2GiB, got {text!r}")
    scale = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
    try:
        value = float(m[1]) * scale[(m[2] or "").lower()[:1]]
    except ValueError:
        raise ValueError(f"expected a size such as 512MB or 2GiB, got {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"expected a finite size such as 512MB, got {text!r}")
    return int(value)


def resolve_device(device: str | torch.device) -> torch.device:
    """``auto`` -> cuda when available, else cpu; ``cuda`` without a GPU is an error."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but torch sees no CUDA device")
    return dev


def _choice(name: str, value: Any, allowed: Any) -> None:
    options = get_args(allowed)
    if value not in options:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}, got {value!r}")


EngineName = Literal["local", "ray"]


@dataclass(frozen=True)
class Engine:
    """Where a streaming run executes; never changes its results (not in the manifest's
    ``config``, nor in ``--resume``'s key).

    Attributes:
        name: ``"local"`` (this process, a writer thread) or ``"ray"`` (Ray tasks).
        address: a Ray cluster to join (``ray start --head``'s address, ``"auto"``, or
            ``ray://host:10001``); None starts a local Ray runtime on this machine.
        gpus_per_task: GPUs each partition's aggregation task requests on Ray (0: CPU).
    """

    name: EngineName = "local"
    address: str | None = None
    gpus_per_task: float = 0.0

    @classmethod
    def create(
        cls, name: str = "local", address: str | None = None, gpus_per_task: float = 0.0
    ) -> Engine:
        """A checked engine (ValueError naming the bad value)."""
        _choice("engine", name, EngineName)
        if name != "ray" and (address is not None or gpus_per_task):
            raise ValueError("--ray-address and --gpus-per-task need --engine ray")
        if not (isinstance(gpus_per_task, (int, float)) and 0 <= gpus_per_task <= 1024):
            raise ValueError(f"gpus per task must be a number in [0, 1024], got {gpus_per_task!r}")
        return cls(name, address, float(gpus_per_task))


class OptionArgs(TypedDict, total=False):
    """The user-facing spelling of ``AggregateOptions`` (keyword arguments of the API)."""

    preset: Preset
    heatmap_size: str | tuple[int, int] | None
    device: str | torch.device
    dtype: DTypeName | torch.dtype
    on_error: OnError
    weights: Weights
    prior: Prior
    reliability: bool
    memory_budget: str | int
    outputs: str | tuple[str, ...]
    dataset_heatmaps: bool
    region_sigma: float


@dataclass(frozen=True)
class AggregateOptions:
    """What one aggregation computes and how; see the README's CLI table for each option.

    Attributes:
        preset: the heatmap definition (``"default"`` or ``"rapidata-2025"``).
        heatmap_size: ``(H, W)`` of every heatmap, or None for each image's native size.
        device: where the kernels run.
        dtype: heatmap dtype in the outputs (``torch.float16`` or ``torch.float32``).
        on_error: ``"fail"`` on the first bad row, or ``"skip"`` bad rows into rejections.
        weights: ``"trust"`` (each response's weight), ``"uniform"`` (all 1) or
            ``"estimate"`` (each annotator's trust estimated from the data, see
            ``rfengine.aggregation.trust``).
        prior: where ``"estimate"`` starts: ``"trust"`` (the given weights) or
            ``"uniform"`` (1.0 for everyone).
        reliability: also compute each heatmap kind's split-half reliability per image.
        memory_budget: bytes for a partition's work; sets partition and batch sizes.
        outputs: which of ``OUTPUTS`` to write (a heatmap is computed once and written
            once per format).
        dataset_heatmaps: whether the dataset carries the heatmap columns (False: train
            from the targets, and write the maps once).
        region_sigma: the Gaussian that softens region heatmaps' edges, as a fraction of
            the output's smaller side (0, the default: none; the map is then exactly the
            trusted share of annotators who marked each pixel).
    """

    preset: Preset = "default"
    heatmap_size: tuple[int, int] | None = None
    device: torch.device = field(default_factory=_cpu)
    dtype: torch.dtype = field(default_factory=_float16)
    on_error: OnError = "fail"
    weights: Weights = "trust"
    prior: Prior = "trust"
    reliability: bool = False
    memory_budget: int = DEFAULT_BUDGET
    outputs: tuple[str, ...] = OUTPUTS
    dataset_heatmaps: bool = True
    region_sigma: float = 0.0

    @classmethod
    def create(cls, base: AggregateOptions | None = None, **args: Any) -> AggregateOptions:
        """Options from user values (``OptionArgs``), over ``base`` or the defaults.

        A device of ``"auto"`` (the default here) takes CUDA when torch sees a GPU.
        """
        unknown = set(args) - set(OptionArgs.__annotations__)
        if unknown:
            raise TypeError(f"unknown option(s): {', '.join(sorted(unknown))}")
        if base is None:
            args.setdefault("device", "auto")
            base = cls()
        preset = args.get("preset", base.preset)
        _choice("preset", preset, Preset)
        on_error = args.get("on_error", base.on_error)
        _choice("on_error", on_error, OnError)
        weights = args.get("weights", base.weights)
        _choice("weights", weights, Weights)
        prior = args.get("prior", base.prior)
        _choice("prior", prior, Prior)
        reliability = args.get("reliability", base.reliability)
        if not isinstance(reliability, bool):
            raise ValueError(f"reliability must be True or False, got {reliability!r}")
        import torch

        dtype = args.get("dtype", base.dtype)
        if not isinstance(dtype, torch.dtype):
            _choice("dtype", dtype, DTypeName)
            dtype = torch_dtype(dtype)
        elif dtype not in (torch.float16, torch.float32):
            raise ValueError(f"dtype must be torch.float16 or torch.float32, got {dtype}")
        size = (
            parse_heatmap_size(args["heatmap_size"])
            if "heatmap_size" in args
            else base.heatmap_size
        )
        if preset == "rapidata-2025" and size is not None:
            raise ValueError(
                "preset 'rapidata-2025' is defined at native resolution; use --heatmap-size native"
            )
        budget = parse_bytes(args.get("memory_budget", base.memory_budget))
        if budget <= 0:
            raise ValueError(f"memory budget must be positive, got {budget} bytes")
        outputs = parse_outputs(args.get("outputs", base.outputs))
        dataset_heatmaps = args.get("dataset_heatmaps", base.dataset_heatmaps)
        if not isinstance(dataset_heatmaps, bool):
            raise ValueError(f"dataset_heatmaps must be True or False, got {dataset_heatmaps!r}")
        region_sigma = args.get("region_sigma", base.region_sigma)
        if (
            isinstance(region_sigma, bool)
            or not isinstance(region_sigma, (int, float))
            or not 0 <= region_sigma <= 0.25
        ):
            raise ValueError(f"region sigma must be a number in [0, 0.25], got {region_sigma!r}")
        return replace(
            base,
            region_sigma=float(region_sigma),
            outputs=outputs,
            dataset_heatmaps=dataset_heatmaps,
            preset=preset,
            heatmap_size=size,
            device=resolve_device(args.get("device", base.device)),
            dtype=dtype,
            on_error=on_error,
            weights=weights,
            prior=prior,
            reliability=reliability,
            memory_budget=budget,
        )

    @property
    def dtype_name(self) -> DTypeName:
        """``"float16"`` or ``"float32"``."""
        return "float16" if self.dtype.itemsize == 2 else "float32"

    @property
    def itemsize(self) -> int:
        """Bytes per heatmap value."""
        return self.dtype.itemsize

    @property
    def numpy_dtype(self) -> type[np.floating]:
        import numpy as np

        return np.float16 if self.dtype_name == "float16" else np.float32

    @property
    def arrow_type(self) -> pa.DataType:
        import pyarrow as pa

        return pa.float16() if self.dtype_name == "float16" else pa.float32()

    def to_json(self) -> dict[str, Any]:
        """The manifest's ``config`` record (plain JSON values)."""
        return {
            "preset": self.preset,
            "heatmap_size": format_heatmap_size(self.heatmap_size),
            "device": str(self.device),
            "dtype": self.dtype_name,
            "on_error": self.on_error,
            "weights": self.weights,
            "prior": self.prior,
            "reliability": self.reliability,
            "memory_budget": self.memory_budget,
            "outputs": list(self.outputs),
            "dataset_heatmaps": self.dataset_heatmaps,
            # only when set: the records (and resume keys) of runs without it stay as they were
            **({"region_sigma": self.region_sigma} if self.region_sigma else {}),
        }

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> AggregateOptions:
        """Options from a ``to_json`` record (a manifest's ``config``)."""
        known = {f.name for f in fields(cls)} - {"device"}
        args = {k: v for k, v in record.items() if k in known}
        if "outputs" in args:
            args["outputs"] = tuple(args["outputs"])
        # the device is where it ran: recorded, not re-checked (a CUDA run's output loads
        # on a machine without a GPU)
        import torch

        return replace(cls.create(cls(), **args), device=torch.device(record["device"]))


__all__ = [
    "DEFAULT_BUDGET",
    "AggregateOptions",
    "Engine",
    "OptionArgs",
    "Preset",
    "Prior",
    "Weights",
    "format_heatmap_size",
    "parse_outputs",
    "parse_bytes",
    "parse_heatmap_size",
    "resolve_device",
]
