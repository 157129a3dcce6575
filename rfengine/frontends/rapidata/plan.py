"""What launching a job creates: datapoints, contexts, sentences, settings, audience, and
the dry-run's record. Pure: nothing here talks to the service or needs rapidata."""

from __future__ import annotations

from typing import Any

from rfengine.errors import InputError
from rfengine.frontends.config import normalise_prompt
from rfengine.ingest import Images
from rfengine.schema import MAX_POINTS, NO_MISTAKE

#: longer prompts are shortened by an LLM when used as a context on the service
MAX_CONTEXT_CHARS = 400


def job_settings(job: dict[str, Any]) -> dict[str, Any]:
    """The rapidata settings a job carries, by class name, with their values.

    Classification options stay in order (``NoShuffleSetting``); locate jobs take at most
    ``MAX_POINTS`` clicks (``LocateMaxPointsSetting``); ``original_language_only`` keeps
    the prompt untranslated (``OriginalLanguageOnlySetting``).
    """
    out: dict[str, Any] = {}
    if job["kind"] == "classification":
        out["NoShuffleSetting"] = True
    if job["kind"] == "locate":
        out["LocateMaxPointsSetting"] = MAX_POINTS
    if job.get("original_language_only"):
        out["OriginalLanguageOnlySetting"] = True
    return out


def long_prompts(images: Images, rows: list[int]) -> list[str]:
    """One warning per image whose prompt the service would shorten as a context."""
    return [
        f"image {images.ids[k]!r}: prompt of {len(p)} characters; the service shortens "
        f"contexts over {MAX_CONTEXT_CHARS} with an LLM"
        for k in rows
        if len(p := normalise_prompt(images.prompts[k])) > MAX_CONTEXT_CHARS
    ]


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
    prompts = [normalise_prompt(images.prompts[k]) for k in rows]
    uses_prompt = job["context"] == "prompt" or job["kind"] == "select_words"
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
        "settings": job_settings(job),
        "audience": job["audience"],
        "validation_set_id": job["validation_set_id"],
        "warnings": long_prompts(images, rows) if uses_prompt else [],
    }
