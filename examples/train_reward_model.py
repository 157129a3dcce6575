"""Train a small reward model on an rfengine output and evaluate it as RAHF is evaluated.

    rfengine demo                                           # writes rfengine-demo/
    python examples/train_reward_model.py rfengine-demo/aggregate [--steps 600] [--seed 0]

A few conv layers (no pretrained backbone, CPU-friendly) predict both heatmaps and the three
scores from the image, trained through ``rfengine.train.dataset.RichFeedbackDataset``: maps by KL to
the target distribution, scores and map peaks by MSE, with the 8 rotations/flips as
augmentation. The last quarter of the images (by dataset order) is held out. Held-out
predictions are written as safetensors and scored by ``rfengine.train.metrics.evaluate`` before and
after training; the script prints both reports and exits 0.

What it can learn from the demo: where the defects are (both maps) and the coherence score
(a broken object is visible). It sees the image only, so it cannot tell a wrong colour or
count from the prompt (alignment), and the demo's style ratings are drawn independently of
the pixels: their held-out SRCC stays at chance, as it should.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn
from torch.utils.data import DataLoader, Subset

from rfengine.schema import HEATMAP_KINDS
from rfengine.train.dataset import RichFeedbackDataset, collate
from rfengine.train.evaluate import evaluate

IMAGE = (64, 64)
MAPS = (32, 32)


class TinyRewardModel(nn.Module):
    """Image (3, 64, 64) -> per kind a map of logits (32, 32), and three scores in [0, 1].

    Each map is a distribution over pixels (softmax of its logits), trained as saliency
    models are, by KL to the target normalised to sum 1. How strongly something is found
    anywhere is the logits' log-mean-exp (a soft maximum); that and the logits' mean are all
    the score head and the peak head see. Reading scores only through the maps is what keeps
    a model this small from memorising its ~100 training images: a broken object both draws
    the coherence clicks and lowers the coherence score, so one detector serves both.
    """

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
        kinds = len(HEATMAP_KINDS)
        self.maps = nn.Conv2d(width, kinds, 1)
        self.scores = nn.Linear(2 * kinds, 3)
        self.peaks = nn.Linear(2 * kinds, kinds)  # each target map's maximum, in its units

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.maps(self.body((image - 0.5) / 0.25))  # (B, kinds, 32, 32)
        flat = logits.flatten(2)
        found = torch.logsumexp(flat, dim=2) - math.log(flat.shape[2])
        pooled = torch.cat([found, flat.mean(dim=2)], dim=1)
        return {
            "logits": logits,
            "scores": torch.sigmoid(self.scores(pooled)),
            "peaks": torch.sigmoid(self.peaks(pooled)),
        }

    @staticmethod
    def heatmaps(out: dict[str, torch.Tensor]) -> torch.Tensor:
        """The predicted maps in the targets' units: each distribution scaled to the
        predicted peak. (B, kinds, 32, 32)."""
        p = torch.softmax(out["logits"].flatten(2), dim=2).view_as(out["logits"])
        return p / p.amax(dim=(2, 3), keepdim=True) * out["peaks"][..., None, None]


def predict(
    model: TinyRewardModel, data: RichFeedbackDataset, rows: list[int], folder: Path
) -> Path:
    """Held-out predictions as safetensors, one file per target map size (the targets'
    native sizes may differ), for ``rfengine.train.metrics.evaluate``."""
    model.eval()
    groups: dict[tuple[int, int], dict[str, list]] = {}
    with torch.no_grad():
        for k in rows:
            item = data[k]
            out = model(item["image"][None])
            size = tuple(data.targets(k)["coherence_heatmap"].shape)  # the target's
            g = groups.setdefault(
                size, {"ids": [], "scores_norm": [], **{m: [] for m in HEATMAP_KINDS}}
            )
            g["ids"].append(item["image_id"])
            g["scores_norm"].append(out["scores"][0])
            maps = model.heatmaps(out)
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


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the entries whose mask is set (maps not collected or scores null are left
    out, never taken as zeros)."""
    mask = mask.expand_as(values).float()
    return (values * mask).sum() / mask.sum().clamp(min=1)


