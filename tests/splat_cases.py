"""The splat kernel on one image, from (points, weight) annotators, and hypothesis
strategies for clicks: shared by the tests of ``kernels.peaks`` and ``kernels.splat``."""

import torch
from hypothesis import strategies as st
from rfengine.kernels import Points, splat_heatmaps

coord = st.floats(0.0, 1.0, allow_nan=False)
point = st.tuples(coord, coord)
annotator = st.tuples(
    st.lists(point, max_size=3), st.one_of(st.just(0.0), st.floats(1e-3, 5.0, allow_nan=False))
)


def run_splat(annotators, W, H, out_hw=None, preset="default", dtype=torch.float64, device="cpu"):
    """Engine heatmap of one image from (points, weight) annotators, as float64 numpy."""
    if preset == "default":
        total = sum(w for _, w in annotators)
        scale = [w / total for _, w in annotators]
    else:
        scale = [1 / len(annotators)] * len(annotators)
    px, py, pa, asc = [], [], [], []
    for (pts, _), s in zip(annotators, scale, strict=True):
        if not pts:
            continue
        for x, y in pts:
            px.append(x)
            py.append(y)
            pa.append(len(asc))
        asc.append(s)

    def t(v, dt=dtype):
        return torch.tensor(v, dtype=dt, device=device)

    points = Points(
        t(px),
        t(py),
        t([0] * len(px), torch.long),
        t(pa, torch.long),
        t([0] * len(asc), torch.long),
        t(asc),
        t([W], torch.long),
        t([H], torch.long),
    )
    out = splat_heatmaps(points, out_hw or (H, W), preset)
    return out[0].double().cpu().numpy()
