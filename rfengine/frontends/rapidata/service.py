"""The calls to the Rapidata service (rapidata 3.x jobs API), behind the optional extra."""

from __future__ import annotations

import json
import os
import re
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from rfengine.errors import InputError
from rfengine.frontends.config import FORMAT, STAGE_ONE, STAGE_TWO, load_config
from rfengine.frontends.rapidata.importer import CoherenceScale, import_rapidata
from rfengine.frontends.rapidata.plan import _datapoints, job_settings, normalise_prompt, plan_job
from rfengine.frontends.stages import poorly_rated
from rfengine.frontends.state import Campaign, images_record
from rfengine.frontends.writer import check_responses_target
from rfengine.ingest import Images, read_images
from rfengine.ingest.sources import ImageColumns
from rfengine.schema import NO_MISTAKE, POINT_TASKS
from rfengine.store.owned import write_atomic

#: the oldest rapidata with what launch needs: a job definition's validation_set_id and
#: save() (3.27.1), and filtered audiences (3.21)
MIN_RAPIDATA = (3, 27, 1)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


def require_rapidata() -> Any:
    """Import rapidata (telemetry export off unless asked for), checking its version; else
    an InputError that says what is installed and what to install."""
    os.environ.setdefault("RAPIDATA_DISABLE_OTLP", "1")
    os.environ.setdefault("RAPIDATA_AGENT_HINT", "0")
    want = "pip install 'rfengine[rapidata]' (rapidata>=3.27.1,<4)"
    try:
        installed = metadata.version("rapidata")
    except metadata.PackageNotFoundError:
        raise InputError(f"this needs the Rapidata client: {want}") from None
    if not MIN_RAPIDATA <= _version(installed) < (4,):
        raise InputError(
            f"rapidata {installed} is installed; the campaign needs >= 3.27.1, < 4 (job "
            f"definitions' validation sets and save() arrived in 3.27.1): {want}"
        )
    try:
        import rapidata
    except ImportError as exc:
        raise InputError(f"rapidata {installed} cannot be imported ({exc}): {want}") from None
    return rapidata


def make_client() -> Any:
    """A RapidataClient, credentials from rapidata's environment variables or credentials file."""
    return require_rapidata().RapidataClient()


def _settings(job: dict[str, Any]) -> list[Any]:
    """The job's settings (``plan.job_settings``) as rapidata objects."""
    rapidata = require_rapidata()
    made = []
    for name, value in job_settings(job).items():
        cls = getattr(rapidata, name)
        made.append(cls() if value is True else cls(value))
    return made


def _audience(client: Any, spec: dict[str, Any]) -> Any:
    """``{"id": ...}``: that audience; ``{"base": ..., "filters": {"language": [...]}}``: a
    filtered view of the base audience's graduated pool (no new audience, no recruiting)."""
    if "id" in spec:
        return client.audience.get_audience_by_id(spec["id"])
    rapidata = require_rapidata()
    base = client.audience.get_audience_by_id(spec["base"])
    return base.filter([rapidata.LanguageFilter(spec["filters"]["language"])])


