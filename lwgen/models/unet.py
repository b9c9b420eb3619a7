"""A light conditional U-Net: AdaGN residual blocks, attention only at low resolution, optional pixel-unshuffle."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class UNetConfig:
    """Architecture of the denoiser; the defaults diffuse the 16 x 16 x 4 latent of the autoencoder.

    `resolution` and `in_channels` are the side and channels of what the network sees (a latent, or pixels);
    `unshuffle` > 1 folds pixels into channels at the input (pixel space only).
    """

    HELP: ClassVar[dict[str, str]] = {
        "resolution": "side of what the U-Net sees: the latent (image side / autoencoder factor) or the pixels",
        "in_channels": "channels of what the U-Net sees (set from the autoencoder)",
        "base_channels": "channels of the first level; the width of the network",
        "channel_mult": "channel multiplier per level (each further level halves the side)",
        "num_res_blocks": "residual blocks per level",
        "attention_levels": "levels (0-based) that get self-attention",
        "unshuffle": "fold unshuffle x unshuffle pixels into channels at the input (pixel space only)",
        "cond_dim": "width of the condition vector (attributes and text)",
        "emb_dim": "width of the timestep + condition embedding",
        "groups": "GroupNorm groups",
        "head_dim": "channels per attention head",
        "cond_tokens": "condition tokens that the attention levels also attend to (cross-attention), read from the "
                       "condition vector so that it can act differently at each position; 0: the condition only "
                       "scales and shifts the features",
    }

    resolution: int = 16
    in_channels: int = 4
    base_channels: int = 64
    channel_mult: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 1
    attention_levels: tuple[int, ...] = (1, 2)
    unshuffle: int = 1
    cond_dim: int = 256
    emb_dim: int = 256
    groups: int = 16
    head_dim: int = 64
    cond_tokens: int = 0

    def __post_init__(self) -> None:
        self.channel_mult = tuple(self.channel_mult)
        self.attention_levels = tuple(self.attention_levels)
        side = self.resolution // self.unshuffle
        if self.resolution % self.unshuffle or side % 2 ** (len(self.channel_mult) - 1):
            raise ValueError(f"resolution {self.resolution} with unshuffle {self.unshuffle} cannot be halved "
                             f"{len(self.channel_mult) - 1} times")


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps, (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([args.cos(), args.sin()], dim=1)


def _zero(layer: nn.Module) -> None:
    """Zero a layer's weight and bias, so that its block starts as the identity (or its output at zero)."""
    for p in layer.parameters():
        nn.init.zeros_(p)


