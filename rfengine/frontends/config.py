"""The seed's campaign as config data, and reading a user's config file over it."""

from __future__ import annotations

import json
from copy import deepcopy
from pathlib import Path
from typing import Any

from rfengine.errors import InputError

FORMAT = "rfengine-campaign/1"
STAGE_ONE = ("style", "coherence", "alignment", "words")
STAGE_TWO = ("coherence_points", "alignment_points")

#: The seed's jobs (../shared/seed): instructions, options, validation sets and audiences.
#: An audience is ``{"id": ...}`` (an existing audience, e.g. the ready "global" pool) or
#: ``{"base": ..., "filters": {"language": [...]}}`` (a filtered view of one: no new
#: recruiting). ``original_language_only`` keeps the prompt untranslated where translation
#: would change what is judged (alignment, its areas, and the words).
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
            "original_language_only": False,
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
            "original_language_only": False,
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
            "original_language_only": True,
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
            "original_language_only": True,
            "audience": {"base": "global", "filters": {"language": ["en"]}},
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
            "original_language_only": False,
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
            "original_language_only": True,
            "audience": {"id": "global"},
        },
    },
}


AUDIENCE_FILTERS = ("language",)


def normalise_prompt(prompt: str) -> str:
    """Whitespace collapsed to single spaces: a front-end shows (or re-splits) this text, and
    the importers read word indices into ``prompt.split()``, so both see these words."""
    return " ".join(prompt.split())


def check_audience(spec: Any, where: str) -> None:
    """An audience spec is ``{"id": str}`` or ``{"base": str, "filters": {"language": [..]}}``."""
    ok = isinstance(spec, dict) and (
        (set(spec) == {"id"} and isinstance(spec["id"], str) and spec["id"])
        or (
            set(spec) == {"base", "filters"}
            and isinstance(spec["base"], str)
            and isinstance(spec["filters"], dict)
            and spec["filters"]
            and set(spec["filters"]) <= set(AUDIENCE_FILTERS)
            and all(
                isinstance(v, list) and v and all(isinstance(x, str) for x in v)
                for v in spec["filters"].values()
            )
        )
    )
    if not ok:
        raise InputError(
            f'{where}: expected {{"id": "..."}} or {{"base": "global", "filters": '
            f'{{"language": ["en"]}}}}, got {spec!r}'
        )


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
        check_audience(config["jobs"][task]["audience"], f"{path}: jobs.{task}.audience")
    if "threshold" in user:
        config["threshold"] = float(user["threshold"])
    return config
