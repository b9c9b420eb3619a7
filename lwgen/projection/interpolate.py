"""Walks between condition vectors: linear and spherical interpolation."""
from __future__ import annotations

import torch

MODES = ("slerp", "lerp")


def lerp(a: torch.Tensor, b: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
    """(1 - t) a + t b."""
    return a + (b - a) * t


def slerp(a: torch.Tensor, b: torch.Tensor, t: float | torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Spherical interpolation (Shoemake 1985) of the direction, with the norm interpolated linearly.

    The direction moves along the great circle from a to b at constant angular speed; the length goes from |a|
    to |b| linearly, so neither endpoint's scale is lost midway as it is with lerp. Near-parallel (or zero)
    vectors fall back on lerp.
    """
    t = torch.as_tensor(t, dtype=a.dtype)
    na, nb = a.norm(dim=-1, keepdim=True), b.norm(dim=-1, keepdim=True)
    ua, ub = a / na.clamp_min(eps), b / nb.clamp_min(eps)
    dot = (ua * ub).sum(-1, keepdim=True).clamp(-1.0, 1.0)
    omega = torch.arccos(dot)
    so = torch.sin(omega)
    safe = (so > 1e-4) & (na > eps) & (nb > eps)
    so = torch.where(safe, so, torch.ones_like(so))
    direction = (torch.sin((1 - t) * omega) * ua + torch.sin(t * omega) * ub) / so
    out = direction * ((1 - t) * na + t * nb)
    return torch.where(safe, out, lerp(a, b, t))


def walk(a: torch.Tensor, b: torch.Tensor, n: int, mode: str = "slerp") -> torch.Tensor:
    """n vectors (n, D) from a (D,) to b (D,), endpoints included, evenly spaced in t."""
    if mode not in MODES:
        raise ValueError(f"unknown interpolation {mode!r}; choose one of {', '.join(MODES)}")
    if n < 2:
        raise ValueError("a walk needs at least 2 points")
    t = torch.linspace(0, 1, n, dtype=a.dtype)[:, None]
    fn = slerp if mode == "slerp" else lerp
    return fn(a[None], b[None], t)
