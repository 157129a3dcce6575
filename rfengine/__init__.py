"""rfengine: aggregation of rich human feedback on text-to-image generation.

The data flow, module by module: ``ingest`` (read and validate) -> ``pipeline`` (partition,
stages) -> ``aggregate`` (batch into tensors) -> ``kernels`` (splat, segment reductions) ->
``result`` -> ``write`` (dataset, targets, manifest) -> ``output`` (load it back).

>>> import rfengine
>>> result = rfengine.aggregate("images.jsonl", ["responses.jsonl"])  # doctest: +SKIP
>>> rfengine.save_output(result, "out/")                               # doctest: +SKIP
>>> rfengine.load_output("out/").dataset                                # doctest: +SKIP
"""

from rfengine.errors import InputError, Rejection
from rfengine.ingest import Images, Responses, read_images, read_responses
from rfengine.options import AggregateOptions, Engine
from rfengine.output import Output, load_annotators, load_dataset, load_output
from rfengine.pipeline import aggregate, aggregate_to_disk
from rfengine.result import AggregationResult, Scores, WordScores
from rfengine.schema import CRITERIA, HEATMAP_KINDS, MAX_POINTS, TASKS, Task
from rfengine.write import save_output
from rfengine.write.targets import Shard, load_targets

__version__ = "0.1.0"

__all__ = [
    "CRITERIA",
    "HEATMAP_KINDS",
    "MAX_POINTS",
    "TASKS",
    "AggregateOptions",
    "AggregationResult",
    "Engine",
    "Images",
    "InputError",
    "Output",
    "Rejection",
    "Responses",
    "Scores",
    "Shard",
    "Task",
    "WordScores",
    "aggregate",
    "aggregate_to_disk",
    "load_annotators",
    "load_dataset",
    "load_output",
    "load_targets",
    "read_images",
    "read_responses",
    "save_output",
]
