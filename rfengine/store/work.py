"""Where an output is built before it is published, and who may replace what.

Everything a run writes goes into one work folder beside OUT (``.{OUT}.rfengine-work``),
held by one run at a time through a lock file beside it; OUT appears only by a rename at
the end. Replacing an existing OUT (``overwrite``) moves the old one into the work folder
first, so that a run killed at any moment leaves at most that work folder, which the next
run on OUT resumes (``--resume``) or clears.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rfengine.errors import InputError

#: what an rfengine output folder holds (``render`` and ``report`` write the last two by
#: default); anything else in OUT stops ``overwrite``
OUTPUT_ENTRIES = frozenset(
    {
        "dataset",
        "targets",
        "manifest.json",
        "rejected.jsonl",
        "annotators.parquet",
        "render",
        "report.html",
    }
)
OUTPUT_FORMAT = "rfengine-output/1"


def check_target(out: Path, overwrite: bool) -> None:
    """Refuse to replace ``out`` unless asked, and then only an rfengine output.

    ``overwrite`` replaces a folder whose ``manifest.json`` says rfengine wrote it and that
    holds nothing but an output's entries; anything else is refused, naming what is in
    the way (an empty folder is taken as free).
    """
    if not out.exists() and not out.is_symlink():
        return
    if not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    if out.is_symlink() or not out.is_dir():
        raise FileExistsError(f"{out} is not a folder; not replacing it")
    entries = sorted(p.name for p in out.iterdir())
    if not entries:
        return
    try:
        manifest = json.loads((out / "manifest.json").read_text())
    except (OSError, ValueError):
        manifest = None
    if not isinstance(manifest, dict) or manifest.get("format") != OUTPUT_FORMAT:
        shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
        raise FileExistsError(
            f"{out} is not an rfengine output (no rfengine manifest.json; it holds {shown}); "
            "not replacing it"
        )
    foreign = [e for e in entries if e not in OUTPUT_ENTRIES]
    if foreign:
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise FileExistsError(
            f"{out} holds files an rfengine output does not ({shown}); not replacing it"
        )


@dataclass(frozen=True)
class WorkFiles:
    """The files of a work folder, named here only (a plain path, so it travels to Ray tasks
    on other nodes)."""

    dir: Path

    def rows_file(self, p: int) -> Path:
        """Partition ``p``'s validated rows (Arrow IPC, written by the read stage)."""
        return self.dir / "parts" / f"part-{p:05d}.arrow"

    def dataset_part(self, p: int) -> Path:
        """Partition ``p``'s dataset rows (Arrow IPC)."""
        return self.dir / "dataset-parts" / f"part-{p:05d}.arrow"

    def rejected_part(self, p: int) -> Path:
        """The repeats partition ``p`` rejected (JSON lines)."""
        return self.dir / f"rejected-part-{p:05d}.jsonl"

    def split_half(self, p: int) -> Path:
        """Partition ``p``'s per-image split-half reliabilities (``.npz``)."""
        return self.dir / f"split-half-{p:05d}.npz"

    @property
    def rejected_read(self) -> Path:
        """The rows the read stage rejected (JSON lines)."""
        return self.dir / "rejected-read.jsonl"

    @property
    def shards(self) -> Path:
        """Every partition's target shards, before renumbering."""
        return self.dir / "shards"

    @property
    def annotators(self) -> Path:
        """The estimate stage's table (``weights="estimate"``)."""
        return self.dir / "annotators.parquet"

    @property
    def ready(self) -> Path:
        """The finished output, renamed to OUT by ``publish``."""
        return self.dir / "ready"


class WorkDir:
    """The work folder of a run into ``out``, its progress file, and its lock.

    Use as a context manager: entering takes the lock (another run on the same OUT gets a
    one-line error naming its process), leaving releases it.
    """

    def __init__(self, out: Path):
        self.out = out
        self.dir = out.parent / f".{out.name}.rfengine-work"
        self.files = WorkFiles(self.dir)
        self.file = self.dir / "progress.json"
        self.lock_path = out.parent / f".{out.name}.rfengine-lock"
        self._fd: int | None = None

    def __enter__(self) -> WorkDir:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                if exc.errno in (errno.EAGAIN, errno.EACCES):
                    raise InputError(
                        f"{self.out}: another rfengine run (process {holder}) is writing it; "
                        "wait for it to finish or stop it"
                    ) from None
                raise
            # the file may have been removed by the run that held it: lock the one in place
            try:
                same = os.stat(self.lock_path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.lock_path)  # still held: no other run can be between
            os.close(self._fd)
            self._fd = None

    def load(self) -> dict[str, Any] | None:
        """The progress of an earlier, unfinished run, if any."""
        try:
            return json.loads(self.file.read_text())
        except (OSError, ValueError):
            return None

    def save(self, state: dict[str, Any]) -> None:
        """Record progress (atomically)."""
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(self.file)

    def fresh(self) -> None:
        """Start over: an empty work folder (an earlier unfinished run's is removed)."""
        self.clear()
        self.dir.mkdir(parents=True)

    def clear(self) -> None:
        """Remove the work folder and everything in it."""
        if self.dir.exists():
            shutil.rmtree(self.dir)

    def publish(self, ready: Path, overwrite: bool) -> Path:
        """Rename the finished folder ``ready`` (inside the work folder) to OUT, replacing
        an rfengine output there only with ``overwrite``; then clear the work folder."""
        check_target(self.out, overwrite)
        if self.out.exists():
            self.out.rename(self.dir / "replaced")  # cleared with the work folder
        ready.rename(self.out)
        self.clear()
        return self.out


#: what a failed run that can be resumed says after its error line
RESUME_HINT = "rfengine: the unfinished run is in {}: rerun with --resume to continue it"


@contextlib.contextmanager
def keep_for_resume(work: WorkDir) -> Iterator[None]:
    """Leave the work folder only where a resume can help.

    Bad input (``InputError``) fails the same way on every resume: the work folder is
    removed. Anything else (an interrupt, a kill's ``SIGTERM``, a full disk, a failed
    write) keeps it, and the exception carries the hint for the CLI to print after its
    error line (``exc.resume_hint``; on Python 3.11+ also a note of its traceback).
    """
    try:
        yield
    except InputError:
        work.clear()
        raise
    except BaseException as exc:
        if work.dir.exists():
            hint = RESUME_HINT.format(work.dir)
            exc.resume_hint = hint  # type: ignore[attr-defined]
            if hasattr(exc, "add_note"):
                exc.add_note(hint)
        raise


__all__ = [
    "OUTPUT_ENTRIES",
    "OUTPUT_FORMAT",
    "WorkDir",
    "WorkFiles",
    "check_target",
    "RESUME_HINT",
    "keep_for_resume",
]
