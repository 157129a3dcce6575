"""Ingest: the images table and responses in the interchange format."""

from rfengine.ingest.images import NO_MISTAKE, Images, read_images
from rfengine.ingest.responses import (
    CRITERIA,
    POINT_TASKS,
    TASKS,
    ReadStats,
    Responses,
    read_responses,
)

__all__ = [
    "CRITERIA",
    "NO_MISTAKE",
    "POINT_TASKS",
    "TASKS",
    "Images",
    "ReadStats",
    "Responses",
    "read_images",
    "read_responses",
]
