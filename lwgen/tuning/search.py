"""An Optuna study over the diffusion model's training settings: each trial trains for a fixed wall-clock budget
into its own folder, reports the held-out score every fraction of its budget, and is pruned when it falls
behind the median of the earlier trials at the same point."""
from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import TRAIN_STATE
from ..data import ImageTable, to_float
from ..data.images import DataError, downsample
from ..diffusion import ScheduleConfig
from ..models import UNetConfig
from ..pipeline import AutoencoderModel, DiffusionModel
from ..recipe import balance_weights, encode_latents
from ..training.config import TrainConfig
from ..training.distributed import Dist
from ..training.tasks import DiffusionTask
from ..training.trainer import Trainer
from .validation import Validation

# Settings a best-config file leaves out: the budget, and bookkeeping that does not change the model.
NOT_IN_CONFIG = ("steps", "minutes", "threads", "log_every", "save_minutes", "sample_minutes")


@dataclass
class SearchSpace:
    """What a trial may choose. The parameter names are `lwgen train diffusion` flag names (dashes as `_`)."""

    lr: tuple[float, float] = (3e-4, 5e-3)
    widths: tuple[int, ...] = (32, 48, 64, 96)
    schedules: tuple[str, ...] = ("linear", "cosine")
    predictions: tuple[str, ...] = ("v", "eps")
    min_snr_gammas: tuple[float, ...] = (0.0, 1.0, 5.0, 10.0)
    cond_drop: tuple[float, float] = (0.0, 0.3)
    batches: tuple[int, ...] = (16, 32, 64, 128)

    def __post_init__(self) -> None:
        lo, hi = self.lr
        if not 0 < lo <= hi:
            raise ValueError(f"learning-rate range must be 0 < low <= high, got {self.lr}")
        if not 0 <= self.cond_drop[0] <= self.cond_drop[1] < 1:
            raise ValueError(f"condition-drop range must be within [0, 1), got {self.cond_drop}")
        for name in ("widths", "schedules", "predictions", "min_snr_gammas", "batches"):
            if not getattr(self, name):
                raise ValueError(f"the search space needs at least one of {name}")
        if min(self.widths) < 1 or min(self.batches) < 1:
            raise ValueError("widths and batches must be positive")

    def suggest(self, trial: Any) -> dict[str, Any]:
        """One point of the space, drawn by the study's sampler."""
        def one(name: str, choices: tuple) -> Any:
            return trial.suggest_categorical(name, list(choices))

        lo, hi = self.cond_drop
        return {
            "lr": trial.suggest_float("lr", *self.lr, log=True),
            "unet_base_channels": one("unet_base_channels", self.widths),
            "schedule": one("schedule", self.schedules),
            "prediction": one("prediction", self.predictions),
            "min_snr_gamma": one("min_snr_gamma", tuple(float(g) for g in self.min_snr_gammas)),
            "cond_drop": trial.suggest_float("cond_drop", lo, hi) if hi > lo else lo,
            "batch": one("batch", self.batches),
        }


@dataclass
class TuneSettings:
    """What every trial shares: the fixed architecture and training settings, the budget and the reporting."""

    unet: UNetConfig
    train: TrainConfig
    minutes: float
    reports: int = 5
    folder: Path = Path("runs/tune")
    data_args: dict[str, Any] = field(default_factory=dict)  # data flags of `lwgen train diffusion`
    provenance: dict[str, Any] = field(default_factory=dict)  # the `data` record of each trial's config.json

    def __post_init__(self) -> None:
        if self.minutes <= 0:
            raise ValueError("--minutes-per-trial must be positive")
        if self.reports < 1:
            raise ValueError("--reports must be at least 1")


@dataclass
class TuneData:
    """Training and held-out targets in the diffusion space, encoded once and shared by every trial."""

    x0: torch.Tensor
    labels: torch.Tensor
    weights: torch.Tensor
    validation: Validation
    vocab: dict[str, list[str]]
    autoencoder: AutoencoderModel | None = None
    latent_shift: torch.Tensor | None = None
    latent_scale: torch.Tensor | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def channels(self) -> int:
        return int(self.x0.shape[1])


