"""Up-scaler: a residual CNN over a bicubic skip with a pixel-shuffle tail, exactly bicubic at initialisation."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class UpscalerConfig:
    """Scale factor and body size of the up-scaler."""

    HELP: ClassVar[dict[str, str]] = {
        "scale": "up-scaling factor (2, 3, 4 or 8)",
        "channels": "channels of the residual body",
        "num_blocks": "residual blocks in the body",
    }

    scale: int = 4
    channels: int = 32
    num_blocks: int = 4

    def __post_init__(self) -> None:
        if self.scale not in (2, 3, 4, 8):
            raise ValueError(f"scale must be 2, 3, 4 or 8, got {self.scale}")


class Upscaler(nn.Module):
    """x (B, 3, h, w) in [-1, 1] -> (B, 3, h*s, w*s): bicubic(x) + a learned residual."""

    def __init__(self, config: UpscalerConfig):
        super().__init__()
        self.config = c = config
        self.head = nn.Conv2d(3, c.channels, 3, padding=1)
        self.body = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c.channels, c.channels, 3, padding=1), nn.SiLU(),
                          nn.Conv2d(c.channels, c.channels, 3, padding=1))
            for _ in range(c.num_blocks))
        self.tail = nn.Conv2d(c.channels, 3 * c.scale ** 2, 3, padding=1)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.config.scale
        base = F.interpolate(x, scale_factor=s, mode="bicubic", align_corners=False)
        h = self.head(x)
        for block in self.body:
            h = h + block(h)
        return base + F.pixel_shuffle(self.tail(h), s)  # (B, 3, h*s, w*s)
