"""Sampling for the pages: one condition to many seeds, traced single samples, walks; with progress and a lock."""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch

from .. import limits
from .images import to_uint8

Progress = Callable[[float, str], None]


@contextmanager
def turn(lock: threading.Lock | None, progress: Progress | None = None) -> Iterator[None]:
    """Hold the model's lock, saying so when another session is generating (CPU cores are shared)."""
    if lock is None:
        yield
        return
    if not lock.acquire(blocking=False):
        if progress is not None:
            progress(0.0, "waiting for another session to finish generating...")
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def _check(steps: int, guidance: float, seeds: list[int]) -> None:
    """The limits table's bounds on one sampling call (ValueError naming the setting)."""
    steps = int(steps) if hasattr(steps, "__index__") else steps  # numpy integers too
    guidance = float(guidance) if isinstance(guidance, (int, float)) or hasattr(guidance, "__float__") else guidance
    limits.check_sampling(steps, guidance, len(seeds), names={"steps": "sampler steps", "count": "images"})
    for s in {int(s) for s in seeds}:
        limits.check("seed", s, "seed")


def step_reporter(progress: Progress | None, start: float = 0.0, span: float = 1.0,
                  label: str = "") -> Callable[[dict], None] | None:
    """A sampler callback mapping step i of n to progress start + span * (i + 1) / n."""
    if progress is None:
        return None

    def report(info: dict) -> None:
        progress(start + span * (info["i"] + 1) / info["n"], f"{label}step {info['i'] + 1} / {info['n']}")

    return report


def generate_images(model: Any, cond: torch.Tensor, seeds: list[int], steps: int, sampler: str, guidance: float,
                    progress: Progress | None = None, lock: threading.Lock | None = None,
                    upscaler: Any = None, batch: int = 64) -> torch.Tensor:
    """cond (1 or B, D) -> uint8 images (B, 3, R, R) (x4 when upscaler is given); image i depends on seeds[i] only."""
    _check(steps, guidance, seeds)
    cond = cond.expand(len(seeds), -1) if cond.shape[0] == 1 else cond
    n = len(seeds)
    out = []
    share = 0.9 if upscaler is not None else 1.0
    with turn(lock, progress):
        for start in range(0, n, batch):
            stop = min(n, start + batch)
            report = step_reporter(progress, share * start / n, share * (stop - start) / n,
                                   f"images {start + 1}-{stop} of {n}: ")
            out.append(model.generate(cond[start:stop], seeds[start:stop], steps=steps, sampler=sampler,
                                      guidance=guidance, callback=report))
        images = torch.cat(out)
        if upscaler is not None:
            if progress is not None:
                progress(share, "up-scaling x4...")
            images = upscaler.upscale(images)
    if progress is not None:
        progress(1.0, "done")
    return to_uint8(images)


@torch.no_grad()
def condition_of(model: Any, values: dict[str, str], prompt: str | None = None) -> torch.Tensor:
    """{attribute: value or "any"} and an optional prompt ("" = no text) -> the condition vector (1, D), detached.

    A prompt needs a generator trained with text (ConditionError otherwise); the sentence encoder loads on the
    first prompt only.
    """
    labels = model.encode(values)[None]
    text = model.encode_prompt(prompt, 1) if prompt and prompt.strip() else None
    return model.condition(labels, text).detach()


@torch.no_grad()
def conditions_for(model: Any, labels: torch.Tensor) -> torch.Tensor:
    """Label rows (B, A) -> condition vectors (B, D), detached."""
    return model.condition(labels.long()).detach()


def noise_shape(model: Any) -> tuple[int, int, int]:
    """(channels, side, side) of what the U-Net denoises (pixels or a latent): two models with the same noise
    shape start from the same noise for the same seed."""
    shape = getattr(model, "noise_shape", None)
    if shape is not None:
        return tuple(shape)
    c = model.unet.config
    return (c.in_channels, c.resolution, c.resolution)


def x0_image(model: Any, x0: torch.Tensor) -> torch.Tensor | None:
    """A clean-image prediction (B, C, h, w) in the U-Net's space as uint8 images (latents are decoded), or None
    when it is a latent the model cannot decode."""
    from_latent = getattr(model, "from_latent", None)
    if callable(from_latent):
        return to_uint8(from_latent(x0))
    return to_uint8(x0.clamp(-1, 1)) if x0.shape[1] == 3 else None


def frame_steps(steps: int, frames: int) -> list[int]:
    """`frames` step indices (0-based) spread evenly over a run of `steps`, always ending at the last one."""
    frames = max(1, min(frames, steps))
    return sorted({round((k + 1) * steps / frames) - 1 for k in range(frames)})


@dataclass
class Trace:
    """One sample with its clean-image predictions at chosen steps and the wall time it took."""

    image: torch.Tensor  # uint8 (3, R, R)
    frames: list[tuple[int, int, torch.Tensor]] = field(default_factory=list)  # (step index, timestep, uint8 x0)
    seconds: float = 0.0
    steps: int = 0


def traced_sample(model: Any, cond: torch.Tensor, seed: int, steps: int, sampler: str, guidance: float,
                  keep: list[int], progress: Progress | None = None, lock: threading.Lock | None = None,
                  label: str = "") -> Trace:
    """Sample one image from cond (1, D) and the seed's noise, keeping the x0 prediction at the steps in keep.

    The time covers the sampling only; decoding the kept x0 predictions is not counted.
    """
    _check(steps, guidance, [seed])
    kept: list[tuple[int, int, torch.Tensor]] = []
    report = step_reporter(progress, label=label)
    wanted = set(keep)

    def callback(info: dict) -> None:
        if info["i"] in wanted:
            kept.append((info["i"], info["t"], info["x0"][:1].detach().clone()))
        if report is not None:
            report(info)

    with turn(lock, progress):
        t0 = time.perf_counter()
        image = model.generate(cond, [seed], steps=steps, sampler=sampler, guidance=guidance, callback=callback)
        seconds = time.perf_counter() - t0
        frames = []
        for i, t, x0 in kept:
            shown = x0_image(model, x0)
            if shown is not None:
                frames.append((i, t, shown[0]))
    return Trace(to_uint8(image[0]), frames, seconds, steps)


def walk_images(model: Any, vectors: torch.Tensor, seed: int, steps: int, sampler: str, guidance: float,
                progress: Progress | None = None, lock: threading.Lock | None = None) -> torch.Tensor:
    """One image per condition vector (N, D), all from the same noise (one seed) -> uint8 (N, 3, H, W)."""
    _check(steps, guidance, [seed] * len(vectors))
    with turn(lock, progress):
        images = model.generate(vectors, [seed] * len(vectors), steps=steps, sampler=sampler, guidance=guidance,
                                callback=step_reporter(progress))
    return to_uint8(images)
