"""Samplers: plain functions sharing one signature.

Each takes ``denoise(x_t, t) -> x0`` (``t`` a LongTensor of training timesteps, one per sample), the initial
noise ``x``, the descending ``timesteps`` to visit, the schedule's alpha-bar, a ``noise`` source for the
stochastic samplers and an optional ``callback(info)`` called after every step with
``{"i", "n", "t", "x", "x0"}``. After the last timestep the sample moves to the clean image (sigma = 0).
"""
from __future__ import annotations

from collections.abc import Callable

import torch

Denoise = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Noise = Callable[[], torch.Tensor]
Callback = Callable[[dict], None]


def spaced_timesteps(steps: int, timesteps: int = 1000) -> torch.Tensor:
    """`steps` timesteps with trailing spacing, from T-1 down (Lin et al. 2024, table 2)."""
    if not 1 <= steps <= timesteps:
        raise ValueError(f"steps must be between 1 and {timesteps}, got {steps}")
    t = torch.linspace(timesteps, 0, steps + 1, dtype=torch.float64)[:-1].round().long() - 1
    return t


def _abar_at(alphas_cumprod: torch.Tensor, timesteps: torch.Tensor) -> list[float]:
    """Alpha-bar at each visited timestep, then 1.0 for the clean image."""
    return [float(alphas_cumprod[t]) for t in timesteps] + [1.0]


def _step_t(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return torch.full((x.shape[0],), int(t), dtype=torch.long)


@torch.no_grad()
def sample_ddim(denoise: Denoise, x: torch.Tensor, timesteps: torch.Tensor, alphas_cumprod: torch.Tensor,
                noise: Noise | None = None, callback: Callback | None = None, eta: float = 0.0) -> torch.Tensor:
    """DDIM (Song et al. 2021); eta = 0 is deterministic, eta = 1 is ancestral DDPM on the skipped steps."""
    if eta > 0 and noise is None:
        raise ValueError("DDIM with eta > 0 needs a noise source")
    abars = _abar_at(alphas_cumprod, timesteps)
    n = len(timesteps)
    for i, t in enumerate(timesteps):
        a, a_next = abars[i], abars[i + 1]
        x0 = denoise(x, _step_t(x, t))
        eps = (x - a ** 0.5 * x0) / (1 - a) ** 0.5
        sigma = eta * ((1 - a_next) / (1 - a) * (1 - a / a_next)) ** 0.5 if a_next < 1 else 0.0
        x = a_next ** 0.5 * x0 + max(1 - a_next - sigma ** 2, 0.0) ** 0.5 * eps
        if sigma > 0 and noise is not None:  # eta > 0 without noise was refused above
            x = x + sigma * noise()
        if callback is not None:
            callback({"i": i, "n": n, "t": int(t), "x": x, "x0": x0})
    return x


def sample_ddpm(denoise: Denoise, x: torch.Tensor, timesteps: torch.Tensor, alphas_cumprod: torch.Tensor,
                noise: Noise | None = None, callback: Callback | None = None) -> torch.Tensor:
    """Ancestral DDPM sampling (Ho et al. 2020), on any subset of timesteps."""
    return sample_ddim(denoise, x, timesteps, alphas_cumprod, noise=noise, callback=callback, eta=1.0)


@torch.no_grad()
def sample_dpmpp_2m(denoise: Denoise, x: torch.Tensor, timesteps: torch.Tensor, alphas_cumprod: torch.Tensor,
                    noise: Noise | None = None, callback: Callback | None = None) -> torch.Tensor:
    """DPM-Solver++(2M), the multistep second-order data-prediction solver (Lu et al. 2022)."""
    abars = _abar_at(alphas_cumprod, timesteps)
    n = len(timesteps)
    lam = [0.5 * (torch.tensor(a).log() - torch.tensor(1 - a).log()).item() if a < 1 else float("inf")
           for a in abars]
    x0_prev: torch.Tensor | None = None
    h_prev = 0.0  # set with x0_prev
    for i, t in enumerate(timesteps):
        a, a_next = abars[i], abars[i + 1]
        x0 = denoise(x, _step_t(x, t))
        if a_next >= 1:
            x = x0
        else:
            h = lam[i + 1] - lam[i]
            d = x0
            if x0_prev is not None:
                r = h_prev / h
                d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * x0_prev
            sigma_ratio = ((1 - a_next) / (1 - a)) ** 0.5
            x = sigma_ratio * x - a_next ** 0.5 * torch.expm1(torch.tensor(-h)).item() * d
            h_prev = h
        x0_prev = x0
        if callback is not None:
            callback({"i": i, "n": n, "t": int(t), "x": x, "x0": x0})
    return x


SAMPLERS: dict[str, Callable[..., torch.Tensor]] = {
    "ddpm": sample_ddpm,
    "ddim": sample_ddim,
    "dpmpp": sample_dpmpp_2m,
}


def get_sampler(name: str) -> Callable[..., torch.Tensor]:
    """Look a sampler up by name, with an error that lists the valid ones."""
    try:
        return SAMPLERS[name]
    except KeyError:
        raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}") from None
