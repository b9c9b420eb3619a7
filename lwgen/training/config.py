"""Training hyper-parameters shared by the diffusion model and the up-scaler."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar


@dataclass
class TrainConfig:
    """Optimisation, budget and bookkeeping of one training run."""

    HELP: ClassVar[dict[str, str]] = {
        "batch": "images per optimiser step (per process under torchrun)",
        "lr": "peak learning rate of AdamW",
        "weight_decay": "AdamW weight decay",
        "warmup": "steps of linear learning-rate warm-up",
        "min_lr_ratio": "the cosine decay ends at lr x this ratio",
        "steps": "stop after this many steps (0: the --minutes budget alone decides)",
        "minutes": "wall-clock budget in minutes; the learning rate decays over it (0: --steps decides)",
        "ema_decay": "decay of the exponential moving average of the weights that checkpoints keep",
        "grad_clip": "clip the gradient norm to this value (0: no clipping)",
        "min_snr_gamma": "min-SNR loss weighting gamma (Hang et al. 2023); 0 weighs every noise level alike",
        "snr_floor": "the min-SNR weight of the x0 error is at least this at the noisiest steps (0: min-SNR alone)",
        "cond_drop": "probability of dropping the whole condition, the unconditional branch of guidance",
        "attr_drop": "probability of dropping each attribute on its own, so a group or subgroup alone is trained",
        "text_drop": "probability of dropping the text, so attributes alone are trained",
        "noise_levels": "how training draws each row's noise level: uniform over the timesteps, or logit-normal "
                        "(Esser et al. 2024: sigmoid of a standard normal, more of the middle levels)",
        "text_lead": "probability of keeping only the first comma-separated phrase of a row's text (an emoji's name "
                     "without its tags), so that short prompts are trained too",
        "text_noise": "length of the Gaussian noise added to each unit-length sentence embedding (then made unit "
                      "length again), so that texts near a trained one are trained too (0: none)",
        "balance_power": "rows are drawn with weight count^-power of their class (0: uniform, 1: balanced)",
        "balance_attribute": "attribute whose classes --balance-power balances ('': the first of --attributes)",
        "bf16": "bfloat16 autocast where the CPU or GPU runs it natively (emulated bf16 is slow, so it is off there)",
        "seed": "seed of the initial weights, batches and noise",
        "threads": "torch CPU threads (0: torch's default)",
        "log_every": "steps between loss log lines",
        "save_minutes": "minutes between checkpoints of the resumable training state",
        "sample_minutes": "minutes between preview grids (0: none)",
    }
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"noise_levels": ("uniform", "logit-normal")}
    DIFFUSION_ONLY: ClassVar[tuple[str, ...]] = (
        "noise_levels", "min_snr_gamma", "snr_floor", "cond_drop", "attr_drop", "text_drop", "text_lead",
        "text_noise", "balance_power", "balance_attribute")

    batch: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.0
    warmup: int = 100
    min_lr_ratio: float = 0.1
    steps: int = 0
    minutes: float = 0.0
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    noise_levels: str = "uniform"
    min_snr_gamma: float = 5.0
    snr_floor: float = 0.0
    cond_drop: float = 0.1
    attr_drop: float = 0.5
    text_drop: float = 0.5
    text_lead: float = 0.0
    text_noise: float = 0.0
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
        if self.noise_levels not in self.CHOICES["noise_levels"]:
            raise ValueError(f"noise_levels must be one of {', '.join(self.CHOICES['noise_levels'])}, "
                             f"got {self.noise_levels!r}")
        if not 0 <= self.text_lead <= 1:
            raise ValueError("text_lead must be in [0, 1]")
        if self.text_noise < 0:
            raise ValueError("text_noise must be 0 or more")

    def record(self, kind: str) -> dict[str, object]:
        """The settings config.json keeps: a model other than a diffusion generator leaves out DIFFUSION_ONLY."""
        values = dataclasses.asdict(self)
        return values if kind == "diffusion" else {k: v for k, v in values.items() if k not in self.DIFFUSION_ONLY}
