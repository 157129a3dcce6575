"""``python -m rfengine.cli``: the same as the ``rfengine`` command."""

from rfengine.cli.main import entry

entry()
