"""The real Label Studio server of the front-end tests (one per session)."""

import ls_server
import pytest


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory):
    if ls_server.executable() is None:
        pytest.skip(
            "Label Studio is not installed: .ci/run installs it into .lsvenv "
            "(python3 -m venv .lsvenv && .lsvenv/bin/pip install label-studio 'sentry-sdk<3'), "
            "or set RFENGINE_LABEL_STUDIO to a label-studio executable"
        )
    server = ls_server.start(tmp_path_factory.mktemp("label-studio"))
    try:
        yield server
    finally:
        server.stop()
