"""Training hyper-parameters shared by the diffusion model and the up-scaler."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrainConfig:
    """Optimisation, budget and bookkeeping of one training run."""

    batch: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.0
    warmup: int = 100
    min_lr_ratio: float = 0.1
    steps: int = 0
    minutes: float = 0.0
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    min_snr_gamma: float = 5.0
    cond_drop: float = 0.1
    attr_drop: float = 0.5
    text_drop: float = 0.5
    balance_power: float = 0.5
    balance_attribute: str = ""
    bf16: bool = True
    seed: int = 0
    threads: int = 0
    log_every: int = 50
    save_minutes: float = 3.0
    sample_minutes: float = 10.0

    def __post_init__(self) -> None:
        if self.steps <= 0 and self.minutes <= 0:
            raise ValueError("give a budget: --steps N or --minutes M")
        if self.batch < 1:
            raise ValueError("batch must be at least 1")
        if not all(0 <= p < 1 for p in (self.cond_drop, self.attr_drop, self.text_drop)):
            raise ValueError("cond_drop, attr_drop and text_drop must be in [0, 1)")
