"""rfengine.kernels: pure tensor functions (Gaussian splatting, segment reductions).

``profiles`` (one axis's Gaussian factors) -> ``peaks`` (each annotator's grid maximum) ->
``splat`` (the batched product of max-normalised maps); ``segment`` for the ratings and
words; ``raster`` for drawn regions (polygons at pixel centres, their weighted coverage).

No I/O and no configuration here; results stay on the inputs' device. The kernels import
nothing of rfengine (relative imports only), so that they can be read, tested and reused
alone.
"""

from .peaks import MAX_POINTS, AnnotatorMaps, annotator_peaks, tile_candidates, tile_maxima
from .points import Points
from .profiles import (
    MIN_EXPONENT,
    SIGMA_FRACTION,
    discrete_kernel_radius,
    gaussian_profiles,
    reflected_kernel_profiles,
    sigma_px,
)
from .raster import Spans, fill_polygons, mask_spans, polygon_spans, region_coverage, soften
from .segment import concat_ranges, segment_sum, weighted_moments
from .splat import Preset, pack_columns, splat_heatmaps

__all__ = [
    "MAX_POINTS",
    "MIN_EXPONENT",
    "AnnotatorMaps",
    "Points",
    "SIGMA_FRACTION",
    "Spans",
    "Preset",
    "annotator_peaks",
    "concat_ranges",
    "discrete_kernel_radius",
    "fill_polygons",
    "gaussian_profiles",
    "mask_spans",
    "pack_columns",
    "polygon_spans",
    "reflected_kernel_profiles",
    "region_coverage",
    "segment_sum",
    "sigma_px",
    "soften",
    "splat_heatmaps",
    "tile_candidates",
    "tile_maxima",
    "weighted_moments",
]
