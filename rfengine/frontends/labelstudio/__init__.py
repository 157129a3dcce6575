"""Annotation front-end on a self-hosted Label Studio: launch, track and fetch the campaign.

The server is the user's (``label-studio start``, the docker image, a company instance):
``LABEL_STUDIO_URL`` and ``LABEL_STUDIO_API_KEY`` (a legacy token or a personal access
token) reach it over plain HTTP, so ``pip install 'rfengine[labelstudio]'`` adds nothing.
The campaign verbs and campaign file are Rapidata's: stage one is one project with the three
ratings and the words; ``next-stage`` a project with both point tasks for the poorly rated
images; ``fetch`` exports the projects and imports them with the importer that
``rfengine import-labelstudio`` runs on an export made in the UI.

Modules: ``client`` (the REST API), ``labeling`` (labeling configs and task data),
``importer`` (exports -> responses), ``service`` (the campaign verbs).
"""

from rfengine.frontends.labelstudio.client import LabelStudio, LabelStudioError
from rfengine.frontends.labelstudio.importer import Controls, import_labelstudio
from rfengine.frontends.labelstudio.service import fetch, launch, next_stage, status, top_up

__all__ = [
    "Controls",
    "LabelStudio",
    "LabelStudioError",
    "fetch",
    "import_labelstudio",
    "launch",
    "next_stage",
    "status",
    "top_up",
]
