"""Fixtures of the training tests: one small demo output, built once for the session."""

import pytest

from rfengine.sim.demo import run_demo


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "d"
    run_demo(out, n_images=24, progress=False)
    return out / "aggregate"
