"""One trainer for every lwgen model: AdamW, warm-up + cosine LR, EMA, clipping, bf16, exact resume, and
data-parallel training over several processes (see `distributed`)."""
from __future__ import annotations

import copy
import json
import math
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from ..checkpoint import STAMP, TRAIN_STATE, read_tensors, save_checkpoint
from ..io import atomic_write, atomic_write_text
from ..precision import bf16_active
from . import distributed
from .config import TrainConfig
from .loggers import Loggers

STATUS = "status.json"  # live progress, rewritten every STATUS_SECONDS while training (read by the app's Train page)
PREVIEW = "preview.png"  # the latest sample grid of the preview hook
STATUS_SECONDS = 3.0
STATUS_HISTORY = 200  # loss points kept in the status file


class TrainingError(RuntimeError):
    """Training cannot go on (a NaN loss, a state that does not match the run)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: handled like Ctrl-C (the trainer saves, then stops)."""

    signum = signal.SIGTERM


class _SigtermAsInterrupt:
    """While active (main thread only), SIGTERM raises Terminated, except during a save, which it lets finish."""

    def __init__(self) -> None:
        self.saving, self.pending = False, False
        self.previous: Any = None  # the SIGTERM handler before ours

    def _handler(self, signum, frame) -> None:
        if self.saving:
            self.pending = True
            return
        raise Terminated()

    def __enter__(self) -> _SigtermAsInterrupt:
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)


FLOAT32_NOTE = ("float32: this CPU has no bfloat16 instructions (AVX-512 BF16 or AMX), so training runs without "
                "bf16 autocast and a budget in minutes buys fewer steps than on a CPU that has them (README, Speed)")


def lr_factor(step: int, progress: float, config: TrainConfig) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay to `min_lr_ratio` over the budget's progress."""
    if step < config.warmup:
        return (step + 1) / config.warmup
    cos = 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return config.min_lr_ratio + (1 - config.min_lr_ratio) * cos


def ema_decay(step: int, max_decay: float) -> float:
    """EMA decay that grows with the step, so a short run's average does not lag behind its weights."""
    return min(max_decay, (1 + step) / (10 + step))


