import numpy as np
import pytest

from rfengine.aggregation.result import Heatmaps


def _heatmaps() -> tuple[Heatmaps, np.ndarray, np.ndarray]:
    """Six images: 0, 2, 3 at 4x5 in one block, 5 at 2x2 in another, 1 and 4 without maps."""
    hm = Heatmaps(6)
    a = np.arange(3 * 4 * 5, dtype=np.float16).reshape(3, 4, 5)
    b = np.ones((1, 2, 2), dtype=np.float16)
    hm.add(np.array([0, 2, 3]), a)
    hm.add(np.array([5]), b)
    return hm, a, b


def test_heatmaps_index_like_a_list_of_maps():
    hm, a, b = _heatmaps()
    assert len(hm) == 6
    assert [m is None for m in hm] == [False, True, False, False, True, False]
    np.testing.assert_array_equal(hm[2], a[1])
    np.testing.assert_array_equal(hm[-1], b[0])
    assert [m is None for m in hm[1:4]] == [True, False, False]
    with pytest.raises(IndexError):
        hm[6]
    np.testing.assert_array_equal(hm.present(np.arange(6)), [1, 0, 1, 1, 0, 1])


def test_heatmaps_block_is_a_view_only_for_consecutive_maps_of_one_block():
    hm, a, _ = _heatmaps()
    view = hm.block(np.array([2, 3]))
    assert view is not None and np.shares_memory(view, a)
    np.testing.assert_array_equal(view, a[1:3])
    assert hm.block(np.array([0, 1])) is None  # image 1 has no map
    assert hm.block(np.array([3, 5])) is None  # two blocks
    assert hm.block(np.array([3, 2])) is None  # not in block order
    assert hm.block(np.array([], dtype=np.int64)) is None
