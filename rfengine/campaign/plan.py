"""What launching a job creates: datapoints, sentences and the dry-run's record."""

from __future__ import annotations

from typing import Any

from rfengine.errors import InputError
from rfengine.ingest import Images
from rfengine.schema import NO_MISTAKE


def _datapoints(images: Images, rows: list[int]) -> list[str]:
    paths = [images.paths[k] for k in rows]
    missing = [images.ids[k] for k, p in zip(rows, paths, strict=True) if p is None]
    if missing:
        raise InputError(
            f"{images.source}: images without a path cannot be uploaded: {missing[:10]}"
        )
    names = [p.name for p in paths]
    if len(set(names)) != len(names):
        raise InputError(
            f"{images.source}: image file names must be unique, since results name images by "
            "file name (originalFileName)"
        )
    return [str(p) for p in paths]


def plan_job(task: str, config: dict[str, Any], images: Images, rows: list[int]) -> dict[str, Any]:
    """What launching ``task`` on images ``rows`` will create (the dry-run's record)."""
    job = config["jobs"][task]
    prompts = [images.prompts[k] for k in rows]
    audience = job["audience"]
    return {
        "task": task,
        "kind": job["kind"],
        "name": job["name"],
        "instruction": job["instruction"],
        "answer_options": job["answer_options"],
        "datapoints": len(rows),
        "contexts": len(rows) if job["context"] == "prompt" else None,
        "sentences": [f"{p} {NO_MISTAKE}" for p in prompts]
        if job["kind"] == "select_words"
        else None,
        "responses_per_datapoint": job["responses_per_datapoint"],
        "audience": audience,
        "validation_set_id": job["validation_set_id"],
    }
