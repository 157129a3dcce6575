"""Ingest: the images table and responses in the interchange format."""

from rfengine.ingest.images import Images, read_images
from rfengine.ingest.responses import ReadStats, Responses, read_responses

__all__ = ["Images", "ReadStats", "Responses", "read_images", "read_responses"]
