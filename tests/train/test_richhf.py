"""The RichHF-18K-style export (``train.richhf``)."""

import io
import re

import datasets
import numpy as np
import pytest
from PIL import Image

from rfengine.train.dataset import RichFeedbackDataset
from rfengine.train.richhf import export_richhf, richhf_prompts


def _richhf_reference_tokens(prompt, labels):
    """youweiliang/RichHF get_dataset.py's match_misalignment_label_to_token, transcribed."""
    delimiters = ',.?!":; '
    pattern = "|".join(map(re.escape, delimiters))
    tokens = [t for t in re.split(pattern, prompt) if t]
    labeled = " ".join(
        [f"{t}_{lab}" if lab == 0 else t for t, lab in zip(tokens, labels, strict=True)]
    )
    return labeled, " ".join(tokens)


def test_richhf_prompts_match_the_reference_tokeniser():
    prompt = 'A "red" cube, two spheres; one tiny: blue? pyramid!'
    words = prompt.split()
    bad = [False, True, False, False, True, False, False, False, False]
    clean, labeled, labels = richhf_prompts(prompt, bad)
    ref_labeled, ref_clean = _richhf_reference_tokens(prompt, [int(v) for v in labels.split()])
    assert (clean, labeled) == (ref_clean, ref_labeled)
    assert len(labels.split()) == len(clean.split()) and len(words) == len(bad)


def test_export_reads_as_the_richhf_trainer_reads_it(demo, tmp_path):
    counts = export_richhf(demo, tmp_path / "rhf", fractions=(0.5, 0.25, 0.25))
    full = datasets.load_from_disk(str(tmp_path / "rhf"))
    assert set(full) == {"train", "dev", "test"} and sum(counts.values()) == 24
    data = RichFeedbackDataset(demo)
    ids = {data[k]["image_id"]: k for k in range(len(data))}
    for split in full:
        for sample in full[split]:
            # as RichHF's HuggingFaceDataset.__getitem__ reads a sample (PIL instead of the
            # ViT processor and torchvision's ToTensor)
            img = Image.open(io.BytesIO(sample["image"]))
            maps = {}
            for key in ("artifact_map", "misalignment_map"):
                m = Image.open(io.BytesIO(sample[key]))
                maps[key] = np.asarray(m, dtype=np.float32) / 255.0
                assert m.size == (512, 512) and m.mode == "L"
            for key in (
                "artifact_score",
                "misalignment_score",
                "overall_score",
                "aesthetics_score",
            ):
                np.array(sample[key], dtype=np.float32)
            assert "_0" not in sample["clean_prompt"]
            item = data[ids[sample["filename"]]]
            assert img.size == (item["image"].shape[2], item["image"].shape[1])
            assert sample["artifact_score"] == pytest.approx(float(item["scores_norm"][1]))
            assert sample["misalignment_score"] == pytest.approx(float(item["scores_norm"][2]))
            heat = item["coherence_heatmap"] if item["coherence_mask"] else None
            if heat is None:
                assert maps["artifact_map"].max() == 0
            else:
                assert abs(float(maps["artifact_map"].max()) - float(heat.max())) < 0.05
            n_bad = int(item["token_labels"].sum())
            if n_bad:
                assert "_0" in sample["labeled_prompt"]
