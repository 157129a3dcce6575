import numpy as np
import pytest

from rfengine.schema import (
    CRITERIA,
    HEATMAP_KINDS,
    POINT_TASKS,
    REGION_KINDS,
    REGION_TASKS,
    TASKS,
    Task,
    size_key,
    split_size_key,
)


def test_vocabulary():
    assert TASKS == (
        "style",
        "coherence",
        "alignment",
        "coherence_points",
        "alignment_points",
        "words",
        "coherence_regions",
        "alignment_regions",
    )
    assert CRITERIA == ("style", "coherence", "alignment")
    assert HEATMAP_KINDS == ("coherence", "alignment")
    assert [t.label for t in POINT_TASKS] == ["coherence_points", "alignment_points"]
    assert [int(Task.from_name(t)) for t in TASKS] == list(range(8))
    assert REGION_KINDS == ("coherence_region", "alignment_region")
    assert [t.label for t in REGION_TASKS] == ["coherence_regions", "alignment_regions"]


def test_task_predicates():
    assert [t.is_rating for t in Task] == [True] * 3 + [False] * 5
    assert [t.is_points for t in Task] == [False] * 3 + [True] * 2 + [False] * 3
    assert [t.is_regions for t in Task] == [False] * 6 + [True] * 2
    with pytest.raises(ValueError, match="has no heatmap"):
        _ = Task.WORDS.heatmap_kind
    with pytest.raises(ValueError, match="unknown task 'clicks'"):
        Task.from_name("clicks")


def test_size_key_round_trips():
    h, w = np.array([1, 512, 16384]), np.array([3, 768, 16384])
    keys = size_key(h, w)
    assert [split_size_key(k) for k in keys] == [(1, 3), (512, 768), (16384, 16384)]
    assert len(np.unique(size_key(np.array([1, 2]), np.array([2, 1])))) == 2
