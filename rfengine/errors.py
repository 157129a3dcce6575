"""Errors and rejections that name the file, the line or row, and the field."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Rejection:
    """One input row that was not used, and why.

    ``where`` is ``"line N"`` for JSONL and CSV (1-based, as an editor shows it) or
    ``"row group G, row R"`` for Parquet (0-based).
    """

    file: str
    where: str
    field: str
    reason: str
    row: Any = None
    order: tuple[int, int] = (0, 0)  # (file index, row index): sorts rejections by input order

    def message(self) -> str:
        field = f"field '{self.field}': " if self.field else ""
        return f"{self.file}: {self.where}: {field}{self.reason}"

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "where": self.where,
            "field": self.field,
            "reason": self.reason,
            "row": self.row,
        }


class InputError(ValueError):
    """Bad input: the message names the file, the line or row, and the field."""

    def __init__(self, message: str, rejection: Rejection | None = None):
        super().__init__(message)
        self.rejection = rejection

    @classmethod
    def from_rejection(cls, rej: Rejection, more: int = 0) -> InputError:
        tail = (
            f" ({more} more bad row(s); use --on-error skip to write them to rejected.jsonl)"
            if more
            else ""
        )
        return cls(rej.message() + tail, rej)


def shorten(value: Any, limit: int = 200) -> str:
    """``repr(value)`` cut to ``limit`` characters: a hostile cell can be megabytes.

    >>> shorten("x" * 500, 10)
    "'xxxxxxxxx... (502 characters)"
    """
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"