def step_generator(seed: int, step: int) -> torch.Generator:
    """The random stream of one optimisation step: resuming at any step replays the same stream."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


class Trainer:
    """Runs `task.loss(indices, generator)` under a step or wall-clock budget; checkpoints to a folder.

    Nothing here is specific to diffusion: a task owns its model (`task.model`) and its loss.

    Under torchrun (an initialised process group, `dist`), each process trains on its slice of every batch
    (`config.batch` images each, so the effective batch is `config.batch * world_size`), DistributedDataParallel
    averages the gradients, and only rank 0 shows progress, logs and writes the output folder.
    `wandb_project` also logs to Weights & Biases (TensorBoard files are written either way).
    """

    def __init__(self, task: Any, config: TrainConfig, out: str | Path, sample_weights: torch.Tensor,
                 meta: dict[str, Any] | None = None, preview: Callable[[nn.Module], torch.Tensor] | None = None,
                 progress: bool = True, dist: distributed.Dist | None = None, wandb_project: str | None = None):
        self.dist = dist or distributed.current()
        self.wandb_project = wandb_project
        self.task, self.config, self.out = task, config, Path(out)
        self.model: nn.Module = task.model
        self.ema = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.weights = sample_weights.double() / sample_weights.sum()
        self.meta = meta or {}
        self.preview = preview
        self.progress = progress and self.dist.is_main
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(self.params, lr=config.lr, weight_decay=config.weight_decay)
        self.step, self.elapsed = 0, 0.0
        self.history: list[list[float]] = []  # [step, loss, seconds]
        self.images_seen = 0
        self.last_loss: float | None = None
        self._signals: _SigtermAsInterrupt | None = None
        self._loss_fn: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None
        self._rate_mark: tuple[float, int] | None = None  # (time, images_seen) of the last status write
        self._rate: float | None = None
        self._preview_file: str | None = None

    # --- state ------------------------------------------------------------------------------------------
    def _state_tensors(self) -> dict[str, torch.Tensor]:
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        tensors.update({f"ema.{k}": v for k, v in self.ema.state_dict().items()})
        for i, st in self.opt.state_dict()["state"].items():
            for name, v in st.items():
                tensors[f"opt.{i}.{name}"] = v if torch.is_tensor(v) else torch.tensor(v)
        return tensors

    def config_dict(self) -> dict[str, Any]:
        kind = getattr(self.model, "kind", "diffusion")
        return {**self.model.config_dict(), **self.meta, "train": self.config.record(kind),
                "progress": {"step": self.step, "images_seen": self.images_seen,
                             "processes": self.dist.world_size, "wall_time_s": round(self.elapsed, 1),
                             "loss_history": self.history}}

    def save(self) -> None:
        """Write the resumable state and the checkpoint folder (weights + EMA + config) as one stamped set
        (see `save_checkpoint`); a SIGTERM during the save waits until it is done."""
        meta = {"step": str(self.step), "elapsed": repr(self.elapsed), "history": json.dumps(self.history),
                "images_seen": str(self.images_seen), "param_groups": json.dumps(self.opt.state_dict()["param_groups"])}
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        tensors.update({f"ema.{k}": v for k, v in self.ema.state_dict().items()})
        signals = self._signals
        if signals is not None:
            signals.saving = True
        try:
            save_checkpoint(self.out, tensors, self.config_dict(), train_state=(self._state_tensors(), meta))
        finally:
            if signals is not None:
                signals.saving = False
        if signals is not None and signals.pending:
            signals.pending = False
            raise Terminated()

    def resume(self) -> bool:
        """Load the resumable state from the output folder; False when there is none.

        With several processes, rank 0 reads the folder and sends the state to the others (they need not see
        the folder: another machine's disk is fine).
        """
        if self.dist.enabled:
            payload: Any = None
            if self.dist.is_main:
                try:
                    payload = self._read_state()
                except Exception as e:  # noqa: BLE001 - every process must learn of it, or the others would hang
                    payload = ("error", f"{type(e).__name__}: {e}")
            payload = distributed.broadcast_object(payload)
            if isinstance(payload, tuple) and payload and payload[0] == "error":
                raise TrainingError(f"rank 0 could not read {self.out / TRAIN_STATE}: {payload[1]}")
        else:
            payload = self._read_state()
        if payload is None:
            return False
        self._load_state(*payload)
        return True

    def _read_state(self) -> tuple[dict[str, torch.Tensor], dict[str, str]] | None:
        path = self.out / TRAIN_STATE
        return read_tensors(path) if path.is_file() else None

    def _load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
        path = self.out / TRAIN_STATE
        try:
            self.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
            self.ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
        except RuntimeError as e:
            raise TrainingError(f"{path}: saved state does not match this model's configuration ({e})") from None
        state: dict[int, dict[str, torch.Tensor]] = {}
        for k, v in tensors.items():
            if k.startswith("opt."):
                _, i, name = k.split(".", 2)
                state.setdefault(int(i), {})[name] = v
        self.opt.load_state_dict({"state": state, "param_groups": json.loads(meta["param_groups"])})
        self.step, self.elapsed = int(meta["step"]), float(meta["elapsed"])
        self.history = json.loads(meta["history"])
        meta.pop(STAMP, None)
        self.images_seen = int(meta.get("images_seen", self.step * self.config.batch))

    # --- loop -------------------------------------------------------------------------------------------
    def _progress(self) -> float:
        c = self.config
        parts = []
        if c.steps > 0:
            parts.append(self.step / c.steps)
        if c.minutes > 0:
            parts.append(self.elapsed / (60 * c.minutes))
        return max(parts)

    def write_status(self, state: str) -> None:
        """Write `status.json` in the output folder (atomically): state, step, images/s since the last write,
        elapsed and estimated remaining seconds, recent loss history and the latest preview grid."""
        now, rate = time.monotonic(), self._rate
        if state == "running" and self._rate_mark is not None and now > self._rate_mark[0]:
            rate = self._rate = round((self.images_seen - self._rate_mark[1]) / (now - self._rate_mark[0]), 2)
        self._rate_mark = (now, self.images_seen)  # a final status keeps the last training speed
        c, done = self.config, min(self._progress(), 1.0)
        left = self.elapsed * (1 - done) / done if done > 0 else (60 * c.minutes if c.minutes > 0 else None)
        status = {"kind": self.model.kind, "stage": self.out.name, "state": state, "pid": os.getpid(),
                  "step": self.step, "steps": c.steps or None, "minutes": c.minutes or None,
                  "images_seen": self.images_seen, "images_per_s": rate, "elapsed_s": round(self.elapsed, 1),
                  "time_left_s": None if left is None else round(left, 1), "progress": round(done, 4),
                  "loss": self.last_loss, "loss_history": self.history[-STATUS_HISTORY:],
                  "preview": self._preview_file, "updated": time.time()}
        try:
            atomic_write_text(self.out / STATUS, json.dumps(status))
        except OSError as e:  # progress display only: never stop a training for it
            tqdm.write(f"warning: cannot write {self.out / STATUS}: {e}")

    def _save_preview(self, grid: torch.Tensor) -> None:
        """Write a preview grid (3, H, W) in [0, 1] as `preview.png` in the output folder, atomically."""
        from PIL import Image

        pixels = (grid.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        atomic_write(self.out / PREVIEW, lambda tmp: Image.fromarray(pixels).save(tmp, format="PNG"))
        self._preview_file = PREVIEW

    def _preview_now(self, log: Loggers) -> None:
        assert self.preview is not None
        grid = self.preview(self.ema)
        log.image("samples", grid, self.step)
        self._save_preview(grid)

    @torch.no_grad()
    def _update_ema(self) -> None:
        d = ema_decay(self.step, self.config.ema_decay)
        for e, p in zip(self.ema.parameters(), self.model.parameters()):
            e.lerp_(p, 1 - d)

    def run(self, resume: bool = False, pause_at_s: float | None = None) -> dict[str, Any]:
        """Train until the budget is spent; returns the final config dict.

        `pause_at_s` stops early once `pause_at_s` seconds of training have elapsed (the learning-rate schedule
        still spans the whole budget), saves, and returns; calling `run` again continues where it stopped.
        """
        with _SigtermAsInterrupt() as signals:
            self._signals = signals
            try:
                return self._run(resume, pause_at_s)
            finally:
                self._signals = None

    def _run(self, resume: bool, pause_at_s: float | None) -> dict[str, Any]:
        c, env = self.config, self.dist
        if c.threads > 0:
            torch.set_num_threads(c.threads)
        if resume and self.resume() and env.is_main:
            tqdm.write(f"resumed from {self.out / TRAIN_STATE} at step {self.step}")
        if c.bf16 and not bf16_active(True) and env.is_main:
            tqdm.write(FLOAT32_NOTE)
        if self._loss_fn is None:
            self._loss_fn = distributed.data_parallel(self.task, env)  # after resume: rank 0's state goes out
        log = Loggers(self.out, self.wandb_project, self.config_dict()) if env.is_main else None
        self.model.train()
        last_save = last_preview = last_status = time.monotonic()
        if env.is_main:
            self.write_status("running")
        window, window_start, seen = [], time.monotonic(), 0
        bar = tqdm(total=c.steps or None, initial=self.step, disable=not self.progress, unit="step",
                   desc=f"train {self.model.kind}")
        finished = False
        try:
            while self._progress() < 1.0 and (pause_at_s is None or self.elapsed < pause_at_s):
                t0 = time.monotonic()
                g = step_generator(c.seed, self.step)
                idx = distributed.rank_batch(self.weights, c.batch, env, g)
                if env.enabled:
                    g = distributed.rank_generator(c.seed, self.step, env.rank)
                lr = c.lr * lr_factor(self.step, self._progress(), c)
                for group in self.opt.param_groups:
                    group["lr"] = lr
                loss = self._loss_fn(idx, g)
                value = distributed.mean(loss) if env.enabled else loss  # every process stops on a NaN
                if not torch.isfinite(value):
                    raise TrainingError(f"loss is {value.item()} at step {self.step}; the last good checkpoint is "
                                        f"in {self.out} (try a lower --lr or --grad-clip)")
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                if c.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(self.params, c.grad_clip)
                self.opt.step()
                self.step += 1
                self._update_ema()
                dt = time.monotonic() - t0
                # every process must see the same clock: the LR schedule and a --minutes budget depend on it
                self.elapsed += float(distributed.mean(dt)) if env.enabled else dt
                self.images_seen += c.batch * env.world_size
                window.append(value.item())
                self.last_loss = window[-1]
                seen += c.batch * env.world_size
                bar.update(1)
                if self.step % c.log_every == 0:
                    rate = seen / max(time.monotonic() - window_start, 1e-9)
                    mean = sum(window) / len(window)
                    self.history.append([self.step, round(mean, 5), round(self.elapsed, 1)])
                    bar.set_postfix(loss=f"{mean:.4f}", lr=f"{lr:.2e}", img_s=f"{rate:.0f}")
                    if log:
                        log.scalars({"loss": mean, "lr": lr, "images_per_s": rate}, self.step)
                    window, window_start, seen = [], time.monotonic(), 0
                if not env.is_main:
                    continue
                now = time.monotonic()
                if now - last_status > STATUS_SECONDS:
                    self.write_status("running")
                    last_status = now
                if now - last_save > 60 * c.save_minutes:
                    self.save()
                    last_save = time.monotonic()
                if self.preview and log and now - last_preview > 60 * c.sample_minutes:
                    self._preview_now(log)
                    last_preview = time.monotonic()
            finished = True
        except KeyboardInterrupt as e:
            if env.is_main:
                what = "terminated (SIGTERM)" if isinstance(e, Terminated) else "interrupted"
                tqdm.write(f"{what} at step {self.step}; saving to {self.out} (resume with --resume)")
                try:
                    self.save()  # a second signal waits for the save (see save)
                except Terminated:
                    pass
                self.write_status("stopped")
            raise
        except Exception:
            if env.is_main:
                self.write_status("failed")
            raise
        finally:
            bar.close()
            if log and not finished:
                log.close()
        if env.enabled:
            self._check_in_sync()
        if env.is_main:
            self.save()
            if log:
                if self.preview:
                    self._preview_now(log)
                log.close()
            self.write_status("finished" if self._progress() >= 1.0 else "paused")
        distributed.barrier()  # the others wait until rank 0 has written the folder
        return {**self.config_dict(), "last_loss": self.last_loss}

    def _check_in_sync(self) -> None:
        """All processes must end with bit-identical weights; rank 0 reports the digest."""
        digests = distributed.gather_digests(self.model)
        if len(set(digests)) > 1:
            raise TrainingError(f"the {len(digests)} processes ended with different weights ({', '.join(digests)});"
                                f" {self.out} holds rank 0's")
        if self.dist.is_main:
            tqdm.write(f"weights identical on all {len(digests)} processes (sha256 {digests[0]})")
