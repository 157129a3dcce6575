"""The campaign file: what was created on the service, so that later commands find it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rfengine.errors import InputError
from rfengine.frontends.config import FORMAT
from rfengine.ingest import Images, read_images
from rfengine.ingest.sources import ImageColumns, is_dataset, local_folder


class Campaign:
    """The campaign file: images table, config, stage and jobs; saved atomically."""

    def __init__(self, path: Path, state: dict[str, Any]):
        self.path, self.state = path, state
        self._images: Images | None = None

    @classmethod
    def load(cls, path: str | Path) -> Campaign:
        path = Path(path)
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: cannot read the campaign file: {exc}") from None
        if state.get("format") != FORMAT:
            raise InputError(f"{path}: not an rfengine campaign file")
        return cls(path, state)

    @property
    def images(self) -> Images:
        if self._images is None:
            self._images = self.read_images()
        return self._images

    def read_images(self, require_files: bool = True) -> Images:
        """The campaign's images table (a dataset's with the columns recorded at launch)."""
        columns = ImageColumns.from_json(self.state.get("images_columns"))
        return read_images(self.state["images"], require_files=require_files, columns=columns)

    def save(self) -> None:
        tmp = self.path.with_name(f".{self.path.name}.partial")
        tmp.write_text(json.dumps(self.state, indent=2) + "\n")
        tmp.replace(self.path)


def images_record(path: str | Path, columns: ImageColumns | None) -> dict[str, Any]:
    """What a campaign file records of its images: the table's (or dataset folder's) absolute
    path, and a dataset's columns."""
    if is_dataset(path):
        return {
            "images": str(local_folder(path).resolve()),
            "images_columns": (columns or ImageColumns()).to_json(),
        }
    return {"images": str(Path(path).resolve())}
