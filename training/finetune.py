"""Optional fine-tuning of the backbone (``--finetune``): GPU if there is one, else CPU.

The backbone is trained end to end with two linear heads, models on the grayscale view
and SKUs on the colour view, with flip and scale augmentation. The fine-tuned weights go
into the bundle; the cascade's heads are then fitted on its embeddings as usual. The
``tiny`` backbone is trained from scratch this way.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image as PILImage
from torch import nn

from inference.backbones import build_backbone, get_spec
from inference.preprocess import Preprocessing, square_picture, view_array


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _augment(batch: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """Random left-right flip and a random zoom/shift per picture (white fill)."""
    n = batch.shape[0]
    flip = torch.rand(n, generator=rng) < 0.5
    batch = torch.where(flip.view(n, 1, 1, 1), batch.flip(3), batch)
    scale = 0.85 + 0.3 * torch.rand(n, generator=rng)
    shift = (torch.rand(n, 2, generator=rng) - 0.5) * 0.2
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(batch.shape), align_corners=False)
    out = F.grid_sample(batch - 1.0, grid, padding_mode="zeros", align_corners=False)
    return out + 1.0  # sampled around 1.0 (white) so the fill is white


def finetune(
    pictures: Sequence[PILImage.Image],
    model_labels: Sequence[int],
    sku_labels: Sequence[int | None],
    n_models: int,
    n_skus: int,
    backbone_name: str,
    pre: Preprocessing,
    epochs: int,
    lr: float | None = None,
    batch_size: int = 32,
    seed: int = 0,
    progress: Callable[[float, str], None] | None = None,
) -> dict[str, torch.Tensor]:
    """Train the backbone on labelled pictures; returns its state dict (on the CPU)."""
    torch.manual_seed(seed)
    rng = torch.Generator().manual_seed(seed)
    dev = device()
    scratch = backbone_name == "tiny"
    backbone = build_backbone(backbone_name, pretrained=not scratch)
    dim = get_spec(backbone_name).dim
    head1 = nn.Linear(dim, max(n_models, 1))
    head2 = nn.Linear(dim, max(n_skus, 1))
    modules = nn.ModuleList([backbone, head1, head2]).to(dev)
    squares = [square_picture(p, pre) for p in pictures]
    gray = np.stack([view_array(s, "gray") for s in squares])
    colour = np.stack([view_array(s, "colour") for s in squares])
    y1 = torch.tensor(list(model_labels))
    y2 = torch.tensor([-100 if s is None else s for s in sku_labels])
    lr = lr if lr is not None else (3e-3 if scratch else 1e-4)
    opt = torch.optim.AdamW(modules.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * math.ceil(len(squares) / batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1))
    mean = torch.tensor(pre.mean).view(1, 3, 1, 1)
    std = torch.tensor(pre.std).view(1, 3, 1, 1)
    modules.train()
    step = 0
    for epoch in range(epochs):
        order = torch.randperm(len(squares), generator=rng)
        total = 0.0
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            views = torch.cat(
                [
                    torch.from_numpy(gray[idx.numpy()]),
                    torch.from_numpy(colour[idx.numpy()]),
                ]
            )
            x = _augment(views.permute(0, 3, 1, 2).float() / 255.0, rng)
            x = ((x - mean) / std).to(dev)
            feats = backbone(x)
            f_gray, f_colour = feats.split(len(idx))
            loss = F.cross_entropy(head1(f_gray), y1[idx].to(dev))
            if (y2[idx] >= 0).any():
                loss = loss + F.cross_entropy(head2(f_colour), y2[idx].to(dev), ignore_index=-100)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            total += float(loss.detach()) * len(idx)
        if progress:
            progress(
                (epoch + 1) / epochs,
                f"fine-tuning epoch {epoch + 1}/{epochs}: loss {total / len(order):.3f}",
            )
    backbone.eval()
    return {k: v.detach().cpu() for k, v in backbone.state_dict().items()}
