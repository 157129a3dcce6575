"""Front-ends: the annotation services that collect responses, one subpackage each
(``rapidata``), with what they share: the campaign config (``config``), the campaign file
(``state``) and the responses-file writer of their importers (``writer``).

A front-end may import ``run`` (``next-stage`` aggregates stage one), ``ingest`` and
``store``; nothing imports a front-end but the CLI, and its service SDK only when used.
"""
