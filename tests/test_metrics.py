import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import spearmanr

from rfengine.train.metrics import peak_position, rank_correlation

values = st.lists(st.integers(1, 5) | st.floats(-10, 10, allow_nan=False), min_size=3, max_size=40)


@settings(max_examples=200)
@given(values, st.data())
def test_rank_correlation_matches_scipy(a, data):
    b = data.draw(st.lists(st.integers(1, 5), min_size=len(a), max_size=len(a)))
    ours = rank_correlation(np.array(a, dtype=float), np.array(b, dtype=float))
    ref = spearmanr(a, b).statistic if np.ptp(a) > 0 and np.ptp(b) > 0 else np.nan
    if np.isnan(ref):
        assert np.isnan(ours)
    else:
        assert ours == pytest.approx(ref, abs=1e-12)


def test_rank_correlation_skips_non_finite_pairs():
    a = np.array([1.0, 2, np.nan, 3, 4])
    b = np.array([1.0, 3, 5, 2, np.inf])
    assert rank_correlation(a, b) == pytest.approx(spearmanr([1, 2, 3], [1, 3, 2]).statistic)
    assert np.isnan(rank_correlation(np.array([1.0, 2]), np.array([2.0, 1])))


def test_peak_position_is_the_hottest_pixel_centre():
    heat = np.zeros((4, 8))
    heat[1, 6] = 1.0
    assert peak_position(heat) == ((6 + 0.5) / 8, (1 + 0.5) / 4)
