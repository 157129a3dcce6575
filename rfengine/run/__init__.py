"""Run: the public ``aggregate`` (in memory) and ``aggregate_to_disk`` (streaming, larger
than memory, resumable), the partition plan and stages (``stages``), and the two engines
that drive them: this process (``pipeline``) and Ray (``ray``).

Imports ``aggregation``, ``store`` and ``ingest`` below it; never ``cli``, ``render`` or
the front-ends.
"""

from rfengine.run.pipeline import aggregate, aggregate_to_disk

__all__ = ["aggregate", "aggregate_to_disk"]
