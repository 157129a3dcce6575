"""The ``rfengine`` command line: parsing and reporting only (``main``); every command's
work is a call into the package. Imports anything below it; nothing imports it.
"""

from rfengine.cli.main import build_parser, entry, main

__all__ = ["build_parser", "entry", "main"]
