"""Test-wide settings.

Hypothesis explores new examples on every local run; under CI (``CI`` set, as .ci/run is
run) it replays a fixed, derandomised set, so that a submission's result does not depend on
which examples a fresh machine happens to draw.
"""

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
