"""The calls to the Rapidata service (rapidata 3.x jobs API), behind the optional extra."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from rfengine.campaign.config import FORMAT, STAGE_ONE, STAGE_TWO, load_config
from rfengine.campaign.plan import _datapoints, plan_job
from rfengine.campaign.state import Campaign
from rfengine.errors import InputError
from rfengine.ingest import Images, read_images
from rfengine.ingest.rapidata import CoherenceScale, import_rapidata
from rfengine.pipeline import aggregate
from rfengine.schema import NO_MISTAKE, POINT_TASKS


def require_rapidata() -> Any:
    """Import rapidata (telemetry export off unless asked for), or say how to install it."""
    os.environ.setdefault("RAPIDATA_DISABLE_OTLP", "1")
    os.environ.setdefault("RAPIDATA_AGENT_HINT", "0")
    try:
        import rapidata
    except ImportError:
        raise InputError(
            "this needs the Rapidata client: pip install 'rfengine[rapidata]'"
        ) from None
    return rapidata


def make_client() -> Any:
    """A RapidataClient, credentials from rapidata's environment variables or credentials file."""
    return require_rapidata().RapidataClient()


def _audience(client: Any, spec: dict[str, Any]) -> Any:
    if "id" in spec:
        return client.audience.get_audience_by_id(spec["id"])
    rapidata = require_rapidata()
    filters = [rapidata.LanguageFilter(spec["languages"])] if spec.get("languages") else []
    return client.audience.create_audience(name=spec["name"], filters=filters)


def _create(
    client: Any, task: str, config: dict[str, Any], images: Images, rows: list[int]
) -> dict:
    """Create one job definition, set its validation set, assign it to its audience."""
    rapidata = require_rapidata()
    job = config["jobs"][task]
    datapoints = _datapoints(images, rows)
    prompts = [images.prompts[k] for k in rows]
    contexts = prompts if job["context"] == "prompt" else None
    common = {
        "name": job["name"],
        "instruction": job["instruction"],
        "datapoints": datapoints,
        "responses_per_datapoint": job["responses_per_datapoint"],
    }
    if job["kind"] == "classification":
        definition = client.job.create_classification_job_definition(
            **common,
            answer_options=job["answer_options"],
            contexts=contexts,
            settings=[rapidata.NoShuffleSetting()],
        )
    elif job["kind"] == "locate":
        definition = client.job.create_locate_job_definition(**common, contexts=contexts)
    elif job["kind"] == "select_words":
        sentences = [f"{p} {NO_MISTAKE}" for p in prompts]
        definition = client.job.create_select_words_job_definition(**common, sentences=sentences)
    else:
        raise InputError(f"jobs.{task}: unknown kind {job['kind']!r}")
    if job["validation_set_id"]:
        definition.validation_set_id = job["validation_set_id"]
        definition.save()
    audience = _audience(client, job["audience"])
    assigned = audience.assign_job(definition)
    return {
        "task": task,
        "definition_id": str(definition.id),
        "job_id": str(assigned.id),
        "audience_id": str(audience.id),
        "image_ids": [images.ids[k] for k in rows],
    }


def launch(
    images_path: str | Path,
    out: str | Path,
    config: dict[str, Any] | None = None,
    *,
    dry_run: bool = False,
    client: Any = None,
) -> list[dict[str, Any]]:
    """Launch stage one (or, with ``dry_run``, only plan all six jobs); returns the plans.

    The dry run needs no credentials and no network: stage-two jobs are planned on every
    image (an upper bound; ``next-stage`` picks the poorly rated ones).
    """
    config = config or load_config(None)
    images = read_images(images_path)
    rows = list(range(len(images)))
    plans = [dict(plan_job(t, config, images, rows), stage=1) for t in STAGE_ONE]
    if dry_run:
        return plans + [dict(plan_job(t, config, images, rows), stage=2) for t in STAGE_TWO]
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists: a campaign file is written once")
    _datapoints(images, rows)  # check before creating anything
    client = client or make_client()
    state = {
        "format": FORMAT,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "images": str(Path(images_path).resolve()),
        "config": config,
        "stage": 1,
        "jobs": [],
    }
    campaign = Campaign(out, state)
    for task in STAGE_ONE:
        state["jobs"].append(dict(_create(client, task, config, images, rows), stage=1))
        campaign.save()  # a partial launch is recorded as far as it got
    return plans


def status(campaign: Campaign, client: Any = None) -> list[dict[str, Any]]:
    """Each job's state as the service reports it."""
    client = client or make_client()
    out = []
    for rec in campaign.state["jobs"]:
        job = client.job.get_job_by_id(rec["job_id"])
        out.append(
            {
                "task": rec["task"],
                "stage": rec["stage"],
                "job_id": rec["job_id"],
                "images": len(rec["image_ids"]),
                "status": job.get_status(),
            }
        )
    return out


def _results(client: Any, rec: dict[str, Any], folder: Path) -> Path:
    """Download a job's results JSON (blocks until the job completes) into ``folder``."""
    job = client.job.get_job_by_id(rec["job_id"])
    doc = dict(job.get_results())
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{rec['task']}-{''.join(c for c in rec['job_id'] if c.isalnum())}.json"
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(json.dumps(doc, sort_keys=True))
    tmp.replace(path)
    return path


def _responses(
    campaign: Campaign,
    client: Any,
    records: list[dict[str, Any]],
    out: Path,
    images: Images,
    coherence_scale: CoherenceScale = "severity",
) -> dict[str, Any]:
    """Download the results of ``records`` (kept beside the campaign file) and convert them
    into a responses file ``out`` through the importer."""
    folder = campaign.path.with_name(campaign.path.stem + "-results")
    jobs = [(rec["task"], _results(client, rec, folder)) for rec in records]
    return import_rapidata(images, jobs, out, coherence_scale)


def fetch(
    campaign: Campaign,
    out: str | Path,
    client: Any = None,
    coherence_scale: CoherenceScale = "severity",
) -> dict[str, Any]:
    """Download every job's results and write the responses in the engine's format. The
    same results give the same file."""
    images = read_images(campaign.state["images"], require_files=False)  # names only
    jobs = campaign.state["jobs"]
    return _responses(campaign, client or make_client(), jobs, Path(out), images, coherence_scale)


def next_stage(
    campaign: Campaign, client: Any = None, threshold: float | None = None
) -> list[dict[str, Any]]:
    """Launch the locate jobs for images rated below ``threshold`` in stage one."""
    if campaign.state["stage"] != 1:
        raise InputError(f"{campaign.path}: stage two was launched already")
    client = client or make_client()
    config = campaign.state["config"]
    threshold = config["threshold"] if threshold is None else threshold
    stage_one = [r for r in campaign.state["jobs"] if r["task"] in ("coherence", "alignment")]
    responses = campaign.path.with_name(campaign.path.stem + "-stage1.jsonl")
    images = campaign.images
    _responses(campaign, client, stage_one, responses, images)
    scores = aggregate(images, responses, device="cpu").scores
    plans = []
    for points_task in POINT_TASKS:
        task, criterion = points_task.label, points_task.heatmap_kind
        rows = np.flatnonzero(scores[criterion].score < threshold).tolist()  # nulls are NaN
        plans.append(dict(plan_job(task, config, images, rows), stage=2))
        if rows:
            rec = _create(client, task, config, images, rows)
            campaign.state["jobs"].append(dict(rec, stage=2))
    campaign.state["stage"] = 2
    campaign.state["threshold_used"] = threshold
    campaign.save()
    return plans
