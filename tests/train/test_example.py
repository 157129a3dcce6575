"""The training example (``examples/train_reward_model.py``) end to end."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


@pytest.mark.slow
def test_training_example_improves_held_out_heatmaps_and_coherence_srcc(tmp_path):
    """The example learns where defects are: held-out CC of both maps rises. 250 steps
    (~16 s here, idle) and a fixed seed keep it fast; the margins asserted are about half the
    smallest gain over seeds 0-2 at 250 steps (coherence CC +0.34 to +0.58, alignment +0.09
    to +0.21 when this was written), and the limit is generous for a loaded machine. The
    coherence SRCC is not asserted here: at 250 steps it is not yet stable (0.17-0.42 on
    seed 0), at 600 it is (README: 0.70-0.80 over seeds 0-6)."""
    from rfengine import aggregate_to_disk
    from rfengine.sim.simulate import simulate

    camp = simulate(tmp_path / "c", n_images=160, seed=1)
    aggregate_to_disk(
        camp / "images.jsonl", camp / "responses.jsonl", tmp_path / "o", heatmap_size="64x64"
    )
    result = tmp_path / "r.json"
    cmd = [sys.executable, str(ROOT / "examples" / "train_reward_model.py"), str(tmp_path / "o")]
    subprocess.run([*cmd, "--steps", "250", "--json", str(result)], check=True, timeout=900)
    rep = json.loads(result.read_text())
    gains = {
        kind: rep["after"]["heatmaps"][kind]["cc"] - rep["before"]["heatmaps"][kind]["cc"]
        for kind in ("coherence", "alignment")
    }
    assert gains["coherence"] > 0.15 and gains["alignment"] > 0.04, gains
