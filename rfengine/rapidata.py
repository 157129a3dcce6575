"""Annotation front-end on Rapidata: launch, track and fetch a rich-feedback campaign.

A thin adapter over rapidata 3.x's jobs API (``client.job``, ``client.audience``), behind
the optional extra ``pip install 'rfengine[rapidata]'``; the rest of rfengine never imports
it. The seed's setup, in two stages:

1. style, coherence, alignment: classification jobs, five ordered options shown unshuffled
   (coherence asked as error severity, as in the seed; the prompt as context for
   alignment); words: a select-words job on ``prompt + " [No_Mistake]"`` for English
   speakers;
2. ``next-stage``: locate jobs ("tap to select") for the images rated below a threshold on
   coherence or alignment in stage 1 (the prompt as context for alignment).

A campaign file (JSON) records the images table, the config, and each job's definition,
job and audience ids and images, so that ``status``, ``next-stage`` and ``fetch`` work from
another process or machine. Credentials come only through rapidata's own mechanisms
(``RAPIDATA_CLIENT_ID`` / ``RAPIDATA_CLIENT_SECRET``, ``~/.config/rapidata/credentials.json``
or its browser login); nothing secret is written to the campaign file, logs or errors.
Results keys read for locate (``location``) and select-words (``selectedWords``) are those
of ``rfengine.ingest.rapidata``, the one place to change if the service's differ.
"""

from __future__ import annotations

import json
import os
import sys
from copy import deepcopy
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from rfengine.aggregate import aggregate
from rfengine.errors import InputError
from rfengine.ingest import Images, read_images
from rfengine.ingest.rapidata import CoherenceScale, import_rapidata

FORMAT = "rfengine-campaign/1"
STAGE_ONE = ("style", "coherence", "alignment", "words")
STAGE_TWO = ("coherence_points", "alignment_points")

#: The seed's jobs (../shared/seed): instructions, options, validation sets and audiences.
SEED_CONFIG: dict[str, Any] = {
    "threshold": 3.0,
    "jobs": {
        "style": {
            "kind": "classification",
            "name": "Style",
            "instruction": "How visually appealing is the image? Does it exhibit a pleasing "
            "aesthetic? 5 is the most appealing and 1 the least.",
            "answer_options": [
                "1: Not at all",
                "2: A little",
                "3: Moderately",
                "4: Very appealing",
                "5: Extremely appealing",
            ],
            "context": None,
            "responses_per_datapoint": 20,
            "validation_set_id": None,
            "audience": {"id": "global"},
        },
        "coherence": {
            "kind": "classification",
            "name": "Coherence",
            "instruction": "How many errors does the image have? Look for 'AI artifacts' such "
            "as implausible elements or distorted objects and limbs. 5 is the most errors.",
            "answer_options": [
                "1: No errors",
                "2: A few minor errors",
                "3: Some errors",
                "4: Many errors",
                "5: Severe errors",
            ],
            "context": None,
            "responses_per_datapoint": 20,
            "validation_set_id": None,
            "audience": {"id": "global"},
        },
        "alignment": {
            "kind": "classification",
            "name": "Alignment",
            "instruction": "How well does the image match the description?",
            "answer_options": [
                "1: Not at all",
                "2: A little",
                "3: Moderately",
                "4: Very well",
                "5: Perfectly",
            ],
            "context": "prompt",
            "responses_per_datapoint": 20,
            "validation_set_id": "676199a5ef7af86285630ea6",
            "audience": {"id": "global"},
        },
        "words": {
            "kind": "select_words",
            "name": "Select misaligned words",
            "instruction": "The image is based on the text below. Select mistakes, i.e., words "
            "that are not aligned with the image.",
            "answer_options": None,
            "context": None,
            "responses_per_datapoint": 10,
            "validation_set_id": "6761a86eef7af86285630ea8",
            "audience": {"name": "English speakers (rfengine)", "languages": ["en"]},
        },
        "coherence_points": {
            "kind": "locate",
            "name": "Coherence heatmap",
            "instruction": "Which part of the image has errors, artifacts or distorted "
            "objects? Tap to select.",
            "answer_options": None,
            "context": None,
            "responses_per_datapoint": 10,
            "validation_set_id": None,
            "audience": {"id": "global"},
        },
        "alignment_points": {
            "kind": "locate",
            "name": "Alignment heatmap",
            "instruction": "What part of the image does not match with the description? "
            "Tap to select.",
            "answer_options": None,
            "context": "prompt",
            "responses_per_datapoint": 10,
            "validation_set_id": "67689e58026456ec851f51f8",
            "audience": {"id": "global"},
        },
    },
}


def load_config(path: str | Path | None) -> dict[str, Any]:
    """The seed's config, with the fields a JSON file gives replacing the defaults."""
    config = deepcopy(SEED_CONFIG)
    if path is None:
        return config
    try:
        user = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read the campaign config: {exc}") from None
    unknown = set(user) - {"threshold", "jobs"}
    unknown |= set(user.get("jobs", {})) - set(config["jobs"])
    if unknown:
        raise InputError(f"{path}: unknown keys {sorted(unknown)}")
    for task, fields in user.get("jobs", {}).items():
        bad = set(fields) - set(config["jobs"][task])
        if bad:
            raise InputError(f"{path}: jobs.{task}: unknown fields {sorted(bad)}")
        config["jobs"][task].update(fields)
    if "threshold" in user:
        config["threshold"] = float(user["threshold"])
    return config


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
        "sentences": [p + " [No_Mistake]" for p in prompts]
        if job["kind"] == "select_words"
        else None,
        "responses_per_datapoint": job["responses_per_datapoint"],
        "audience": audience,
        "validation_set_id": job["validation_set_id"],
    }


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


class Campaign:
    """The campaign file: images table, config, stage and jobs; saved atomically."""

    def __init__(self, path: Path, state: dict[str, Any]):
        self.path, self.state = path, state
        self._images: Images | None = None

    @classmethod
    def load(cls, path: str | Path) -> Campaign:
        path = Path(path)
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: cannot read the campaign file: {exc}") from None
        if state.get("format") != FORMAT:
            raise InputError(f"{path}: not an rfengine campaign file")
        return cls(path, state)

    @property
    def images(self) -> Images:
        if self._images is None:
            self._images = read_images(self.state["images"])
        return self._images

    def save(self) -> None:
        tmp = self.path.with_name(f".{self.path.name}.partial")
        tmp.write_text(json.dumps(self.state, indent=2) + "\n")
        tmp.replace(self.path)


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
        sentences = [p + " [No_Mistake]" for p in prompts]
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
    for task, criterion in (("coherence_points", "coherence"), ("alignment_points", "alignment")):
        rows = np.flatnonzero(scores[criterion].score < threshold).tolist()  # nulls are NaN
        plans.append(dict(plan_job(task, config, images, rows), stage=2))
        if rows:
            rec = _create(client, task, config, images, rows)
            campaign.state["jobs"].append(dict(rec, stage=2))
    campaign.state["stage"] = 2
    campaign.state["threshold_used"] = threshold
    campaign.save()
    return plans


def print_json(rows: list[dict[str, Any]]) -> None:
    """One JSON object per line on stdout."""
    for row in rows:
        sys.stdout.write(json.dumps(row) + "\n")
