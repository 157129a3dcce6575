"""File placement shared by the writers."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def link_or_copy(src: Path, dst: Path) -> None:
    """Give ``src`` a second name ``dst`` (a hard link: no copy; a copy where links fail).

    Finished parts stay where they are until the output is published, so an interrupted
    finalisation can be redone from them.
    """
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
