"""rfengine: aggregation of rich human feedback on text-to-image generation.

>>> from rfengine import aggregate
>>> result = aggregate("images.jsonl", ["responses.jsonl"])  # doctest: +SKIP
>>> result.save("out/")                                       # doctest: +SKIP
"""

from rfengine.aggregate import AggregationResult, Scores, WordScores, aggregate
from rfengine.errors import InputError, Rejection
from rfengine.ingest import Images, Responses, read_images, read_responses
from rfengine.pipeline import aggregate_to_disk
from rfengine.write import load_targets

__version__ = "0.1.0"

__all__ = [
    "AggregationResult",
    "Images",
    "InputError",
    "Rejection",
    "Responses",
    "Scores",
    "WordScores",
    "aggregate",
    "aggregate_to_disk",
    "load_targets",
    "read_images",
    "read_responses",
]
