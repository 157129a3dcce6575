import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import ref_scores
from rfengine.kernels import segment_sum, weighted_moments


def test_hand_checked_example():
    c, w, m, s = weighted_moments(
        torch.tensor([1.0, 5.0, 3.0]), torch.tensor([1.0, 3.0, 2.0]), torch.tensor([0, 0, 2]), 3
    )
    assert c.tolist() == [2, 0, 1]
    assert w.tolist() == [4.0, 0.0, 2.0]
    assert m[0] == 4.0 and torch.isnan(m[1]) and m[2] == 3.0
    assert abs(float(s[0]) - np.sqrt(3.0)) < 1e-6 and float(s[2]) == 0.0


rating = st.tuples(st.integers(1, 5), st.floats(0.0, 10.0, allow_nan=False), st.integers(0, 4))


@settings(max_examples=100, deadline=None)
@given(rows=st.lists(rating, max_size=40))
def test_moments_match_float64_reference(rows):
    v = torch.tensor([float(r) for r, _, _ in rows], dtype=torch.float64)
    w = torch.tensor([x for _, x, _ in rows], dtype=torch.float64)
    g = torch.tensor([k for _, _, k in rows], dtype=torch.long)
    count, wsum, mean, std = weighted_moments(v, w, g, 5)
    for k in range(5):
        ref = ref_scores([(r, x) for r, x, kk in rows if kk == k])
        if ref is None:
            assert count[k] == 0 and np.isnan(float(mean[k]))
            continue
        assert count[k] == ref["count"]
        np.testing.assert_allclose(float(wsum[k]), ref["weight"], rtol=1e-12)
        if ref["mean"] is None:
            assert np.isnan(float(mean[k])) and np.isnan(float(std[k]))
        else:
            np.testing.assert_allclose(float(mean[k]), ref["mean"], rtol=1e-12)
            np.testing.assert_allclose(float(std[k]), ref["std"], rtol=1e-9, atol=1e-12)


@settings(max_examples=50, deadline=None)
@given(rows=st.lists(rating, min_size=1, max_size=40), perm_seed=st.integers(0, 2**31))
def test_moments_invariant_to_order(rows, perm_seed):
    v = torch.tensor([float(r) for r, _, _ in rows], dtype=torch.float64)
    w = torch.tensor([x for _, x, _ in rows], dtype=torch.float64)
    g = torch.tensor([k for _, _, k in rows], dtype=torch.long)
    p = torch.from_numpy(np.random.default_rng(perm_seed).permutation(len(rows)))
    a = weighted_moments(v, w, g, 5)
    b = weighted_moments(v[p], w[p], g[p], 5)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x.numpy(), y.numpy(), rtol=1e-12, atol=1e-12, equal_nan=True)


def test_segment_sum():
    out = segment_sum(torch.tensor([0.5, 1.5, 2.0]), torch.tensor([2, 0, 2]), 4)
    assert out.tolist() == [1.5, 0.0, 2.5, 0.0]
