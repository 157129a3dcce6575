"""The campaign on a Label Studio server: launch, status, next-stage, fetch.

Stage one is one project (the three ratings and the words); stage two one project with both
point tasks, on every image rated below the threshold on coherence or alignment (the rule
of ``frontends.stages``, the same as Rapidata's). Each project asks for the config's
``responses_per_datapoint`` annotations per task (Label Studio's overlap). Images reach the
server as local files (the server's ``LOCAL_FILES_DOCUMENT_ROOT``; a Local Files storage is
created for the images' folder) or as URLs under a prefix (cloud storage, a web server).
The campaign file records the server's URL, never the key.
"""

from __future__ import annotations

import json
import os
import urllib.parse
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rfengine.errors import InputError
from rfengine.frontends.config import FORMAT, load_config
from rfengine.frontends.labelstudio import labeling
from rfengine.frontends.labelstudio.client import LabelStudio
from rfengine.frontends.labelstudio.importer import Controls, import_labelstudio
from rfengine.frontends.state import Campaign, images_record
from rfengine.frontends.writer import CoherenceScale, check_responses_target
from rfengine.ingest import Images, read_images
from rfengine.ingest.columns import OnError
from rfengine.ingest.sources import ImageColumns
from rfengine.schema import POINT_TASKS
from rfengine.store.owned import write_atomic

STAGES = {1: ("style", "coherence", "alignment", "words"), 2: tuple(t.label for t in POINT_TASKS)}
#: tasks imported per request
CHUNK = 500


def image_urls(images: Images, rows: list[int], via: dict[str, Any]) -> list[str]:
    """Each image's URL on the server. ``via``: ``{"mode": "local-files", "root": ROOT}``
    (``/data/local-files/?d=<path under ROOT>``; every image under a sub-folder of ROOT) or
    ``{"mode": "url", "prefix": URL}`` (URL + the path relative to the images table)."""
    paths = [images.paths[k] for k in rows]
    if any(p is None for p in paths):
        missing = [images.ids[k] for k, p in zip(rows, paths, strict=True) if p is None][:10]
        raise InputError(f"{images.source}: images without a path cannot be shown: {missing}")
    if via["mode"] == "url":
        src = Path(images.source).resolve()
        base = src if src.is_dir() else src.parent  # a dataset folder, or a table's folder
        return [
            via["prefix"] + urllib.parse.quote(p.resolve().relative_to(base).as_posix())
            for p in paths
        ]
    root = Path(via["root"]).resolve()
    rels = []
    for p in paths:
        try:
            rel = p.resolve().relative_to(root)
        except ValueError:
            raise InputError(
                f"{p}: not under the local files root {root} (the server's "
                "LOCAL_FILES_DOCUMENT_ROOT); move the images there or use --image-url-prefix"
            ) from None
        if len(rel.parts) < 2:
            raise InputError(
                f"{p}: Label Studio serves local files from a sub-folder of its "
                f"document root {root}, not the root itself"
            )
        rels.append(rel.as_posix())
    return ["/data/local-files/?" + urllib.parse.urlencode({"d": r}) for r in rels]


def _folder(via: dict[str, Any], urls: list[str]) -> str | None:
    """The Local Files storage's folder: the images' deepest common folder under the root."""
    if via["mode"] != "local-files":
        return None
    rels = [urllib.parse.parse_qs(urllib.parse.urlsplit(u).query)["d"][0] for u in urls]
    common = Path(os.path.commonpath([Path(r).parent.as_posix() for r in rels])).parts
    if not common:
        raise InputError(
            f"the images lie in several top folders of {via['root']}; Label "
            "Studio needs them under one sub-folder"
        )
    return str(Path(via["root"]).resolve().joinpath(*common))


def plan_project(stage: int, config: dict[str, Any], images: Images, rows: list[int]) -> dict:
    """What a stage's project will be (the dry-run's record)."""
    tasks = STAGES[stage]
    make = labeling.stage_one_config if stage == 1 else labeling.stage_two_config
    drawn = [labeling.REGION_OF[t] for t in tasks if stage == 2 and config.get("regions")]
    return {
        "stage": stage,
        "tasks": list(tasks) + drawn,
        "images": len(rows),
        "annotations_per_task": max(config["jobs"][t]["responses_per_datapoint"] for t in tasks),
        "label_config": make(config),
    }


