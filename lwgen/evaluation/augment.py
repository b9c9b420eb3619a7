"""Semantics-preserving batch augmentation for the domain classifier: shift/scale, blur, noise, mild tone changes.

No flips or rotations (flags, text and arrows change meaning). Blur, down-up resampling and noise make the
classifier judge imperfect generated samples by their content rather than by their texture.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class AugmentConfig:
    """Probabilities and ranges of each augmentation (images in [-1, 1])."""

    p_affine: float = 0.8
    max_shift: float = 0.08  # fraction of the image side
    max_scale: float = 0.1  # zoom in [1 - s, 1 + s]
    p_blur: float = 0.25
    max_sigma: float = 1.2  # pixels at the classifier's input side
    p_resample: float = 0.15  # area down by 2, bicubic up: a lower-resolution look
    p_noise: float = 0.25
    max_noise: float = 0.08
    p_tone: float = 0.4
    max_tone: float = 0.1  # brightness shift and contrast change
    p_flip: float = 0.0  # horizontal mirror (drawn last, so the other draws do not depend on it)


def _uniform(n: int, lo: float, hi: float, g: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g)


def _pick(n: int, p: float, g: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=g) < p


def random_affine(x: torch.Tensor, max_shift: float, max_scale: float, g: torch.Generator) -> torch.Tensor:
    """Random zoom and translation per image, filling uncovered pixels with white (+1)."""
    n = x.shape[0]
    scale = _uniform(n, 1 - max_scale, 1 + max_scale, g)
    shift = _uniform(2 * n, -2 * max_shift, 2 * max_shift, g).view(n, 2)  # affine_grid spans [-1, 1]
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1 / scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x - 1, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + 1


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur with one sigma (pixels) per image; edges replicate."""
    n, c, h, w = x.shape
    radius = max(1, int(torch.ceil(2.5 * sigma.max()).item()))
    taps = torch.arange(-radius, radius + 1, dtype=x.dtype)
    k = torch.exp(-0.5 * (taps[None] / sigma[:, None].clamp_min(1e-3)) ** 2)
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (n*c, taps)
    y = F.pad(x.reshape(1, n * c, h, w), (radius, radius, radius, radius), mode="replicate")
    y = F.conv2d(y, k[:, None, None, :], groups=n * c)
    y = F.conv2d(y, k[:, None, :, None], groups=n * c)
    return y.view(n, c, h, w)


def augment(x: torch.Tensor, g: torch.Generator, config: AugmentConfig | None = None) -> torch.Tensor:
    """Augment a float batch in [-1, 1] (B, 3, S, S); every random choice comes from generator g."""
    c = config or AugmentConfig()
    x = x.clone()
    n = x.shape[0]
    sel = _pick(n, c.p_affine, g)
    if sel.any():
        x[sel] = random_affine(x[sel], c.max_shift, c.max_scale, g)
    sel = _pick(n, c.p_resample, g)
    if sel.any() and x.shape[-1] % 2 == 0:
        low = F.avg_pool2d(x[sel], 2)
        x[sel] = F.interpolate(low, scale_factor=2, mode="bicubic", align_corners=False).clamp(-1, 1)
    sel = _pick(n, c.p_blur, g)
    if sel.any():
        x[sel] = gaussian_blur(x[sel], _uniform(int(sel.sum()), 0.3, c.max_sigma, g))
    sel = _pick(n, c.p_tone, g)
    if sel.any():
        m = int(sel.sum())
        contrast = _uniform(m, 1 - c.max_tone, 1 + c.max_tone, g).view(m, 1, 1, 1)
        bright = _uniform(m, -c.max_tone, c.max_tone, g).view(m, 1, 1, 1)
        x[sel] = x[sel] * contrast + bright
    sel = _pick(n, c.p_noise, g)
    if sel.any():
        m = int(sel.sum())
        sigma = _uniform(m, 0.0, c.max_noise, g).view(m, 1, 1, 1)
        x[sel] = x[sel] + sigma * torch.randn(x[sel].shape, generator=g)
    if c.p_flip > 0:
        sel = _pick(n, c.p_flip, g)
        x[sel] = x[sel].flip(-1)
    return x.clamp(-1, 1)
