import numpy as np
import pytest
import torch
from rfengine.kernels import (
    MIN_EXPONENT,
    discrete_kernel_radius,
    gaussian_profiles,
    reflected_kernel_profiles,
)
from scipy.ndimage import gaussian_filter1d


def test_gaussian_profiles_match_formula():
    coord = torch.tensor([[0.0, 0.3, 1.0]], dtype=torch.float64)
    prof, log_peak = gaussian_profiles(
        coord, torch.tensor([200.0], dtype=torch.float64), 50, torch.tensor([7.0])
    )
    centres = (np.arange(50) + 0.5) / 50 * 200
    want = np.exp(-((centres[None, :] - np.array([0, 60, 200])[:, None]) ** 2) / (2 * 7.0**2))
    np.testing.assert_allclose(log_peak[0].numpy(), np.log(want.max(1)), rtol=1e-12)
    # each profile over its own peak, exact down to the clamp at MIN_EXPONENT of that peak
    rel = want / want.max(1, keepdims=True)
    np.testing.assert_allclose(prof[0].numpy(), rel, rtol=1e-12, atol=np.exp(MIN_EXPONENT) * 1.01)
    assert float(prof.min()) == pytest.approx(np.exp(MIN_EXPONENT), rel=1e-12)


@pytest.mark.parametrize("size,sigma", [(40, 2.5), (53, 4.0), (7, 0.35), (100, 6.0)])
def test_reflected_profiles_match_scipy(size, sigma):
    s = torch.tensor([sigma], dtype=torch.float64)
    r = discrete_kernel_radius(s)
    m = torch.arange(size)[None, :]
    got = reflected_kernel_profiles(m, size, s, r)[0].numpy()
    for k in range(size):
        impulse = np.zeros(size)
        impulse[k] = 1
        want = gaussian_filter1d(impulse, sigma, truncate=3, mode="reflect")
        np.testing.assert_allclose(got[k], want, atol=1e-15)
