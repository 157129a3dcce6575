"""A top-up round's requests from a ``plan-more`` plan, for every front-end (no torch)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from rfengine.adaptive.plan import read_plan
from rfengine.errors import InputError


def top_up_requests(campaign: Any, plan: str | Path) -> tuple[dict[str, dict[str, int]], dict]:
    """A plan's requests for a campaign: ``{task: {image_id: more}}`` (rows with ``more > 0``)
    and the round's record (the plan's path and SHA-256, to recognise a repeat). An image the
    campaign does not hold is an error naming it."""
    table, _ = read_plan(plan)
    ids, tasks = table["image_id"].to_pylist(), table["task"].to_pylist()
    more = table["more"].to_pylist()
    known = set(campaign.images.ids)
    out: dict[str, dict[str, int]] = {}
    for image_id, task, m in zip(ids, tasks, more, strict=True):
        if m <= 0:
            continue
        if image_id not in known:
            raise InputError(f"{plan}: image {image_id!r} is not in the campaign's images table")
        out.setdefault(task, {})[image_id] = int(m)
    digest = hashlib.sha256(Path(plan).read_bytes()).hexdigest()
    return out, {"plan": str(Path(plan).resolve()), "plan_sha256": digest}


def plan_campaign(plan: str | Path, given: str | Path | None) -> Path:
    """The campaign file of a top-up: ``given``, else the one ``plan-more --campaign``
    recorded in the plan (Parquet plans)."""
    if given is not None:
        return Path(given)
    _, meta = read_plan(plan)
    if not meta.get("campaign"):
        raise InputError(
            f"{plan}: the plan names no campaign (plan-more --campaign records one in a "
            ".parquet plan); pass --campaign CAMPAIGN"
        )
    return Path(meta["campaign"])


__all__ = ["plan_campaign", "top_up_requests"]
