"""Sampling for the pages: one condition to many seeds, traced single samples, walks; with progress, a lock,
cancelling, time estimates, and the requests of several sessions for one model merged into one batch."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from .. import limits
from .estimates import step_times, unet_samples
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


class Cancelled(Exception):
    """Raised inside a sampling loop when its cancel event is set; the images of that run are dropped."""

    def __init__(self) -> None:
        super().__init__("cancelled")


def step_reporter(progress: Progress | None, start: float = 0.0, span: float = 1.0, label: str = "",
                  cancel: threading.Event | None = None) -> Callable[[dict], None] | None:
    """A sampler callback mapping step i of n to progress start + span * (i + 1) / n; raises Cancelled after a
    step once `cancel` is set."""
    if progress is None and cancel is None:
        return None

    def report(info: dict) -> None:
        if cancel is not None and cancel.is_set():
            raise Cancelled()
        if progress is not None:
            progress(start + span * (info["i"] + 1) / info["n"], f"{label}step {info['i'] + 1} / {info['n']}")

    return report


WAITING = "waiting for another session to finish generating..."


@dataclass
class _Request:
    """One generate call waiting for the batch it joins."""

    cond: torch.Tensor  # (B, D)
    seeds: list[int]
    key: tuple[int, str, float]  # steps, sampler, guidance: requests merge only when these agree
    done: threading.Event = field(default_factory=threading.Event)
    images: torch.Tensor | None = None  # [-1, 1] (B, 3, R, R)
    error: BaseException | None = None
    fraction: float = 0.0
    message: str = ""
    cancelled: bool = False


class Batcher:
    """Merges the generate calls that reach one model within `window` seconds (same steps, sampler and guidance)
    into one batch, so sessions share each U-Net pass instead of queueing one after another.

    Image i still depends only on its seed and condition: a merged batch gives the images of separate calls.
    One worker thread samples; the callers wait in their own threads, where their progress callbacks run.
    """

    def __init__(self, model: Any, lock: threading.Lock | None = None, window: float = 0.03, limit: int = 64):
        self.model, self.lock, self.window, self.limit = model, lock, window, limit
        self._queue: list[_Request] = []
        self._cv = threading.Condition()
        self._worker: threading.Thread | None = None
        self._busy = False
        self.batches: list[int] = []  # requests per sampled batch, most recent last (for tests and benchmarks)

    def generate(self, cond: torch.Tensor, seeds: list[int], steps: int, sampler: str, guidance: float,
                 progress: Progress | None = None, cancel: threading.Event | None = None,
                 poll: float = 0.05) -> torch.Tensor:
        """cond (1 or B, D) -> images in [-1, 1] (B, 3, R, R), sampled together with the calls of other threads."""
        cond = cond.expand(len(seeds), -1) if cond.shape[0] == 1 else cond
        req = _Request(cond, [int(s) for s in seeds], (int(steps), str(sampler), float(guidance)))
        with self._cv:
            if self._busy:
                req.message = WAITING
            self._queue.append(req)
            if self._worker is None:
                self._worker = threading.Thread(target=self._run, name="lwgen-batcher", daemon=True)
                self._worker.start()
            self._cv.notify()
        shown = ("", 0.0)
        try:
            while True:
                finished = req.done.wait(poll)
                if cancel is not None and cancel.is_set() and not finished:
                    raise Cancelled()
                now = (req.message, req.fraction)
                if progress is not None and now[0] and now != shown:
                    shown = now  # the last state is told too, even when sampling ended between two polls
                    progress(now[1], now[0])
                if finished:
                    break
        except BaseException:
            req.cancelled = True  # the batch drops it, and stops when no request is left
            raise
        if req.error is not None:
            raise req.error
        return req.images

    def _run(self) -> None:
        """The worker: wait for a request, let others join for `window` seconds, sample them as one batch."""
        while True:
            with self._cv:
                if not self._queue:
                    self._cv.wait(30.0)
                if not self._queue:
                    self._worker = None  # idle: the next request starts a new worker
                    return
            time.sleep(self.window)
            with turn(self.lock, lambda f, m: self._tell_queued(m)):
                with self._cv:
                    batch = self._take()
                    self._busy = True
                try:
                    if batch:
                        self._sample(batch)
                finally:
                    with self._cv:
                        self._busy = False

    def _tell_queued(self, message: str) -> None:
        with self._cv:
            for r in self._queue:
                r.message = message

    def _take(self) -> list[_Request]:
        """The first live request and the later ones with its settings, up to `limit` images; cancelled ones go."""
        self._queue = [r for r in self._queue if not r.cancelled]
        if not self._queue:
            return []
        key, taken, rest, images = self._queue[0].key, [], [], 0
        for r in self._queue:
            if r.key == key and (not taken or images + len(r.seeds) <= self.limit):
                taken.append(r)
                images += len(r.seeds)
            else:
                rest.append(r)
        self._queue = rest
        return taken

    def _sample(self, batch: list[_Request]) -> None:
        steps, sampler, guidance = batch[0].key
        cond = torch.cat([r.cond for r in batch])
        seeds = [s for r in batch for s in r.seeds]
        n = len(seeds)
        others = len(batch) - 1
        shared = f" · in one batch with {others} other request{'s' * (others > 1)}" if others else ""
        self.batches.append(len(batch))
        try:
            out = []
            for start in range(0, n, self.limit):
                stop = min(n, start + self.limit)

                def report(info: dict, start: int = start, stop: int = stop) -> None:
                    if all(r.cancelled for r in batch):
                        raise Cancelled()
                    fraction = (start + (stop - start) * (info["i"] + 1) / info["n"]) / n
                    for r in batch:
                        r.fraction, r.message = fraction, f"step {info['i'] + 1} / {info['n']}{shared}"

                t0 = time.perf_counter()
                out.append(self.model.generate(cond[start:stop], seeds[start:stop], steps=steps, sampler=sampler,
                                               guidance=guidance, callback=report))
                step_times(self.model).add(unet_samples(stop - start, guidance), steps, time.perf_counter() - t0)
            images = torch.cat(out)
            at = 0
            for r in batch:
                r.images = images[at:at + len(r.seeds)]
                at += len(r.seeds)
        except Exception as e:  # noqa: BLE001 - handed to every caller of the batch
            for r in batch:
                r.error = e
        finally:
            for r in batch:
                r.done.set()


def generate_images(model: Any, cond: torch.Tensor, seeds: list[int], steps: int, sampler: str, guidance: float,
                    progress: Progress | None = None, lock: threading.Lock | None = None,
                    upscaler: Any = None, batch: int = 64, cancel: threading.Event | None = None,
                    batcher: Batcher | None = None) -> torch.Tensor:
    """cond (1 or B, D) -> uint8 images (B, 3, R, R) (x4 when upscaler is given); image i depends on seeds[i] only.

    With a batcher, the call joins the batches of other sessions (the batcher holds the lock while sampling);
    setting `cancel` stops sampling after the current step with Cancelled.
    """
    _check(steps, guidance, seeds)
    cond = cond.expand(len(seeds), -1) if cond.shape[0] == 1 else cond
    n = len(seeds)
    share = 0.9 if upscaler is not None else 1.0
    if batcher is not None:
        scaled = (lambda f, m: progress(share * f, m)) if progress is not None else None
        images = batcher.generate(cond, seeds, steps, sampler, guidance, scaled, cancel)
    else:
        out = []
        with turn(lock, progress):
            for start in range(0, n, batch):
                stop = min(n, start + batch)
                report = step_reporter(progress, share * start / n, share * (stop - start) / n,
                                       f"images {start + 1}-{stop} of {n}: ", cancel)
                t0 = time.perf_counter()
                out.append(model.generate(cond[start:stop], seeds[start:stop], steps=steps, sampler=sampler,
                                          guidance=guidance, callback=report))
                step_times(model).add(unet_samples(stop - start, guidance), steps, time.perf_counter() - t0)
        images = torch.cat(out)
    if upscaler is not None:
        if progress is not None:
            progress(share, "up-scaling x4...")
        with turn(lock, progress):
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


def read_values(model: Any, values: dict[str, str], prompt: str | None) -> tuple[dict[str, str], list[Any]]:
    """The attribute values with those left at "any" set to what the model's prompt reader is sure the prompt
    names (as `lwgen sample` does), and the readings used; unchanged without a prompt or a reader."""
    reader = getattr(model, "prompt_reader", None)
    if reader is None or not prompt or not prompt.strip():
        return dict(values), []
    return reader.fill_values(values, model.encode_prompt(prompt, 1)[0])


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
                  label: str = "", cancel: threading.Event | None = None) -> Trace:
    """Sample one image from cond (1, D) and the seed's noise, keeping the x0 prediction at the steps in keep.

    The time covers the sampling only; decoding the kept x0 predictions is not counted. Setting `cancel` stops
    after the current step with Cancelled.
    """
    _check(steps, guidance, [seed])
    kept: list[tuple[int, int, torch.Tensor]] = []
    report = step_reporter(progress, label=label, cancel=cancel)
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
        step_times(model).add(unet_samples(1, guidance), steps, seconds)
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
