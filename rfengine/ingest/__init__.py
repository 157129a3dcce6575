"""Ingest: the images table (``images``) and responses in the interchange format, in one
module per step: table formats (``formats``), parsing into Arrow chunks (``parse``),
validation (``validate``), the columns and counts they produce (``columns``) and the
streaming reader (``responses``).

Imports only the ground modules (``errors``, ``schema``, ``options``); everything above
reads through it.
"""

from rfengine.ingest.columns import ReadStats, Responses
from rfengine.ingest.images import Images, read_images
from rfengine.ingest.responses import read_responses

__all__ = ["Images", "ReadStats", "Responses", "read_images", "read_responses"]