def augment(batch: dict, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One of the 8 rotations/flips of the square, applied to the images and their maps
    alike (scores do not change). Returns image (B, 3, H, W), maps (B, kinds, h, w) with
    NaN as 0, and the maps' mask (B, kinds)."""
    maps = torch.stack([torch.nan_to_num(batch[f"{k}_heatmap"]) for k in HEATMAP_KINDS], 1)
    mask = torch.stack([batch[f"{k}_mask"] for k in HEATMAP_KINDS], 1)
    # one draw of two values in [0, 4): quarter turns, and a flip when the second is odd
    turns, flip = (int(v) for v in torch.randint(0, 4, (2,), generator=g))
    image = batch["image"]
    image, maps = (torch.rot90(t, turns, dims=(-2, -1)) for t in (image, maps))
    if flip % 2:
        image, maps = image.flip(-1), maps.flip(-1)
    return image, maps, mask


def loss_fn(
    out: dict[str, torch.Tensor], batch: dict, maps: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Scores and peaks: MSE. Maps: KL from the target (normalised to sum 1) to the
    predicted distribution, over maps that were collected and are not empty."""
    score_err = (out["scores"] - torch.nan_to_num(batch["scores_norm"])) ** 2
    scores = masked_mean(score_err, batch["scores_mask"])
    flat = maps.flatten(2)
    total = flat.sum(dim=2)
    peaks = masked_mean((out["peaks"] - flat.amax(dim=2)) ** 2, mask)
    target = flat / total[..., None].clamp(min=1e-8)
    kl = -(target * torch.log_softmax(out["logits"].flatten(2), dim=2)).sum(dim=2)
    where = mask & (total > 0)
    return 10 * scores + peaks + masked_mean(kl, where)


def train(out: Path, steps: int, seed: int = 0, keep: Path | None = None) -> tuple[dict, dict]:
    """Train for ``steps``; the held-out report before and after (``keep``: a new folder
    to keep the trained model's held-out predictions in, for ``rfengine evaluate``)."""
    if keep is not None and keep.exists():
        raise SystemExit(f"{keep} exists; choose a new folder for the predictions")
    torch.manual_seed(seed)
    data = RichFeedbackDataset(out, image_size=IMAGE, heatmap_size=MAPS)
    n = len(data)
    train_rows, held_rows = list(range(n - n // 4)), list(range(n - n // 4, n))
    model = TinyRewardModel()
    with tempfile.TemporaryDirectory() as tmp:
        # held-out images only: the others are left out of every figure, and counted
        before = evaluate(
            out, predict(model, data, held_rows, Path(tmp) / "before"), invalid="exclude"
        )
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        g = torch.Generator().manual_seed(seed)
        loader = DataLoader(
            Subset(data, train_rows), batch_size=8, shuffle=True, collate_fn=collate, generator=g
        )
        done = 0
        while done < steps:
            for batch in loader:
                model.train()
                image, maps, mask = augment(batch, g)
                loss = loss_fn(model(image), batch, maps, mask)
                opt.zero_grad()
                loss.backward()
                opt.step()
                done += 1
                if done >= steps:
                    break
        after = evaluate(
            out, predict(model, data, held_rows, keep or Path(tmp) / "after"), invalid="exclude"
        )
    return before, after


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("output", type=Path, help="an rfengine output with embedded images")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--seed", type=int, default=0, help="weights, batch order, augmentation")
    ap.add_argument("--json", type=Path, help="write {before, after} here")
    ap.add_argument(
        "--pred", type=Path, help="a new folder to keep the held-out predictions in (safetensors)"
    )
    args = ap.parse_args()
    before, after = train(args.output, args.steps, args.seed, args.pred)
    for name, rep in (("before", before), ("after", after)):
        cc = {k: round(v["cc"], 3) for k, v in rep["heatmaps"].items()}
        srcc = {k: round(v["srcc"], 3) for k, v in rep["scores"].items()}
        print(f"{name:6s} held-out heatmap CC {cc}  score SRCC {srcc}")
    if args.json:
        args.json.write_text(json.dumps({"before": before, "after": after}, indent=2) + "\n")


if __name__ == "__main__":
    main()
