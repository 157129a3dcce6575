"""rfengine: aggregation of rich human feedback on text-to-image generation.

The layout is the data flow; each folder imports only the ones below it::

    cli/                  the command line: parsing and reporting only
    sim/                  simulated campaigns with a known truth, the demo
    frontends/            annotation services (rapidata/), campaign config and file
    render/               overlays, panels, the HTML report
    run/                  aggregate / aggregate_to_disk: plan, stages, engines (local, Ray)
    train/                torch Dataset, RichHF export, RAHF metrics and evaluate
    store/                work folder, writing rule, dataset, targets, manifest, load
    aggregation/          scores, words, heatmaps, trust, reliability, result types
    ingest/               images table, responses: parse, validate, stream
    kernels/              pure tensor functions (rfengine.kernels; imports nothing of ours)
    options, schema, errors   the ground: frozen options, the format's names, error types

>>> import rfengine
>>> result = rfengine.aggregate("images.jsonl", ["responses.jsonl"])  # doctest: +SKIP
>>> rfengine.save_output(result, "out/")                               # doctest: +SKIP
>>> rfengine.load_output("out/").dataset                                # doctest: +SKIP
"""

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from typing import Any

#: the public API, by the module that defines each name: imported on first use, so that
#: ``import rfengine`` (and the CLI's ``--help``) loads no torch, pyarrow or datasets
_API = {
    "InputError": "rfengine.errors",
    "Rejection": "rfengine.errors",
    "Images": "rfengine.ingest",
    "Responses": "rfengine.ingest",
    "read_images": "rfengine.ingest",
    "read_responses": "rfengine.ingest",
    "AggregateOptions": "rfengine.options",
    "Engine": "rfengine.options",
    "Output": "rfengine.store.load",
    "load_annotators": "rfengine.store.load",
    "load_dataset": "rfengine.store.load",
    "load_output": "rfengine.store.load",
    "aggregate": "rfengine.run.pipeline",
    "aggregate_to_disk": "rfengine.run.pipeline",
    "AggregationResult": "rfengine.aggregation.result",
    "Scores": "rfengine.aggregation.result",
    "WordScores": "rfengine.aggregation.result",
    "CRITERIA": "rfengine.schema",
    "HEATMAP_KINDS": "rfengine.schema",
    "MAX_POINTS": "rfengine.schema",
    "TASKS": "rfengine.schema",
    "Task": "rfengine.schema",
    "save_output": "rfengine.store",
    "Shard": "rfengine.store.targets",
    "load_targets": "rfengine.store.targets",
}


def __getattr__(name: str) -> Any:
    """A public name (``_API``), or a subpackage (``rfengine.kernels``), on first use."""
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{name}":
            raise
    raise AttributeError(f"module 'rfengine' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])


__version__ = "0.1.0"

#: modules that moved in 0.1 (one package per stage); the old names still import, with a
#: DeprecationWarning, until 0.2
MOVED = {
    "rfengine.campaign": "rfengine.frontends.rapidata",
    "rfengine.campaign.config": "rfengine.frontends.config",
    "rfengine.campaign.plan": "rfengine.frontends.rapidata.plan",
    "rfengine.campaign.service": "rfengine.frontends.rapidata.service",
    "rfengine.campaign.state": "rfengine.frontends.state",
    "rfengine.data": "rfengine.train.dataset",
    "rfengine.demo": "rfengine.sim.demo",
    "rfengine.distributed": "rfengine.run.ray",
    "rfengine.export": "rfengine.train.richhf",
    "rfengine.ingest.rapidata": "rfengine.frontends.rapidata.importer",
    "rfengine.metrics": "rfengine.train.metrics",
    "rfengine.output": "rfengine.store.load",
    "rfengine.partition": "rfengine.run.stages",
    "rfengine.pipeline": "rfengine.run.pipeline",
    "rfengine.quality": "rfengine.aggregation.trust",
    "rfengine.reliability": "rfengine.aggregation.reliability",
    "rfengine.result": "rfengine.aggregation.result",
    "rfengine.simulate": "rfengine.sim.simulate",
    "rfengine.write": "rfengine.store",
    "rfengine.write.dataset": "rfengine.store.dataset",
    "rfengine.write.files": "rfengine.store.files",
    "rfengine.write.manifest": "rfengine.store.manifest",
    "rfengine.write.targets": "rfengine.store.targets",
    "rfengine.write.work": "rfengine.store.work",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Import an old module name as the module it moved to (the same module object)."""

    def find_spec(self, name, path, target=None):  # noqa: ANN001, ANN201
        if name in MOVED:
            return importlib.machinery.ModuleSpec(name, self)
        return None

    def create_module(self, spec):  # noqa: ANN001, ANN201
        warnings.warn(
            f"{spec.name} moved to {MOVED[spec.name]}; the old name goes in rfengine 0.2",
            DeprecationWarning,
            stacklevel=2,
        )
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module) -> None:  # noqa: ANN001
        pass


sys.meta_path.insert(0, _MovedModules())  # before the path finder: a moved package's
# submodules (rfengine.write.targets) must not load a second time through its __path__

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