def _create(ls: LabelStudio, campaign: Campaign, rec: dict[str, Any], urls: list[str]) -> None:
    """Create (or, after an interruption, finish) a stage's project: project, storage, tasks;
    the campaign file is saved after each, and tasks already on the server are not re-sent."""
    state = campaign.state
    if "project_id" not in rec:
        stage = rec["stage"]
        plan = plan_project(stage, state["config"], campaign.images, rec["rows"])
        title = f"rfengine {campaign.path.stem} stage {stage}"[:50]
        made = ls.create_project(title, plan["label_config"], f"rfengine campaign {stage=}")
        rec["project_id"] = made["id"]
        campaign.save()
        ls.patch(
            f"/api/projects/{made['id']}/",
            {
                "maximum_annotations": plan["annotations_per_task"],
                "overlap_cohort_percentage": 100,
            },
        )
    pid = rec["project_id"]
    folder = _folder(state["via"], urls)
    if folder is not None and "storage_id" not in rec:
        made = ls.post(
            "/api/storages/localfiles/",
            {"project": pid, "path": folder, "title": "rfengine images", "use_blob_urls": False},
        )
        rec["storage_id"] = made["id"]
        campaign.save()
    if not rec.get("imported"):
        have = _image_ids_on_server(ls, pid)
        todo = [k for k, im in enumerate(rec["image_ids"]) if im not in have]
        tasks = labeling.task_data(
            campaign.images,
            [rec["rows"][k] for k in todo],
            [urls[k] for k in todo],
            rec["stage"],
            regions=rec["stage"] == 2 and bool(state["config"].get("regions")),
        )
        for lo in range(0, len(tasks), CHUNK):
            ls.import_tasks(pid, tasks[lo : lo + CHUNK])
        rec["imported"] = True
        campaign.save()


def _image_ids_on_server(ls: LabelStudio, project_id: int) -> set[str]:
    return {str(t["data"].get("image_id")) for t in _server_tasks(ls, project_id)}


def _stage(ls: LabelStudio, campaign: Campaign, stage: int, image_ids: list[str]) -> None:
    index = {im: k for k, im in enumerate(campaign.images.ids)}
    recs = [r for r in campaign.state["projects"] if r["stage"] == stage]
    if recs:
        rec = recs[0]
    else:
        tasks = plan_project(stage, campaign.state["config"], campaign.images, [])["tasks"]
        rec = {"stage": stage, "tasks": tasks, "image_ids": image_ids}
        campaign.state["projects"].append(rec)
    rec["rows"] = [index[i] for i in rec["image_ids"]]
    urls = image_urls(campaign.images, rec["rows"], campaign.state["via"])
    try:
        _create(ls, campaign, rec, urls)
    finally:
        rec.pop("rows", None)
        campaign.save()


def launch(
    images_path: str | Path | None,
    out: str | Path,
    via: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    *,
    dry_run: bool = False,
    resume: bool = False,
    ls: LabelStudio | None = None,
    columns: ImageColumns | None = None,
    regions: str | None = None,
) -> list[dict[str, Any]]:
    """Create the stage-one project with its tasks (``dry_run``: plan both stages, no
    server); ``resume`` finishes an interrupted launch from the campaign file ``out``.
    ``regions`` (``"brush"`` or ``"polygon"``): stage two also asks for drawn regions
    (recorded in the campaign's config)."""
    out = Path(out) if out is not None else None
    if resume:
        campaign = Campaign.load(out)
        config, images = campaign.state["config"], campaign.images
    else:
        config = config or load_config(None)
        if regions:
            if regions not in labeling.REGION_TOOLS:
                raise InputError(f"--regions: expected brush or polygon, got {regions!r}")
            config = {**config, "regions": regions}
        images = read_images(images_path, columns=columns)
    rows = list(range(len(images)))
    plans = [plan_project(1, config, images, rows)]
    if dry_run:
        return plans + [plan_project(2, config, images, rows)]
    if not resume:
        if out.exists():
            raise FileExistsError(
                f"{out} exists: a campaign file is written once (--resume continues it)"
            )
        if via is None:
            raise InputError(
                "a Label Studio launch needs --local-files-root or "
                "--image-url-prefix (how the server reaches the images)"
            )
        image_urls(images, rows, via)  # check before creating anything
        ls = ls or LabelStudio.from_env()
        ls.get("/api/projects/?page_size=1")  # the server and key work: before any file
        campaign = Campaign(
            out,
            {
                "format": FORMAT,
                "frontend": "labelstudio",
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                **images_record(images_path, columns),
                "config": config,
                "server": ls.url,
                "via": via,
                "stage": 1,
                "projects": [],
            },
        )
        campaign.save()
    _stage(ls or _client(campaign), campaign, 1, list(images.ids))
    return plans


