"""Variance schedules: each a pure function returning alpha-bar (cumulative signal fraction) per timestep."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

SCHEDULES = ("linear", "cosine", "sigmoid")
PREDICTIONS = ("v", "eps")


def linear(timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """Linear betas of DDPM (Ho et al. 2020)."""
    betas = torch.linspace(beta_start, beta_end, timesteps, dtype=torch.float64)
    return torch.cumprod(1.0 - betas, 0)


def cosine(timesteps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Cosine alpha-bar of improved DDPM (Nichol & Dhariwal 2021), betas clipped at max_beta."""
    t = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    betas = (1 - f[1:] / f[:-1]).clamp(max=max_beta)
    return torch.cumprod(1.0 - betas, 0)


def sigmoid(timesteps: int = 1000, start: float = -3.0, end: float = 3.0, tau: float = 1.0) -> torch.Tensor:
    """Sigmoid alpha-bar of Jabri et al. 2023 ("Scalable adaptive computation"), rescaled to 1 at t=0."""
    t = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
    v_start, v_end = torch.sigmoid(torch.tensor(start / tau)), torch.sigmoid(torch.tensor(end / tau))
    f = (-torch.sigmoid((t * (end - start) + start) / tau) + v_end) / (v_end - v_start)
    betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
    return torch.cumprod(1.0 - betas, 0)


@dataclass
class ScheduleConfig:
    """Noise schedule and what the network predicts."""

    HELP: ClassVar[dict[str, str]] = {
        "name": "variance schedule",
        "timesteps": "number of diffusion timesteps",
        "prediction": "what the network predicts: v (velocity) or eps (the noise)",
        "beta_start": "first beta of the linear schedule",
        "beta_end": "last beta of the linear schedule",
        "cosine_s": "offset s of the cosine schedule (Nichol and Dhariwal 2021)",
    }
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"name": SCHEDULES, "prediction": PREDICTIONS}

    name: str = "cosine"
    timesteps: int = 1000
    prediction: str = "v"
    beta_start: float = 1e-4
    beta_end: float = 0.02
    cosine_s: float = 0.008

    def __post_init__(self) -> None:
        if self.name not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.name!r}; choose one of {', '.join(SCHEDULES)}")
        if self.prediction not in PREDICTIONS:
            raise ValueError(f"unknown prediction {self.prediction!r}; choose one of {', '.join(PREDICTIONS)}")
        if self.timesteps < 2:
            raise ValueError("timesteps must be at least 2")

    def alphas_cumprod(self) -> torch.Tensor:
        """Alpha-bar for timesteps 0..T-1 (float64)."""
        if self.name == "linear":
            return linear(self.timesteps, self.beta_start, self.beta_end)
        if self.name == "cosine":
            return cosine(self.timesteps, self.cosine_s)
        return sigmoid(self.timesteps)
