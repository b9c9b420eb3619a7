"""Noise schedules, parameterisations and samplers; no network code lives here."""
from .parameterization import add_noise, loss_weight, target, to_x0
from .samplers import (
    SAMPLERS,
    get_sampler,
    sample_ddim,
    sample_ddpm,
    sample_dpmpp_2m,
    spaced_timesteps,
)
from .schedules import PREDICTIONS, SCHEDULES, ScheduleConfig, cosine, linear, sigmoid

__all__ = [
    "add_noise", "loss_weight", "target", "to_x0", "SAMPLERS", "get_sampler", "sample_ddim", "sample_ddpm",
    "sample_dpmpp_2m", "spaced_timesteps", "PREDICTIONS", "SCHEDULES", "ScheduleConfig", "cosine", "linear",
    "sigmoid",
]
