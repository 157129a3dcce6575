"""Aggregation: responses of a range of images, batched into tensors, into scores, word
scores and heatmaps (``compute``); each annotator's trust estimated from the data
(``trust``); Krippendorff's alpha and split-half heatmap reliability (``reliability``); the
result types (``result``).

Imports ``ingest``, ``kernels`` and the ground modules (``options``, ``schema``,
``errors``); nothing that writes files.
"""

from rfengine.aggregation.compute import compute, score_ranges
from rfengine.aggregation.result import AggregationResult, Scores, WordScores
from rfengine.aggregation.trust import TrustEstimate, evidence

__all__ = [
    "AggregationResult",
    "Scores",
    "TrustEstimate",
    "WordScores",
    "compute",
    "evidence",
    "score_ranges",
]
