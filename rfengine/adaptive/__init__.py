"""Adaptive collection: from an aggregation output, how many more responses each image
and task needs to reach a target precision (``estimate``: the statistics, pure numpy;
``plan``: the ``plan-more`` table), for a front-end's ``campaign top-up`` to ask for.

Imports ``store`` (to read outputs) and the ground modules; the front-ends import it.
"""

from rfengine.adaptive.plan import PLAN_SCHEMA, Targets, plan_more, write_plan

__all__ = ["PLAN_SCHEMA", "Targets", "plan_more", "write_plan"]
