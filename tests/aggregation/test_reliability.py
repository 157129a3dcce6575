"""Krippendorff's alpha from coincidences, against the ``krippendorff`` package."""

import json

import numpy as np
import pytest
from fixtures import make_campaign
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from rfengine import aggregate, aggregate_to_disk, save_output
from rfengine.aggregation.reliability import coincidences, krippendorff_alpha, pair_counts
from rfengine.schema import CRITERIA

krippendorff = pytest.importorskip("krippendorff", reason="the test extra's krippendorff package")

cells = st.one_of(st.none(), st.integers(1, 5))


def _alpha_both(data: np.ndarray) -> tuple[float, float]:
    units, coders = np.nonzero(~np.isnan(data.T))
    o = coincidences(pair_counts(units, data.T[units, coders], data.shape[1]))
    return krippendorff_alpha(o, "ordinal"), krippendorff_alpha(o, "interval")


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(cells, min_size=6, max_size=6), min_size=2, max_size=7))
def test_alpha_matches_the_krippendorff_package(rows):
    data = np.array([[np.nan if v is None else v for v in r] for r in rows], dtype=float)
    pairable = (~np.isnan(data)).sum(0) >= 2
    values = data[:, pairable][~np.isnan(data[:, pairable])]
    assume(values.size >= 2 and np.unique(values).size >= 2)
    ours = _alpha_both(data)
    for got, level in zip(ours, ("ordinal", "interval"), strict=True):
        ref = krippendorff.alpha(
            reliability_data=data, level_of_measurement=level, value_domain=[1, 2, 3, 4, 5]
        )
        assert got == pytest.approx(ref, abs=1e-9)


def test_planted_agreement_and_noise():
    rng = np.random.default_rng(1)
    truth = rng.integers(1, 6, 200)
    agree = np.clip(
        truth[None, :] + rng.integers(-1, 2, (6, 200)) * (rng.random((6, 200)) < 0.2), 1, 5
    )
    noise = rng.integers(1, 6, (6, 200)).astype(float)
    a_ord, a_int = _alpha_both(agree.astype(float))
    n_ord, n_int = _alpha_both(noise)
    assert a_ord > 0.85 and a_int > 0.85
    assert abs(n_ord) < 0.1 and abs(n_int) < 0.1


def test_manifest_reliability_streaming_equals_in_memory(tmp_path):
    c = make_campaign(tmp_path, n_images=30, seed=8)
    mem = save_output(aggregate(c.images_path, c.responses_path), tmp_path / "m")
    disk = aggregate_to_disk(c.images_path, c.responses_path, tmp_path / "d", memory_budget="200KB")
    assert disk["partitions"]["count"] > 1
    rel = json.loads((mem / "manifest.json").read_text())["reliability"]
    assert rel == disk["reliability"]
    # and equal to the package on the campaign's ratings (coders = annotators, units = images)
    ids = {im["image_id"]: k for k, im in enumerate(c.images)}
    for crit in CRITERIA:
        rows = [r for r in c.responses if r["task"] == crit]
        coders = sorted({r["annotator_id"] for r in rows})
        data = np.full((len(coders), len(ids)), np.nan)
        for r in rows:
            data[coders.index(r["annotator_id"]), ids[r["image_id"]]] = r["rating"]
        ref = krippendorff.alpha(reliability_data=data, level_of_measurement="ordinal")
        assert rel[crit]["krippendorff_alpha_ordinal"] == pytest.approx(ref, abs=1e-9)
