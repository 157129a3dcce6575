"""Publish: an aggregation output as a Hub-ready dataset folder — Parquet shards under
``data/`` (``shards``), a dataset card generated from the output (``card``) with pictures
drawn by ``render`` (``figures``) — and, on request, its upload (``hub``).

Imports ``render``, ``store`` and the ground modules; never ``run`` or the front-ends.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rfengine.errors import InputError
from rfengine.publish.shards import MAX_SHARD_SIZE, parse_size, write_shards

__all__ = ["MAX_SHARD_SIZE", "publish_output"]


def publish_output(
    out: str | Path,
    dest: str | Path,
    *,
    max_shard_size: str | int = MAX_SHARD_SIZE,
    license: str = "other",
    pretty_name: str | None = None,
    examples: int = 3,
    campaign: str | Path | None = None,
    repo_id: str | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write ``dest``: ``data/train-0000N-of-0000M.parquet`` (images embedded), ``README.md``
    (the card) and ``figures/``. Built beside ``dest`` and renamed into place; an existing
    ``dest`` is refused unless ``overwrite``, and then replaced only if ``publish`` wrote it.
    ``campaign`` (a campaign file) adds how the feedback was collected; ``repo_id`` is the
    Hub repository the card's example loads (default: DEST's name). Returns a summary."""
    from huggingface_hub import DatasetCard

    from rfengine.publish.card import card_body, card_data
    from rfengine.publish.figures import write_figures
    from rfengine.store.load import load_dataset, load_manifest
    from rfengine.store.owned import new_folder

    size = parse_size(max_shard_size)
    manifest = load_manifest(out)
    ds = load_dataset(out)
    state = None if campaign is None else _campaign(Path(campaign))
    name = pretty_name or Path(out).resolve().name
    with new_folder(dest, "publish", overwrite) as tmp, _quiet_datasets():
        shards = write_shards(ds.with_format(None), tmp, size)
        figures = write_figures(ds, Path(out), tmp, examples)
        data = card_data(ds, name, license, shards)
        body = card_body(ds, manifest, (name, repo_id or Path(dest).name), figures, state)
        DatasetCard(f"---\n{data.to_yaml()}\n---\n\n{body}").save(tmp / "README.md")
    return {"dest": str(dest), "rows": len(ds), "shards": [p.name for p in shards], **figures}


@contextmanager
def _quiet_datasets() -> Iterator[None]:
    """``datasets``' own progress bars off while shards are written (one per shard and step)."""
    from datasets.utils import logging as ds_logging

    was = ds_logging.is_progress_bar_enabled()
    ds_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            ds_logging.enable_progress_bar()


def _campaign(path: Path) -> dict[str, Any]:
    """The campaign file's front-end and stage-two threshold (read as JSON: ``publish`` sits
    beside the front-ends, not above them)."""
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read the campaign file: {exc}") from None
    if not isinstance(state, dict) or not str(state.get("format", "")).startswith(
        "rfengine-campaign/"
    ):
        raise InputError(f"{path}: not an rfengine campaign file")
    return state
