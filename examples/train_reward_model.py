"""Train a small reward model on an rfengine output and evaluate it as RAHF is evaluated.

    rfengine demo                                           # writes rfengine-demo/
    python examples/train_reward_model.py rfengine-demo/aggregate [--steps 300]

A few conv layers (no pretrained backbone, CPU-friendly) predict both heatmaps and the three
scores from the image, trained with MSE through ``rfengine.data.RichFeedbackDataset``; the
last quarter of the images (by dataset order) is held out. Held-out predictions are written
as safetensors and scored by ``rfengine.metrics.evaluate`` before and after training; the
script prints both reports and exits 0.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn
from torch.utils.data import DataLoader, Subset

from rfengine.data import RichFeedbackDataset, collate
from rfengine.metrics import evaluate
from rfengine.schema import HEATMAP_KINDS

IMAGE = (64, 64)
MAPS = (32, 32)


class TinyRewardModel(nn.Module):
    """Image (3, 64, 64) -> two maps (32, 32) in [0, 1] and three scores in [0, 1]."""

    def __init__(self, width: int = 24):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, stride=2, padding=1),  # 32 x 32
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=2, dilation=2),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=4, dilation=4),
            nn.ReLU(),
        )
        self.maps = nn.Conv2d(width, len(HEATMAP_KINDS), 1)
        self.scores = nn.Linear(2 * width + 2 * len(HEATMAP_KINDS), 3)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(image)
        maps = torch.sigmoid(self.maps(h))
        # scores see how much of each feature and its worst spot, and the predicted maps'
        # peaks and mass (a visible defect lowers coherence)
        pooled = [
            h.mean(dim=(2, 3)),
            h.amax(dim=(2, 3)),
            maps.amax(dim=(2, 3)),
            maps.mean(dim=(2, 3)),
        ]
        return maps, torch.sigmoid(self.scores(torch.cat(pooled, dim=1)))


def predict(model: nn.Module, data: RichFeedbackDataset, rows: list[int], folder: Path) -> Path:
    """Held-out predictions as safetensors, one file per target map size (the targets'
    native sizes may differ), for ``rfengine.metrics.evaluate``."""
    model.eval()
    groups: dict[tuple[int, int], dict[str, list]] = {}
    with torch.no_grad():
        for k in rows:
            item = data[k]
            maps, scores = model(item["image"][None])
            size = tuple(data.targets(k)["coherence_heatmap"].shape)  # the target's
            g = groups.setdefault(
                size, {"ids": [], "scores_norm": [], **{m: [] for m in HEATMAP_KINDS}}
            )
            g["ids"].append(item["image_id"])
            g["scores_norm"].append(scores[0])
            up = F.interpolate(maps, size=size, mode="bilinear", align_corners=False)[0]
            for i, kind in enumerate(HEATMAP_KINDS):
                g[kind].append(up[i])
    folder.mkdir(parents=True, exist_ok=True)
    for (h, w), g in groups.items():
        tensors = {"scores_norm": torch.stack(g["scores_norm"]).contiguous()}
        for kind in HEATMAP_KINDS:
            tensors[f"{kind}_heatmap"] = torch.stack(g[kind]).contiguous()
        save_file(
            tensors, str(folder / f"{h}x{w}.safetensors"), {"image_ids": json.dumps(g["ids"])}
        )
    return folder


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MSE over the entries whose mask is set (maps not collected or scores null are left
    out, never taken as zeros)."""
    target = torch.nan_to_num(target)
    while mask.dim() < pred.dim():
        mask = mask[..., None]
    mask = mask.expand_as(pred).float()
    return ((pred - target) ** 2 * mask).sum() / mask.sum().clamp(min=1)


def train(out: Path, steps: int, seed: int = 0) -> tuple[dict, dict]:
    torch.manual_seed(seed)
    data = RichFeedbackDataset(out, image_size=IMAGE, heatmap_size=MAPS)
    n = len(data)
    train_rows, held_rows = list(range(n - n // 4)), list(range(n - n // 4, n))
    model = TinyRewardModel()
    with tempfile.TemporaryDirectory() as tmp:
        before = evaluate(out, predict(model, data, held_rows, Path(tmp) / "before"))
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        loader = DataLoader(
            Subset(data, train_rows), batch_size=8, shuffle=True, collate_fn=collate,
            generator=torch.Generator().manual_seed(seed),
        )  # fmt: skip
        done = 0
        while done < steps:
            for batch in loader:
                model.train()
                maps, scores = model(batch["image"])
                loss = masked_mse(scores, batch["scores_norm"], batch["scores_mask"])
                for i, kind in enumerate(HEATMAP_KINDS):
                    # each map scaled to peak 1: CC, KLD, SIM, NSS and AUC ignore the scale,
                    # and a weak map (few annotators clicked) still teaches where
                    target = torch.nan_to_num(batch[f"{kind}_heatmap"])
                    target = target / target.amax(dim=(1, 2), keepdim=True).clamp(min=1e-6)
                    loss = loss + masked_mse(maps[:, i], target, batch[f"{kind}_mask"])
                opt.zero_grad()
                loss.backward()
                opt.step()
                done += 1
                if done >= steps:
                    break
        after = evaluate(out, predict(model, data, held_rows, Path(tmp) / "after"))
    return before, after


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("output", type=Path, help="an rfengine output with embedded images")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--json", type=Path, help="write {before, after} here")
    args = ap.parse_args()
    before, after = train(args.output, args.steps)
    for name, rep in (("before", before), ("after", after)):
        cc = {k: round(v["cc"], 3) for k, v in rep["heatmaps"].items()}
        srcc = {k: round(v["srcc"], 3) for k, v in rep["scores"].items()}
        print(f"{name:6s} held-out heatmap CC {cc}  score SRCC {srcc}")
    if args.json:
        args.json.write_text(json.dumps({"before": before, "after": after}, indent=2) + "\n")


if __name__ == "__main__":
    main()
