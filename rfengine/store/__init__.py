"""Store: everything on disk and back. The work folder and its lock (``work``), the writing
rule of every command (``owned``), the dataset (``dataset``), safetensors targets
(``targets``), the manifest (``manifest``), saving an in-memory result (``save``), and
loading an output back (``load``): each writer beside its reader.

Imports ``aggregation`` (result types, reliability summaries), ``ingest`` and the ground
modules; never ``run`` or anything above it.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

#: each public name and its module, imported on first use (PEP 562): a command that only
#: needs the writing rule (``owned``) does not load torch and datasets through the package
_API = {
    "WorkDir": "work",
    "build_table": "dataset",
    "check_target": "work",
    "finalize_dataset": "dataset",
    "finalize_targets": "targets",
    "keep_for_resume": "work",
    "load_targets": "targets",
    "save_output": "save",
    "sha256": "manifest",
    "write_annotators": "save",
    "write_dataset_part": "dataset",
    "write_rejections": "save",
    "write_targets": "targets",
}
__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'rfengine.store' has no attribute {name!r}")
    value = getattr(import_module(f"rfengine.store.{_API[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