def _client(campaign: Campaign) -> LabelStudio:
    ls = LabelStudio.from_env()
    if ls.url != campaign.state["server"]:
        raise InputError(
            f"{campaign.path}: the campaign is on {campaign.state['server']}, "
            f"but LABEL_STUDIO_URL is {ls.url}"
        )
    return ls


def status(campaign: Campaign, ls: LabelStudio | None = None) -> list[dict[str, Any]]:
    """Each project's progress as the server reports it."""
    ls = ls or _client(campaign)
    out = []
    for rec in campaign.state["projects"]:
        p = ls.project(rec["project_id"])
        out.append(
            {
                "stage": rec["stage"],
                "tasks": rec["tasks"],
                "project_id": rec["project_id"],
                "url": f"{ls.url}/projects/{rec['project_id']}/data",
                "images": len(rec["image_ids"]),
                "annotations_per_task": p.get("maximum_annotations"),
                "tasks_with_annotations": p.get("num_tasks_with_annotations"),
                "annotations": p.get("total_annotations_number"),
                "skipped": p.get("skipped_annotations_number"),
            }
        )
    return out


def _export(ls: LabelStudio, campaign: Campaign, rec: dict[str, Any]) -> Path:
    """A project's export (all tasks), saved beside the campaign file."""
    folder = campaign.path.with_name(campaign.path.stem + "-results")
    folder.mkdir(parents=True, exist_ok=True)
    doc = ls.export(rec["project_id"])
    other = {t.get("project") for t in doc if isinstance(t, dict)} - {rec["project_id"], None}
    if other:
        raise InputError(f"project {rec['project_id']}'s export holds tasks of projects {other}")
    path = folder / f"stage{rec['stage']}-project{int(rec['project_id'])}.json"
    write_atomic(path, json.dumps(doc, sort_keys=True))
    return path


def fetch(
    campaign: Campaign,
    out: str | Path,
    ls: LabelStudio | None = None,
    coherence_scale: CoherenceScale = "severity",
    *,
    on_error: OnError = "fail",
    overwrite: bool = False,
) -> dict[str, Any]:
    """Export every project through the API and import them into one responses file."""
    check_responses_target(Path(out), overwrite)  # before any download
    ls = ls or _client(campaign)
    images = campaign.read_images(require_files=False)
    files = [_export(ls, campaign, rec) for rec in campaign.state["projects"]]
    return import_labelstudio(
        images, files, out, Controls(), coherence_scale, on_error=on_error, overwrite=overwrite
    )


