"""Store: everything on disk and back. The work folder and its lock (``work``), the writing
rule of every command (``owned``), the dataset (``dataset``), safetensors targets
(``targets``), the manifest (``manifest``), saving an in-memory result (``save``), and
loading an output back (``load``): each writer beside its reader.

Imports ``aggregation`` (result types, reliability summaries), ``ingest`` and the ground
modules; never ``run`` or anything above it.
"""

from rfengine.store.dataset import build_table, finalize_dataset, write_dataset_part
from rfengine.store.manifest import sha256
from rfengine.store.save import save_output, write_annotators, write_rejections
from rfengine.store.targets import finalize_targets, load_targets, write_targets
from rfengine.store.work import WorkDir, check_target, keep_for_resume

__all__ = [
    "WorkDir",
    "build_table",
    "check_target",
    "finalize_dataset",
    "finalize_targets",
    "load_targets",
    "keep_for_resume",
    "save_output",
    "sha256",
    "write_annotators",
    "write_dataset_part",
    "write_rejections",
    "write_targets",
]
