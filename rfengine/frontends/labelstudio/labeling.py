"""The labeling configs and task data a launch creates on Label Studio. Pure: no server.

Each control is named after its task (``style``, ``coherence``, ``alignment``, ``words``,
``coherence_points``, ``alignment_points``; ``no_mistake`` is the words task's explicit
"no mistake" choice); the image is ``$image`` and the prompt ``$prompt``, so that any export
of such a project imports without options.
"""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import quoteattr

from rfengine.frontends.config import normalise_prompt
from rfengine.ingest import Images
from rfengine.schema import MAX_POINTS

#: the words task's "no mistake" choice: its control name and its one value
NO_MISTAKE_CONTROL = "no_mistake"
NO_MISTAKE_CHOICE = "No mistake"
#: the label of a span over a wrong word, and of a point on a flawed area
MISTAKE_LABEL = "Mistake"
POINT_LABELS = {"coherence_points": "Error", "alignment_points": "Mismatch"}
POINT_COLOURS = {"coherence_points": "#e53935", "alignment_points": "#1e88e5"}
#: stage two's optional region controls (``config["regions"]``): the tag per drawing tool,
#: and each control's label, after the points task of the same criterion
REGION_TOOLS = {"brush": "BrushLabels", "polygon": "PolygonLabels"}
REGION_OF = {"coherence_points": "coherence_regions", "alignment_points": "alignment_regions"}
REGION_LABELS = {"coherence_regions": "Error area", "alignment_regions": "Mismatch area"}


def _header(text: str) -> str:
    return f'  <Header value={quoteattr(text)} size="5"/>\n'


def _rating(task: str, job: dict[str, Any]) -> str:
    options = " / ".join(job["answer_options"] or [])
    text = f"{job['name']}: {job['instruction']}" + (f" ({options})" if options else "")
    return (
        _header(text) + f'  <Rating name="{task}" toName="image" maxRating="5" icon="star" '
        'size="medium" required="true"/>\n'
    )


def stage_one_config(config: dict[str, Any]) -> str:
    """The stage-one project's labeling config: the image, style and coherence, then the
    prompt with the ratings that read it (alignment) and the words task."""
    jobs = config["jobs"]
    words = jobs["words"]
    parts = [
        "<View>\n",
        '  <Image name="image" value="$image" zoom="true"/>\n',
        *(_rating(t, jobs[t]) for t in ("style", "coherence")),
        _header("Prompt"),
        '  <Text name="prompt" value="$prompt" granularity="word"/>\n',
        _rating("alignment", jobs["alignment"]),
        _header(f"{words['name']}: {words['instruction']}"),
        f'  <Labels name="words" toName="prompt">\n    <Label value="{MISTAKE_LABEL}" '
        'background="#e53935"/>\n  </Labels>\n',
        f'  <Choices name="{NO_MISTAKE_CONTROL}" toName="prompt">\n'
        f'    <Choice value="{NO_MISTAKE_CHOICE}"/>\n  </Choices>\n',
        "</View>\n",
    ]
    return "".join(parts)


def stage_two_config(config: dict[str, Any]) -> str:
    """The stage-two project's labeling config: both point tasks, at most ``MAX_POINTS``
    points each (the importer refuses more: Label Studio has no per-control limit); with
    ``config["regions"]`` (``"brush"`` or ``"polygon"``), a region control after each, to
    mark a whole flawed area."""
    jobs = config["jobs"]
    tool = REGION_TOOLS.get(config.get("regions") or "")
    parts = ["<View>\n", _header("Prompt"), '  <Text name="prompt" value="$prompt"/>\n']
    for task in ("coherence_points", "alignment_points"):
        job = jobs[task]
        parts.append(_header(f"{job['name']}: {job['instruction']} (at most {MAX_POINTS})"))
        parts.append(
            f'  <KeyPointLabels name="{task}" toName="image" smart="false">\n'
            f'    <Label value="{POINT_LABELS[task]}" background="{POINT_COLOURS[task]}"/>\n'
            "  </KeyPointLabels>\n"
        )
        if tool:
            reg = REGION_OF[task]
            parts.append(_header("... or draw the whole area (as many as needed)"))
            parts.append(
                f'  <{tool} name="{reg}" toName="image">\n'
                f'    <Label value="{REGION_LABELS[reg]}" background="{POINT_COLOURS[task]}"/>\n'
                f"  </{tool}>\n"
            )
    parts += ['  <Image name="image" value="$image" zoom="true"/>\n', "</View>\n"]
    return "".join(parts)


def task_data(
    images: Images, rows: list[int], urls: list[str], stage: int, regions: bool = False
) -> list[dict]:
    """The tasks to import: ``image`` (its URL on the server), ``prompt`` (whitespace
    collapsed, as the importer's word indices read it), ``image_id``, and ``rfengine_stage``
    (in stage two, an annotation without points still answers both point tasks); with
    ``regions`` (stage two's region controls), ``rfengine_regions``: such an annotation
    answers both regions tasks too."""
    return [
        {
            "data": {
                "image": url,
                "prompt": normalise_prompt(images.prompts[k]),
                "image_id": images.ids[k],
                "rfengine_stage": stage,
                **({"rfengine_regions": True} if regions else {}),
            }
        }
        for k, url in zip(rows, urls, strict=True)
    ]