def define_job(
    client: Any, task: str, config: dict[str, Any], images: Images, rows: list[int]
) -> dict[str, Any]:
    """Create one job definition with its settings and validation set, saved: the record
    of what was created (``definition_id``, ``revision``)."""
    job = config["jobs"][task]
    datapoints = _datapoints(images, rows)
    prompts = [normalise_prompt(images.prompts[k]) for k in rows]
    contexts = prompts if job["context"] == "prompt" else None
    common = {
        "name": job["name"],
        "instruction": job["instruction"],
        "datapoints": datapoints,
        "responses_per_datapoint": job["responses_per_datapoint"],
        "settings": _settings(job),
    }
    if job["kind"] == "classification":
        definition = client.job.create_classification_job_definition(
            **common, answer_options=job["answer_options"], contexts=contexts
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
    return {
        "task": task,
        "definition_id": str(definition.id),
        "revision": definition.revision,
        "image_ids": [images.ids[k] for k in rows],
    }


def _assign(client: Any, rec: dict[str, Any], config: dict[str, Any], campaign: Campaign) -> None:
    """Assign a defined job to its audience, recording each thing created as it is."""
    spec = config["jobs"][rec["task"]]["audience"]
    if "audience_id" not in rec:
        rec["audience_id"] = str(_audience(client, spec).id)
        campaign.save()
    audience = client.audience.get_audience_by_id(rec["audience_id"])
    definition = client.job.get_job_definition_by_id(rec["definition_id"], rec["revision"])
    rec["job_id"] = str(audience.assign_job(definition).id)
    campaign.save()


def _run(client: Any, campaign: Campaign, tasks: list[str], images: Images) -> None:
    """Define every missing job of ``tasks`` (saved and recorded one by one), then assign
    every unassigned one: a repeat after an interruption creates nothing twice."""
    state = campaign.state
    config = state["config"]
    by_task = {r["task"]: r for r in state["jobs"] if r["stage"] == state["stage"]}
    index = {im: k for k, im in enumerate(images.ids)}
    for task in tasks:
        rec = by_task.get(task)
        if rec is None:
            rows = [index[i] for i in state["planned"][task]]
            rec = dict(define_job(client, task, config, images, rows), stage=state["stage"])
            state["jobs"].append(rec)
            campaign.save()
            by_task[task] = rec
    for task in tasks:
        if "job_id" not in by_task[task]:
            _assign(client, by_task[task], config, campaign)


def launch(
    images_path: str | Path | None,
    out: str | Path | None,
    config: dict[str, Any] | None = None,
    *,
    dry_run: bool = False,
    resume: bool = False,
    client: Any = None,
    columns: ImageColumns | None = None,
) -> list[dict[str, Any]]:
    """Launch stage one (or, with ``dry_run``, only plan all six jobs); returns the plans.

    The dry run needs no credentials and no network: stage-two jobs are planned on every
    image (an upper bound; ``next-stage`` picks the poorly rated ones). A launch first
    creates and saves every job definition, then assigns them, writing the campaign file
    after each step that creates something; ``resume=True`` continues an interrupted
    launch from that file (``out``) without creating anything twice.
    """
    out = Path(out) if out is not None else None
    if resume:
        campaign = Campaign.load(out)
        config, images = campaign.state["config"], campaign.images
    else:
        config = config or load_config(None)
        images = read_images(images_path, columns=columns)
    rows = list(range(len(images)))
    plans = [dict(plan_job(t, config, images, rows), stage=1) for t in STAGE_ONE]
    if dry_run:
        return plans + [dict(plan_job(t, config, images, rows), stage=2) for t in STAGE_TWO]
    if out is None:
        raise InputError("launch needs the campaign file to write (--out)")
    if not resume:
        if out.exists():
            raise FileExistsError(
                f"{out} exists: a campaign file is written once (--resume continues it)"
            )
        _datapoints(images, rows)  # check before creating anything
        state = {
            "format": FORMAT,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **images_record(images_path, columns),
            "config": config,
            "stage": 1,
            "planned": {t: list(images.ids) for t in STAGE_ONE},
            "jobs": [],
        }
        campaign = Campaign(out, state)
        campaign.save()
    elif campaign.state["stage"] != 1:
        raise InputError(f"{out}: stage one was launched in full already")
    _run(client or make_client(), campaign, list(STAGE_ONE), images)
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
    write_atomic(path, json.dumps(doc, sort_keys=True))
    return path


def _responses(
    campaign: Campaign,
    client: Any,
    records: list[dict[str, Any]],
    out: Path,
    images: Images,
    *,
    coherence_scale: CoherenceScale = "severity",
    overwrite: bool = False,
) -> dict[str, Any]:
    """Download the results of ``records`` (kept beside the campaign file) and convert them
    into a responses file ``out`` through the importer."""
    check_responses_target(out, overwrite)  # before any download
    folder = campaign.path.with_name(campaign.path.stem + "-results")
    jobs = [(rec["task"], _results(client, rec, folder)) for rec in records]
    return import_rapidata(images, jobs, out, coherence_scale, overwrite=overwrite)


def fetch(
    campaign: Campaign,
    out: str | Path,
    client: Any = None,
    coherence_scale: CoherenceScale = "severity",
    *,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Download every job's results and write the responses in the engine's format. The
    same results give the same file; an existing ``out`` is replaced only with
    ``overwrite``, and only if rfengine wrote it (``check_responses_target``)."""
    images = campaign.read_images(require_files=False)  # names only
    jobs = campaign.state["jobs"]
    client = client or make_client()
    return _responses(
        campaign,
        client,
        jobs,
        Path(out),
        images,
        coherence_scale=coherence_scale,
        overwrite=overwrite,
    )


def next_stage(
    campaign: Campaign, client: Any = None, threshold: float | None = None
) -> list[dict[str, Any]]:
    """Launch the locate jobs for images rated below ``threshold`` in stage one."""
    if campaign.state["stage"] != 1:
        if all("job_id" in r for r in campaign.state["jobs"]):
            raise InputError(f"{campaign.path}: stage two was launched already")
        # an interrupted stage-two launch: finish it, creating nothing twice
        _run(client or make_client(), campaign, list(campaign.state["planned"]), campaign.images)
        return []
    client = client or make_client()
    config = campaign.state["config"]
    threshold = config["threshold"] if threshold is None else threshold
    stage_one = [r for r in campaign.state["jobs"] if r["task"] in ("coherence", "alignment")]
    responses = campaign.path.with_name(campaign.path.stem + "-stage1.jsonl")
    images = campaign.images
    index = {im: k for k, im in enumerate(images.ids)}
    responses.unlink(missing_ok=True)  # this campaign's own intermediate file
    _responses(campaign, client, stage_one, responses, images)
    planned = poorly_rated(images, responses, threshold)
    plans = [
        dict(
            plan_job(t.label, config, images, [index[i] for i in planned.get(t.label, [])]), stage=2
        )
        for t in POINT_TASKS
    ]
    campaign.state.update(stage=2, threshold_used=threshold, planned=planned)
    campaign.save()
    _run(client, campaign, list(planned), images)
    return plans


def plan_top_up(requests: dict[str, dict[str, int]]) -> list[dict[str, Any]]:
    """The jobs of a top-up: per task, one job per number of responses still needed, on the
    images that need that many (Rapidata asks a job's datapoints equally often)."""
    groups = []
    for task in (*STAGE_ONE, *STAGE_TWO):
        by_more: dict[int, list[str]] = {}
        for image_id, more in requests.get(task, {}).items():
            by_more.setdefault(more, []).append(image_id)
        groups += [
            {"task": task, "more": m, "image_ids": sorted(ids)}
            for m, ids in sorted(by_more.items())
        ]
    return groups


def top_up(
    campaign: Campaign, plan: str | Path, client: Any = None, *, dry_run: bool = False
) -> list[dict[str, Any]]:
    """Create (and assign) the jobs a plan asks for, recorded in the campaign file like the
    others (with their ``round`` and ``more``); ``fetch`` then returns every round. A repeat
    of the same plan finishes an interrupted round and creates nothing twice."""
    from rfengine.frontends.topup import top_up_requests

    requests, record = top_up_requests(campaign, plan)
    unknown = set(requests) - set(STAGE_ONE) - set(STAGE_TWO)
    if unknown:
        raise InputError(
            f"{plan}: Rapidata campaigns have no task {', '.join(sorted(unknown))} "
            "(regions are collected on Label Studio)"
        )
    groups = plan_top_up(requests)
    if dry_run:
        return groups
    state = campaign.state
    rounds = state.setdefault("top_ups", [])
    done = next((r for r in rounds if r["plan_sha256"] == record["plan_sha256"]), None)
    if done is None:
        done = {"round": len(rounds) + 1, **record, "responses": 0}
        done["responses"] = sum(g["more"] * len(g["image_ids"]) for g in groups)
        rounds.append(done)
        campaign.save()
    client = client or make_client()
    images, config = campaign.images, state["config"]
    index = {im: k for k, im in enumerate(images.ids)}
    made = {(r.get("round"), r["task"], r.get("more")) for r in state["jobs"]}
    for g in groups:
        if (done["round"], g["task"], g["more"]) in made:
            continue
        job = {**config["jobs"][g["task"]], "responses_per_datapoint": g["more"]}
        cfg = {**config, "jobs": {**config["jobs"], g["task"]: job}}
        rows = [index[i] for i in g["image_ids"]]
        rec = define_job(client, g["task"], cfg, images, rows)
        state["jobs"].append(
            {**rec, "stage": state["stage"], "round": done["round"], "more": g["more"]}
        )
        campaign.save()
    for rec in state["jobs"]:
        if rec.get("round") == done["round"] and "job_id" not in rec:
            _assign(client, rec, config, campaign)
    return [r for r in state["jobs"] if r.get("round") == done["round"]]
