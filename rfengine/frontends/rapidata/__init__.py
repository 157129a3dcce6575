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
of ``rfengine.frontends.rapidata.importer``, the one place to change if the service's differ.

Modules: ``config`` (the seed's jobs and the config file), ``plan`` (what a launch
creates, without the service), ``state`` (the campaign file), ``service`` (the calls to
rapidata).
"""

from rfengine.frontends.config import SEED_CONFIG, STAGE_ONE, STAGE_TWO, load_config
from rfengine.frontends.rapidata.plan import plan_job
from rfengine.frontends.rapidata.service import (
    fetch,
    launch,
    make_client,
    next_stage,
    require_rapidata,
    status,
    top_up,
)
from rfengine.frontends.state import Campaign

__all__ = [
    "SEED_CONFIG",
    "STAGE_ONE",
    "STAGE_TWO",
    "Campaign",
    "fetch",
    "launch",
    "load_config",
    "make_client",
    "next_stage",
    "plan_job",
    "require_rapidata",
    "status",
    "top_up",
]