def next_stage(
    campaign: Campaign, ls: LabelStudio | None = None, threshold: float | None = None
) -> list[dict[str, Any]]:
    """Create the stage-two project for the images rated below ``threshold`` on coherence or
    alignment in stage one; an interrupted one is finished, nothing created twice."""
    ls = ls or _client(campaign)
    state = campaign.state
    if state["stage"] == 2:
        if all(r.get("imported") for r in state["projects"]):
            raise InputError(f"{campaign.path}: stage two was launched already")
        _stage(ls, campaign, 2, [])
        return []
    from rfengine.frontends.stages import poorly_rated  # torch: only where stage one is scored

    threshold = state["config"]["threshold"] if threshold is None else threshold
    stage_one = [r for r in state["projects"] if r["stage"] == 1]
    responses = campaign.path.with_name(campaign.path.stem + "-stage1.jsonl")
    responses.unlink(missing_ok=True)  # this campaign's own intermediate file
    images = campaign.images
    files = [_export(ls, campaign, rec) for rec in stage_one]
    import_labelstudio(images, files, responses)
    planned = poorly_rated(images, responses, threshold)
    union = [im for im in images.ids if any(im in ids for ids in planned.values())]
    state.update(stage=2, threshold_used=threshold, planned=planned)
    campaign.save()
    plan = plan_project(2, state["config"], images, [images.ids.index(i) for i in union])
    if union:
        _stage(ls, campaign, 2, union)
    return [dict(plan, planned={t: len(v) for t, v in planned.items()})]


def _server_tasks(ls: LabelStudio, project_id: int) -> list[dict[str, Any]]:
    """Every task of a project: id, image_id, overlap and annotations so far."""
    out, page = [], 1
    while True:
        got = ls.get(f"/api/tasks/?project={int(project_id)}&page_size=1000&page={page}")
        tasks = got.get("tasks", []) if isinstance(got, dict) else []
        out += tasks
        if not tasks or len(out) >= got.get("total", 0):
            return out
        page += 1


def top_up(
    campaign: Campaign, plan: str | Path, ls: LabelStudio | None = None, *, dry_run: bool = False
) -> list[dict[str, Any]]:
    """Ask for a plan's responses on the campaign's own tasks: each Label Studio task whose
    image needs ``more`` (the most of its project's tasks, as one task asks them all) gets
    its overlap raised to its annotations so far plus that, and goes back into the labeling
    stream. Recorded per task in the campaign file, so a repeat of the plan raises nothing
    twice. Rows of tasks the campaign never asked (points of an image not in stage two) are
    counted as skipped."""
    from rfengine.frontends.topup import top_up_requests

    requests, record = top_up_requests(campaign, plan)
    state = campaign.state
    asked = set().union(*(r["tasks"] for r in state["projects"]))
    projects = []
    for rec in state["projects"]:
        here = set(rec["image_ids"])
        need: dict[str, int] = {}
        for task in rec["tasks"]:
            for image_id, m in requests.get(task, {}).items():
                if image_id in here:
                    need[image_id] = max(need.get(image_id, 0), m)
        projects.append((rec, need))
    placed = {(t, i) for rec, _ in projects for t in rec["tasks"] for i in rec["image_ids"]}
    skipped = sum(1 for t, r in requests.items() for i in r if (t, i) not in placed)
    summary = [
        {"project_id": rec["project_id"], "stage": rec["stage"], "images": len(need),
         "responses": sum(need.values()), "skipped_rows": skipped if k == 0 else 0,
         "unknown_tasks": sorted(set(requests) - asked) if k == 0 else []}
        for k, (rec, need) in enumerate(projects)
    ]  # fmt: skip
    if dry_run:
        return summary
    ls = ls or _client(campaign)
    rounds = state.setdefault("top_ups", [])
    done = next((r for r in rounds if r["plan_sha256"] == record["plan_sha256"]), None)
    if done is None:
        done = {"round": len(rounds) + 1, **record, "raised": {}}
        rounds.append(done)
        campaign.save()
    for (rec, need), line in zip(projects, summary, strict=True):
        raised = done["raised"].setdefault(str(rec["project_id"]), {})
        for task in _server_tasks(ls, rec["project_id"]):
            m = need.get(str(task["data"].get("image_id")), 0)
            if m <= 0 or str(task["id"]) in raised:
                continue
            have = int(task.get("total_annotations") or 0)
            overlap = max(int(task.get("overlap") or 0), have + m)
            ls.patch(f"/api/tasks/{int(task['id'])}/", {"overlap": overlap, "is_labeled": False})
            raised[str(task["id"])] = overlap
            if len(raised) % 100 == 0:
                campaign.save()
        campaign.save()
        line["tasks_raised"] = len(raised)
    return summary