def _norm(groups: int, channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(groups, channels), channels)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice; the embedding sets a scale and shift of the second norm (AdaGN)."""

    def __init__(self, cin: int, cout: int, emb_dim: int, groups: int):
        super().__init__()
        self.norm1, self.conv1 = _norm(groups, cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * cout)
        self.norm2, self.conv2 = _norm(groups, cout), nn.Conv2d(cout, cout, 3, padding=1)
        _zero(self.conv2)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        return self.skip(x) + self.conv2(F.silu(h))


class CrossAttention(nn.Module):
    """Multi-head attention from the pixels of a feature map to the condition tokens."""

    def __init__(self, channels: int, token_dim: int, groups: int, head_dim: int):
        super().__init__()
        self.heads = max(1, channels // head_dim)
        self.norm = _norm(groups, channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.kv = nn.Linear(token_dim, 2 * channels)
        self.proj = nn.Conv2d(channels, channels, 1)
        _zero(self.proj)  # zero at first: added to a trained U-Net it changes nothing yet

    def forward(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q = self.q(self.norm(x)).reshape(b, self.heads, c // self.heads, h * w).transpose(-1, -2)
        k, v = self.kv(tokens).reshape(b, -1, 2, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, H*W, C/heads)
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class Attention(nn.Module):
    """Multi-head self-attention over the pixels of a feature map, then (with condition tokens) cross-attention
    to the tokens."""

    def __init__(self, channels: int, groups: int, head_dim: int, token_dim: int = 0):
        super().__init__()
        self.heads = max(1, channels // head_dim)
        self.norm = _norm(groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        _zero(self.proj)
        self.cross = CrossAttention(channels, token_dim, groups, head_dim) if token_dim else None

    def forward(self, x: torch.Tensor, tokens: torch.Tensor | None = None) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).unbind(1)
        out = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        x = x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))  # (B, C, H, W)
        if self.cross is not None and tokens is not None:
            x = self.cross(x, tokens)
        return x


class UNet(nn.Module):
    """Maps (x_t, t, condition vector) to the prediction; noise math stays in lwgen.diffusion."""

    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = c = config
        chans = [c.base_channels * m for m in c.channel_mult]
        self.time_mlp = nn.Sequential(nn.Linear(c.base_channels, c.emb_dim), nn.SiLU(), nn.Linear(c.emb_dim, c.emb_dim))
        self.cond_mlp = nn.Sequential(nn.Linear(c.cond_dim, c.emb_dim), nn.SiLU(), nn.Linear(c.emb_dim, c.emb_dim))
        # tokens as wide as one attention head: the cross-attention adds about 0.5 M parameters at the defaults
        self.token_dim = token_dim = c.head_dim if c.cond_tokens else 0
        self.token_proj = nn.Linear(c.cond_dim, c.cond_tokens * token_dim) if c.cond_tokens else None
        self.token_norm = nn.LayerNorm(token_dim) if c.cond_tokens else None
        self.stem = nn.Conv2d(c.in_channels * c.unshuffle ** 2, chans[0], 3, padding=1)
        self.down = nn.ModuleList()
        skips, cur = [chans[0]], chans[0]
        for level, ch in enumerate(chans):
            for _ in range(c.num_res_blocks):
                self.down.append(self._block(cur, ch, level))
                cur = ch
                skips.append(cur)
            if level < len(chans) - 1:
                self.down.append(nn.Conv2d(cur, cur, 3, stride=2, padding=1))
                skips.append(cur)
        self.mid = nn.ModuleList([ResBlock(cur, cur, c.emb_dim, c.groups),
                                  Attention(cur, c.groups, c.head_dim, token_dim)])
        self.up = nn.ModuleList()
        for level in reversed(range(len(chans))):
            for _ in range(c.num_res_blocks + 1):
                self.up.append(self._block(cur + skips.pop(), chans[level], level))
                cur = chans[level]
            if level > 0:
                self.up.append(nn.Upsample(scale_factor=2, mode="nearest"))
        self.out_norm = _norm(c.groups, cur)
        self.out = nn.Conv2d(cur, c.in_channels * c.unshuffle ** 2, 3, padding=1)
        _zero(self.out)

    def _block(self, cin: int, cout: int, level: int) -> nn.Module:
        res = ResBlock(cin, cout, self.config.emb_dim, self.config.groups)
        if level in self.config.attention_levels:
            return nn.ModuleList([res, Attention(cout, self.config.groups, self.config.head_dim, self.token_dim)])
        return res

    @staticmethod
    def _run_layer(layer: nn.Module, h: torch.Tensor, emb: torch.Tensor, tokens: torch.Tensor | None) -> torch.Tensor:
        if isinstance(layer, ResBlock):
            return layer(h, emb)
        if isinstance(layer, nn.ModuleList):  # ResBlock + Attention
            return layer[1](layer[0](h, emb), tokens)
        return layer(h)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x (B, C, R, R), t (B,) timesteps, cond (B, cond_dim) -> prediction (B, C, R, R)."""
        c = self.config
        emb = self.time_mlp(timestep_embedding(t, c.base_channels).to(cond.dtype)) + self.cond_mlp(cond)
        emb = F.silu(emb)
        tokens = None
        if self.token_proj is not None and self.token_norm is not None:
            tokens = self.token_norm(self.token_proj(cond).reshape(cond.shape[0], c.cond_tokens, c.head_dim))
        if c.unshuffle > 1:
            x = F.pixel_unshuffle(x, c.unshuffle)  # (B, C*u*u, R/u, R/u)
        h = self.stem(x)
        hs = [h]
        for layer in self.down:
            h = self._run_layer(layer, h, emb, tokens)
            hs.append(h)
        for layer in self.mid:
            h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h, tokens)
        for layer in self.up:
            if isinstance(layer, nn.Upsample):
                h = layer(h)
            else:
                h = self._run_layer(layer, torch.cat([h, hs.pop()], dim=1), emb, tokens)
        h = self.out(F.silu(self.out_norm(h)))
        if c.unshuffle > 1:
            h = F.pixel_shuffle(h, c.unshuffle)
        return h