def split_rows(table: ImageTable, train_split: str, val_split: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Row indices (train, validation): the CSV's `split` column, or a seeded 10 % hold-out when it has none."""
    n = len(table)
    if "split" in table.extra.columns:
        split = table.extra["split"].astype(str).str.strip()
        val = torch.tensor((split == val_split).to_numpy())
        train = torch.tensor((split == train_split).to_numpy()) if train_split else ~val
        if not bool(val.any()):
            raise DataError(f"no validation rows: the CSV's split column has no {val_split!r} rows "
                            f"(values: {', '.join(sorted(split.unique())[:10])}); pass --val-split")
    else:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        val = torch.zeros(n, dtype=torch.bool)
        val[order[:max(1, n // 10)]] = True
        train = ~val
    if not bool(train.any()):
        raise DataError(f"no training rows (split {train_split!r})")
    return train.nonzero().flatten(), val.nonzero().flatten()


def prepare_data(table: ImageTable, attributes: list[str], unet: UNetConfig, train: TrainConfig,
                 autoencoder: AutoencoderModel | None = None, train_split: str = "train", val_split: str = "val",
                 val_images: int = 512, log: Callable[[str], None] = print) -> TuneData:
    """Downsample (and encode) the images once; split them into training and held-out targets."""
    train_rows, val_rows = split_rows(table, train_split, val_split, train.seed)
    factor = autoencoder.net.config.factor if autoencoder is not None else 1
    side = unet.resolution * factor
    if table.images.shape[-1] % side:
        raise ValueError(f"images of {table.images.shape[-1]} px cannot be area-downsampled to {side} px "
                         f"(--unet-resolution {unet.resolution}" + (f" x autoencoder factor {factor})" if factor > 1
                                                                     else ")"))
    k = table.images.shape[-1] // side
    images = downsample(table.images, k) if k > 1 else table.images
    shift = scale = None
    if autoencoder is not None:
        t0 = time.perf_counter()
        z = encode_latents(autoencoder, to_float(images), train.bf16)
        zt = z[train_rows]
        shift, scale = zt.mean(dim=(0, 2, 3), keepdim=True), zt.std(dim=(0, 2, 3), keepdim=True)
        x = (z - shift) / scale
        log(f"encoded {len(images)} images into {tuple(z.shape[1:])} latents in {time.perf_counter() - t0:.0f} s")
    else:
        x = to_float(images)
    labels = table.labels
    weights = balance_weights(labels[train_rows], attributes, train)
    validation = Validation(x[val_rows], labels[val_rows], seed=train.seed, max_images=val_images)
    return TuneData(x[train_rows].contiguous(), labels[train_rows], weights, validation, table.vocab, autoencoder,
                    shift, scale, {"train_images": int(len(train_rows)), "val_images": len(validation)})


def build_model(settings: TuneSettings, data: TuneData, params: dict[str, Any]) -> DiffusionModel:
    """The trial's diffusion model, initialised from the settings' seed, with the shared autoencoder."""
    unet = dataclasses.replace(settings.unet, base_channels=int(params["unet_base_channels"]),
                               in_channels=data.channels)
    torch.manual_seed(settings.train.seed)
    ae = data.autoencoder
    model = DiffusionModel(unet, ScheduleConfig(params["schedule"], prediction=params["prediction"]), data.vocab,
                           autoencoder=ae.net.config if ae is not None else None)
    if ae is not None:
        model.autoencoder.load_state_dict(ae.net.state_dict())
        model.latent_shift.copy_(data.latent_shift)
        model.latent_scale.copy_(data.latent_scale)
    return model


def run_trial(trial: Any, settings: TuneSettings, data: TuneData, space: SearchSpace) -> float:
    """Train one trial for `settings.minutes`, report the held-out score `settings.reports` times, return it.

    Raises optuna.TrialPruned when the pruner stops the trial. The trial's folder keeps its checkpoint (EMA
    weights and config.json, loadable like any other) and TensorBoard curves; the resumable state is removed.
    """
    import optuna

    params = space.suggest(trial)
    folder = settings.folder / f"trial-{trial.number:04d}"
    trial.set_user_attr("folder", str(folder))
    model = build_model(settings, data, params)
    config = dataclasses.replace(settings.train, lr=float(params["lr"]), batch=int(params["batch"]),
                                 min_snr_gamma=float(params["min_snr_gamma"]), cond_drop=float(params["cond_drop"]),
                                 minutes=settings.minutes, steps=0, sample_minutes=1e9)
    task = DiffusionTask.from_targets(model, data.x0, data.labels, config)
    meta = {"data": settings.provenance, "attributes": list(data.vocab),
            "tuning": {"trial": trial.number, "params": params}}
    trainer = Trainer(task, config, folder, data.weights, meta=meta, progress=False, dist=Dist())
    budget = 60.0 * settings.minutes
    value = math.nan
    try:
        for k in range(1, settings.reports + 1):
            trainer.run(pause_at_s=budget * k / settings.reports)
            value = data.validation.loss(trainer.ema, bf16=config.bf16)
            trial.set_user_attr("steps", trainer.step)
            trial.set_user_attr("images_seen", trainer.images_seen)
            trial.set_user_attr("train_seconds", round(trainer.elapsed, 1))
            if not math.isfinite(value):
                raise optuna.TrialPruned(f"held-out loss is {value} after {trainer.step} steps")
            trial.report(value, k)
            if k < settings.reports and trial.should_prune():
                trial.set_user_attr("pruned_at", f"{k}/{settings.reports}")
                raise optuna.TrialPruned(f"pruned at report {k}/{settings.reports} (held-out loss {value:.4f})")
    finally:
        (folder / TRAIN_STATE).unlink(missing_ok=True)
    return value


def sqlite_path(storage: str) -> Path | None:
    """The database file of an `sqlite:///PATH` URL (None for other storages and in-memory SQLite)."""
    prefix = "sqlite:///"
    if not storage.startswith(prefix) or storage[len(prefix):] in ("", ":memory:"):
        return None
    return Path(storage[len(prefix):])


def open_study(storage: str, name: str, startup_trials: int = 2, seed: int = 0,
               identity: dict[str, Any] | None = None) -> Any:
    """Create the study, or load it when the storage has it already (a search continues where it stopped).

    `identity` (data, attributes, autoencoder, ...) is stored with a new study; a study that exists must
    have been started with the same identity, or its scores would not be comparable.
    """
    import optuna

    path = sqlite_path(storage)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=1)
    study = optuna.create_study(storage=storage, study_name=name, direction="minimize", load_if_exists=True,
                                pruner=pruner)
    # a new seed per session: a resumed search must not propose the same points again
    study.sampler = optuna.samplers.TPESampler(seed=seed + len(study.trials), n_startup_trials=startup_trials)
    if identity:
        old = study.user_attrs.get("identity")
        if old is None:
            study.set_user_attr("identity", identity)
        elif old != identity:
            diff = ", ".join(f"{k}: {old.get(k)!r} -> {identity.get(k)!r}" for k in sorted(set(old) | set(identity))
                             if old.get(k) != identity.get(k))
            raise ValueError(f"study {name!r} in {storage} was started with other settings ({diff}); use another "
                             f"--study name")
    return study


def best_config(settings: TuneSettings, params: dict[str, Any]) -> dict[str, Any]:
    """The `lwgen train diffusion --config` JSON of a trial: data flags, architecture and training settings."""
    unet = dataclasses.replace(settings.unet, base_channels=int(params["unet_base_channels"]))
    train = dataclasses.replace(settings.train, lr=float(params["lr"]), batch=int(params["batch"]),
                                min_snr_gamma=float(params["min_snr_gamma"]), cond_drop=float(params["cond_drop"]))
    out: dict[str, Any] = {k: v for k, v in settings.data_args.items() if v is not None}
    out.update(schedule=params["schedule"], prediction=params["prediction"])
    out.update({f"unet_{k}": list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(unet).items()
                if k not in ("cond_dim", "in_channels")})
    out.update({k: v for k, v in dataclasses.asdict(train).items() if k not in NOT_IN_CONFIG})
    return out
