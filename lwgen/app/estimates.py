"""Time estimates before sampling: the step time measured on each model in this process, or a guess from its size
before its first run."""
from __future__ import annotations

import threading
import weakref
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import torch

GUESS_SECONDS_PER_STEP = 0.06  # before a model's first run: per sampler step, plus per U-Net sample below
GUESS_SECONDS_PER_PARAMETER_PIXEL = 7e-12  # x parameters x (U-Net side)^2 per U-Net sample and step: about 1.5x
# what emoji-cosine's U-Net (4.4 M parameters, 16 px latents) took on one core: 16 guided images 0.22 s a step


@dataclass
class StepTimes:
    """Measured sampling times of one model in this process: (U-Net samples per step, seconds per step)."""

    runs: deque = field(default_factory=lambda: deque(maxlen=8))

    def add(self, samples: int, steps: int, seconds: float) -> None:
        if samples > 0 and steps > 0 and seconds > 0:
            self.runs.append((float(samples), seconds / steps))

    def per_step(self, samples: int) -> float | None:
        """Seconds per sampler step for this many U-Net samples: a line a + b * samples through the runs (both
        >= 0), proportional to samples when every run had one size; None before the first run."""
        if not self.runs:
            return None
        xs = torch.tensor([r[0] for r in self.runs], dtype=torch.float64)
        ys = torch.tensor([r[1] for r in self.runs], dtype=torch.float64)
        if float(xs.max() - xs.min()) < 1:
            return float((ys / xs).mean()) * samples
        b = float(((xs - xs.mean()) * (ys - ys.mean())).sum() / ((xs - xs.mean()) ** 2).sum())
        b = max(b, 0.0)
        a = max(float(ys.mean()) - b * float(xs.mean()), 0.0)
        return a + b * samples


_TIMES: weakref.WeakKeyDictionary[Any, StepTimes] = weakref.WeakKeyDictionary()
_TIMES_LOCK = threading.Lock()


def step_times(model: Any) -> StepTimes:
    """The process-wide step times of a model (kept as long as the model is)."""
    with _TIMES_LOCK:
        if model not in _TIMES:
            _TIMES[model] = StepTimes()
        return _TIMES[model]


def unet_samples(count: int, guidance: float) -> int:
    """U-Net samples per sampler step: guidance other than 1 runs each image twice (with and without the
    condition)."""
    return count * (1 if float(guidance) == 1.0 else 2)


def guessed_step_seconds(model: Any, samples: int) -> float:
    """A conservative guess of one sampler step's seconds from the U-Net's parameters and side."""
    unet = getattr(model, "unet", None)
    if unet is None:
        return GUESS_SECONDS_PER_STEP + 0.01 * samples
    params = sum(p.numel() for p in unet.parameters())
    side = unet.config.resolution
    return GUESS_SECONDS_PER_STEP + GUESS_SECONDS_PER_PARAMETER_PIXEL * params * side * side * samples


@dataclass
class Estimate:
    """Expected seconds of a sampling run, and whether they come from measured runs of this model."""

    seconds: float
    measured: bool

    def text(self) -> str:
        """"about 12 s (measured here)" or "about 2 min (a rough guess until the first run)"."""
        s = self.seconds
        size = f"{s:.0f} s" if s < 90 else f"{s / 60:.0f} min"
        return f"about {size} " + ("(from the runs so far)" if self.measured else "(a rough guess until the first run)")


def estimate(model: Any, count: int, steps: int, guidance: float, upscaler: Any = None) -> Estimate:
    """Expected seconds to sample `count` images in `steps` steps (in batches of 64), from this process's runs
    of the model, else from its size."""
    batches = [min(64, count - start) for start in range(0, count, 64)]
    measured = step_times(model).per_step(1) is not None
    total = 0.0
    for n in batches:
        per = step_times(model).per_step(unet_samples(n, guidance)) if measured else None
        total += steps * (per if per is not None else guessed_step_seconds(model, unet_samples(n, guidance)))
    if upscaler is not None:
        total += 0.05 * count
    return Estimate(total, measured)


