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
        """A JSON record (a non-finite number of the row, which JSON cannot hold, as its
        text: ``"inf"``, ``"nan"``)."""
        return {
            "file": self.file,
            "where": self.where,
            "field": self.field,
            "reason": self.reason,
            "row": json_safe(self.row, repr),
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


def json_safe(value: Any, nonfinite: Any = None) -> Any:
    """``value`` with every non-finite float replaced, so that ``json.dumps(...,
    allow_nan=False)`` writes it: by None (a figure that could not be computed), or by
    ``nonfinite(x)`` when that is a function (``repr``: an input value kept as its text).

    >>> json_safe({"a": [1.0, float("nan")], "b": float("inf")}, repr)
    {'a': [1.0, 'nan'], 'b': 'inf'}
    """
    if isinstance(value, float):
        if value == value and value not in (float("inf"), float("-inf")):
            return value
        return nonfinite(value) if callable(nonfinite) else nonfinite
    if isinstance(value, dict):
        return {k: json_safe(v, nonfinite) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v, nonfinite) for v in value]
    return value


def shorten(value: Any, limit: int = 200) -> str:
    """``repr(value)`` cut to ``limit`` characters: a hostile cell can be megabytes.

    >>> shorten("x" * 500, 10)
    "'xxxxxxxxx... (502 characters)"
    """
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"
