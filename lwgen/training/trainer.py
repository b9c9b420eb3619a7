"""One trainer for every lwgen model: AdamW, warm-up + cosine LR, EMA, clipping, bf16, exact resume."""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from tqdm import tqdm

from ..checkpoint import TRAIN_STATE, read_tensors, save_checkpoint, write_tensors
from .config import TrainConfig


class TrainingError(RuntimeError):
    """Training cannot go on (a NaN loss, a state that does not match the run)."""


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
    """

    def __init__(self, task: Any, config: TrainConfig, out: str | Path, sample_weights: torch.Tensor,
                 meta: dict[str, Any] | None = None, preview: Callable[[nn.Module], torch.Tensor] | None = None,
                 progress: bool = True):
        self.task, self.config, self.out = task, config, Path(out)
        self.model: nn.Module = task.model
        self.ema = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.weights = sample_weights.double() / sample_weights.sum()
        self.meta = meta or {}
        self.preview = preview
        self.progress = progress
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(self.params, lr=config.lr, weight_decay=config.weight_decay)
        self.step, self.elapsed, self.history = 0, 0.0, []

    # --- state ------------------------------------------------------------------------------------------
    def _state_tensors(self) -> dict[str, torch.Tensor]:
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        tensors.update({f"ema.{k}": v for k, v in self.ema.state_dict().items()})
        for i, st in self.opt.state_dict()["state"].items():
            for name, v in st.items():
                tensors[f"opt.{i}.{name}"] = v if torch.is_tensor(v) else torch.tensor(v)
        return tensors

    def config_dict(self) -> dict[str, Any]:
        return {**self.model.config_dict(), **self.meta, "train": dataclasses.asdict(self.config),
                "progress": {"step": self.step, "images_seen": self.step * self.config.batch,
                             "wall_time_s": round(self.elapsed, 1), "loss_history": self.history}}

    def save(self) -> None:
        """Write the resumable state, then the checkpoint folder (weights + EMA + config), all atomically."""
        meta = {"step": str(self.step), "elapsed": repr(self.elapsed), "history": json.dumps(self.history),
                "param_groups": json.dumps(self.opt.state_dict()["param_groups"])}
        write_tensors(self.out / TRAIN_STATE, self._state_tensors(), meta)
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        tensors.update({f"ema.{k}": v for k, v in self.ema.state_dict().items()})
        save_checkpoint(self.out, tensors, self.config_dict())

    def resume(self) -> bool:
        """Load the resumable state from the output folder; False when there is none."""
        path = self.out / TRAIN_STATE
        if not path.is_file():
            return False
        tensors, meta = read_tensors(path)
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
        return True

    # --- loop -------------------------------------------------------------------------------------------
    def _progress(self) -> float:
        c = self.config
        parts = []
        if c.steps > 0:
            parts.append(self.step / c.steps)
        if c.minutes > 0:
            parts.append(self.elapsed / (60 * c.minutes))
        return max(parts)

    @torch.no_grad()
    def _update_ema(self) -> None:
        d = ema_decay(self.step, self.config.ema_decay)
        for e, p in zip(self.ema.parameters(), self.model.parameters()):
            e.lerp_(p, 1 - d)

    def run(self, resume: bool = False) -> dict[str, Any]:
        """Train until the budget is spent; returns the final config dict."""
        c = self.config
        if c.threads > 0:
            torch.set_num_threads(c.threads)
        if resume and self.resume():
            tqdm.write(f"resumed from {self.out / TRAIN_STATE} at step {self.step}")
        writer = _tensorboard(self.out / "tb")
        self.model.train()
        last_save = last_preview = time.monotonic()
        window, window_start, seen = [], time.monotonic(), 0
        bar = tqdm(total=c.steps or None, initial=self.step, disable=not self.progress, unit="step",
                   desc=f"train {self.model.kind}")
        try:
            while self._progress() < 1.0:
                t0 = time.monotonic()
                g = step_generator(c.seed, self.step)
                idx = torch.multinomial(self.weights, c.batch, replacement=True, generator=g)
                lr = c.lr * lr_factor(self.step, self._progress(), c)
                for group in self.opt.param_groups:
                    group["lr"] = lr
                loss = self.task.loss(idx, g)
                if not torch.isfinite(loss):
                    raise TrainingError(f"loss is {loss.item()} at step {self.step}; the last good checkpoint is in "
                                        f"{self.out} (try a lower --lr or --grad-clip)")
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                if c.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(self.params, c.grad_clip)
                self.opt.step()
                self.step += 1
                self._update_ema()
                self.elapsed += time.monotonic() - t0
                window.append(loss.item())
                seen += c.batch
                bar.update(1)
                if self.step % c.log_every == 0:
                    rate = seen / max(time.monotonic() - window_start, 1e-9)
                    mean = sum(window) / len(window)
                    self.history.append([self.step, round(mean, 5), round(self.elapsed, 1)])
                    bar.set_postfix(loss=f"{mean:.4f}", lr=f"{lr:.2e}", img_s=f"{rate:.0f}")
                    if writer:
                        writer.add_scalar("loss", mean, self.step)
                        writer.add_scalar("lr", lr, self.step)
                        writer.add_scalar("images_per_s", rate, self.step)
                    window, window_start, seen = [], time.monotonic(), 0
                now = time.monotonic()
                if now - last_save > 60 * c.save_minutes:
                    self.save()
                    last_save = time.monotonic()
                if self.preview and writer and now - last_preview > 60 * c.sample_minutes:
                    writer.add_image("samples", self.preview(self.ema), self.step)
                    last_preview = time.monotonic()
        except KeyboardInterrupt:
            tqdm.write(f"interrupted at step {self.step}; saving to {self.out} (resume with --resume)")
            self.save()
            raise
        finally:
            bar.close()
            if writer:
                writer.close()
        self.save()
        if self.preview and writer:
            with _tensorboard(self.out / "tb") as w:
                w.add_image("samples", self.preview(self.ema), self.step)
        return self.config_dict()


def _tensorboard(folder: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional for the library
        return None
    return SummaryWriter(str(folder))
