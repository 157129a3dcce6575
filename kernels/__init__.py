"""rfengine.kernels: pure tensor functions (Gaussian splatting, segment reductions).

No I/O and no configuration here; results stay on the inputs' device.
"""

from rfengine.kernels.segment import concat_ranges, segment_sum, weighted_moments
from rfengine.kernels.splat import (
    MIN_EXPONENT,
    SIGMA_FRACTION,
    Preset,
    annotator_peaks,
    discrete_kernel_radius,
    gaussian_profiles,
    pack_columns,
    reflected_kernel_profiles,
    sigma_px,
    splat_heatmaps,
    tile_candidates,
    tile_maxima,
)

__all__ = [
    "MIN_EXPONENT",
    "SIGMA_FRACTION",
    "Preset",
    "annotator_peaks",
    "concat_ranges",
    "discrete_kernel_radius",
    "gaussian_profiles",
    "pack_columns",
    "reflected_kernel_profiles",
    "segment_sum",
    "sigma_px",
    "splat_heatmaps",
    "tile_candidates",
    "tile_maxima",
    "weighted_moments",
]
