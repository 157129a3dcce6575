"""One writing rule for every command that writes: what exists is refused unless
``--overwrite``, and ``--overwrite`` replaces only what the same command wrote.

A folder a command writes (``export --out``, ``simulate --out``, ``demo --out``,
``render --out``) carries a mark, ``.rfengine-written.json``, naming the command and every
file it wrote; ``--overwrite`` replaces such a folder only when the mark is the same
command's and the folder holds nothing else (an empty folder is free). A file a command
writes (``report --html``, ``evaluate --json``, a responses file) carries its mark in its
own format (an HTML ``generator`` meta tag, a JSON ``generator`` key, Parquet schema
metadata); a format with no room for one (JSON Lines) is never replaced. Aggregation
outputs keep their own rule (``work.check_target``: the manifest is their mark).

Everything appears atomically: a file is written beside its target and renamed over it;
a folder is built beside its target (``.NAME.rfengine-partial``) and renamed into place.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

MARK = ".rfengine-written.json"
MARK_FORMAT = "rfengine-written/1"
_SHOWN = 5


def _listing(names: list[str]) -> str:
    return ", ".join(names[:_SHOWN]) + (", ..." if len(names) > _SHOWN else "")


def _files(folder: Path) -> list[str]:
    """Every file and link under ``folder``, relative, '/'-separated, sorted."""
    found = []
    for root, dirs, files in os.walk(folder):
        rel = Path(root).relative_to(folder)
        for name in files + [d for d in dirs if (Path(root) / d).is_symlink()]:
            found.append((rel / name).as_posix())
    return sorted(found)


def read_mark(folder: Path) -> dict | None:
    """The mark of a folder an rfengine command wrote, or None (absent or unreadable)."""
    try:
        mark = json.loads((folder / MARK).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(mark, dict) or mark.get("format") != MARK_FORMAT:
        return None
    if not isinstance(mark.get("command"), str) or not isinstance(mark.get("files"), list):
        return None
    return mark


def write_mark(folder: Path, command: str, planned: Iterable[str] = ()) -> None:
    """Mark ``folder`` as written by ``command``, listing every file now in it and the
    ``planned`` ones about to be written (so that a run interrupted between its files
    leaves a folder its next run may still replace)."""
    files = sorted({f for f in _files(folder) if f != MARK} | set(planned))
    doc = {"format": MARK_FORMAT, "command": command, "files": files}
    write_atomic(folder / MARK, json.dumps(doc, indent=1, ensure_ascii=False) + "\n")


def _uncovered(present: list[str], listed: list[str]) -> list[str]:
    """The files of ``present`` that ``listed`` does not name (an entry ending in '/'
    covers its whole subtree)."""
    names = set(listed) | {MARK}
    trees = tuple(e for e in listed if e.endswith("/"))
    return [f for f in present if f not in names and not f.startswith(trees)]


def is_own_folder(folder: Path, command: str) -> bool:
    """Whether ``folder`` is empty, or holds only what ``command`` wrote into it."""
    if folder.is_symlink() or not folder.is_dir():
        return False
    present = _files(folder)
    if not present and not any(folder.iterdir()):
        return True
    mark = read_mark(folder)
    if mark is None or mark["command"] != command:
        return False
    return not _uncovered(present, mark["files"])


def check_folder(folder: Path, command: str, overwrite: bool) -> None:
    """Refuse ``folder`` as a target unless it is free, or ``overwrite`` and ``command``'s own.

    Raises ``FileExistsError`` with one line naming the folder and what is in the way.
    """
    if not folder.exists() and not folder.is_symlink():
        return
    if folder.is_symlink() or not folder.is_dir():
        raise FileExistsError(f"{folder} exists and is not a folder; not replacing it")
    entries = sorted(p.name for p in folder.iterdir())
    if not entries:
        return
    if not overwrite:
        raise FileExistsError(f"{folder} exists; pass --overwrite to replace it")
    mark = read_mark(folder)
    if mark is None or mark["command"] != command:
        raise FileExistsError(
            f"{folder} was not written by rfengine {command} (it holds {_listing(entries)}); "
            "not replacing it"
        )
    foreign = _uncovered(_files(folder), mark["files"])
    if foreign:
        raise FileExistsError(
            f"{folder} holds files rfengine {command} did not write ({_listing(foreign)}); "
            "not replacing it"
        )


@contextlib.contextmanager
def new_folder(folder: str | Path, command: str, overwrite: bool) -> Iterator[Path]:
    """Build a folder beside ``folder`` and rename it into place when the block ends.

    Yields the folder to write into. The target is checked (``check_folder``) before and
    again just before the swap; on any failure or interrupt the partial folder is removed
    and the target is untouched.
    """
    folder = Path(folder)
    check_folder(folder, command, overwrite)
    tmp = folder.parent / f".{folder.name}.rfengine-partial"
    old = folder.parent / f".{folder.name}.rfengine-replaced"
    folder.parent.mkdir(parents=True, exist_ok=True)
    for stale in (tmp, old):  # a killed earlier run's; these names are rfengine's
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale)
    tmp.mkdir()
    try:
        yield tmp
        write_mark(tmp, command)
        check_folder(folder, command, overwrite)
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
        if folder.exists():
            folder.rename(old)
            tmp.rename(folder)
            shutil.rmtree(old)
        else:
            tmp.rename(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def replace_in_place(folder: str | Path, command: str, overwrite: bool, entries: list[str]) -> Path:
    """Make ``folder`` ready for ``command`` to build in place: checked (``check_folder``),
    an earlier one of its own removed, then created and marked with ``entries`` (names, a
    folder's ending in '/') before anything is written, so that an interrupted build can
    still be replaced. For builders whose outputs record their own paths (``demo``); call
    ``write_mark`` when done."""
    folder = Path(folder)
    check_folder(folder, command, overwrite)
    if folder.is_dir():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    doc = {"format": MARK_FORMAT, "command": command, "files": sorted(entries)}
    write_atomic(folder / MARK, json.dumps(doc, indent=1) + "\n")
    return folder


def check_file(path: Path, overwrite: bool, is_own: Callable[[Path], bool], what: str) -> None:
    """Refuse ``path`` as a target unless absent, or ``overwrite`` and ``is_own(path)``.

    ``what`` names the kind of file in the message (``"an rfengine report"``).
    """
    if not path.exists() and not path.is_symlink():
        return
    if not overwrite:
        raise FileExistsError(f"{path} exists; pass --overwrite to replace it")
    if path.is_symlink() or not path.is_file():
        raise FileExistsError(f"{path} exists and is not a regular file; not replacing it")
    if not is_own(path):
        raise FileExistsError(f"{path} is not {what}; not replacing it")


def head_contains(path: Path, needle: bytes, size: int = 4096) -> bool:
    """Whether the first ``size`` bytes of ``path`` hold ``needle`` (a file's own mark)."""
    try:
        with path.open("rb") as fh:
            return needle in fh.read(size)
    except OSError:
        return False


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file renamed over it."""
    tmp = path.with_name(f".{path.name}.partial")
    try:
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        else:
            tmp.write_bytes(data)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


__all__ = [
    "MARK",
    "check_file",
    "check_folder",
    "head_contains",
    "is_own_folder",
    "new_folder",
    "read_mark",
    "replace_in_place",
    "write_atomic",
    "write_mark",
]
