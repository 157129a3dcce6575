"""The campaign file: what was created on the service, so that later commands find it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rfengine.errors import InputError
from rfengine.frontends.config import FORMAT
from rfengine.ingest import Images, read_images


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
            self._images = read_images(self.state["images"])
        return self._images

    def save(self) -> None:
        tmp = self.path.with_name(f".{self.path.name}.partial")
        tmp.write_text(json.dumps(self.state, indent=2) + "\n")
        tmp.replace(self.path)
