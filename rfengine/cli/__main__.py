"""``python -m rfengine.cli``: the same as the ``rfengine`` command."""

import sys

from rfengine.cli.main import main

sys.exit(main())
