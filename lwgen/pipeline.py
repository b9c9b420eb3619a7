"""The generator (attribute embedder + U-Net + schedule) and the up-scaler, as loadable, samplable units."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_module,
    module_state,
    read_config,
)
from .conditioning import ANY, DEFAULT_GUIDANCE, config_label_rows
from .diffusion import ScheduleConfig, get_sampler, spaced_timesteps, to_x0
from .models import (
    NULL,
    AttributeEmbedder,
    Autoencoder,
    AutoencoderConfig,
    EmbedderConfig,
    UNet,
    UNetConfig,
    Upscaler,
    UpscalerConfig,
)
from .precision import autocast
from .prompt_reader import PromptReader

# Noise levels sigma = sqrt((1 - abar) / abar) at which guidance applies (Kynkaanniemi et al. 2024, "Applying
# guidance in a limited interval"); outside it the conditional prediction alone is used, which also skips the
# unconditional pass. None = every step.
DEFAULT_GUIDANCE_INTERVAL: tuple[float, float] | None = None
# Weight of the part of the guidance update parallel to the conditional x0 prediction: 1 is classifier-free
# guidance as Ho & Salimans wrote it, 0 keeps only the orthogonal part (adaptive projected guidance, Sadat et al.
# 2024), which they find lets a large scale steer without over-saturating.
DEFAULT_GUIDANCE_PARALLEL = 1.0


def within(abar: torch.Tensor, interval: tuple[float, float]) -> bool:
    """Whether the noise level sigma = sqrt((1 - abar) / abar) of one step lies in [lo, hi]."""
    a = float(abar)
    sigma = float("inf") if a <= 0 else ((1 - a) / a) ** 0.5
    return interval[0] <= sigma <= interval[1]


def projected_guidance(x0_cond: torch.Tensor, x0_uncond: torch.Tensor, scale: float, parallel: float) -> torch.Tensor:
    """x0_cond + (scale - 1) * update, where the update is the guidance difference with its component along x0_cond
    weighted by `parallel` (per sample; parallel = 1 gives x0_uncond + scale * (x0_cond - x0_uncond))."""
    diff = x0_cond - x0_uncond
    dims = tuple(range(1, diff.dim()))
    along = (diff * x0_cond).sum(dims, keepdim=True) / (x0_cond * x0_cond).sum(dims, keepdim=True).clamp_min(1e-8)
    update = diff - (1.0 - parallel) * along * x0_cond
    return x0_cond + (scale - 1.0) * update


class ConditionError(ValueError):
    """An attribute name or value that the model does not know."""


def _build(cls, data: dict, source: str, what: str):
    try:
        return cls(**data)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{source}: invalid {what} in config.json ({e})") from None


def _weights(tensors: dict[str, torch.Tensor], ema: bool, source: str) -> dict[str, torch.Tensor]:
    """Prefer the EMA weights (`ema.*`) and fall back on the raw ones (`model.*`)."""
    for prefix in ("ema", "model") if ema else ("model", "ema"):
        state = module_state(tensors, prefix)
        if state:
            return state
    raise CheckpointError(f"{source}: no 'ema.*' or 'model.*' tensors in model.safetensors")


def _from_checkpoint(cls, folder: str | Path, ema: bool):
    """Build `cls` from a checkpoint folder's config.json and load its (EMA) weights; no pickle involved."""
    config, tensors = load_checkpoint(Path(folder))
    model = cls.from_config(config, str(folder))
    load_module(model, _weights(tensors, ema, str(folder)), str(folder))
    model.checkpoint_config = config
    return model.eval()


def per_sample_noise(shape: Sequence[int], generators: list[torch.Generator]) -> torch.Tensor:
    """One standard-normal tensor per generator, stacked: results do not depend on the batch size."""
    return torch.stack([torch.randn(*shape, generator=g) for g in generators])


class DiffusionModel(nn.Module):
    """Class-conditional diffusion generator: vocabularies, embedder, U-Net, noise schedule and, when the
    diffusion runs in a latent space, the autoencoder that maps latents to images."""

    kind = "diffusion"
    latent_shift: torch.Tensor  # buffers, registered in __init__ (latent generators only)
    latent_scale: torch.Tensor
    alphas_cumprod: torch.Tensor
    autoencoder: Autoencoder | None
    prompt_reader: PromptReader | None = None  # attribute values read from prompts (from_checkpoint loads it)

    def __init__(self, unet: UNetConfig, schedule: ScheduleConfig, vocab: dict[str, list[str]], cond_dim: int = 256,
                 autoencoder: AutoencoderConfig | None = None, text_dim: int = 0):
        super().__init__()
        if unet.cond_dim != cond_dim:
            unet = dataclasses.replace(unet, cond_dim=cond_dim)
        self.vocab = {k: list(v) for k, v in vocab.items()}
        self.attributes = list(self.vocab)
        self.schedule = schedule
        self.embedder = AttributeEmbedder(EmbedderConfig(self.attributes, [len(v) for v in self.vocab.values()],
                                                         cond_dim, text_dim))
        self.unet = UNet(unet)
        self.autoencoder = None
        if autoencoder is not None:
            if autoencoder.latent_channels != unet.in_channels:
                raise ValueError(f"the U-Net takes {unet.in_channels} channels but the autoencoder's latent has "
                                 f"{autoencoder.latent_channels}")
            self.autoencoder = Autoencoder(autoencoder).requires_grad_(False)
            # per-channel statistics of the training latents: the U-Net sees (z - shift) / scale
            self.register_buffer("latent_shift", torch.zeros(1, unet.in_channels, 1, 1))
            self.register_buffer("latent_scale", torch.ones(1, unet.in_channels, 1, 1))
        self.register_buffer("alphas_cumprod", schedule.alphas_cumprod().float(), persistent=False)

    @property
    def resolution(self) -> int:
        """Side of the generated images in pixels."""
        factor = self.autoencoder.config.factor if self.autoencoder is not None else 1
        return self.unet.config.resolution * factor

    def config_dict(self) -> dict[str, Any]:
        ae = dataclasses.asdict(self.autoencoder.config) if self.autoencoder is not None else None
        return {"kind": self.kind, "unet": dataclasses.asdict(self.unet.config),
                "schedule": dataclasses.asdict(self.schedule), "autoencoder": ae, "vocab": self.vocab,
                "cond_dim": self.embedder.config.dim, "text_dim": self.embedder.config.text_dim}

    @property
    def takes_text(self) -> bool:
        """Whether prompts (sentence embeddings) steer this generator."""
        return self.embedder.config.text_dim > 0

    # --- latent space -----------------------------------------------------------------------------------
    @torch.no_grad()
    def to_latent(self, images: torch.Tensor, bf16: bool = True, batch: int = 256) -> torch.Tensor:
        """Images in [-1, 1] -> what the U-Net diffuses (normalised latents, or the images themselves)."""
        if self.autoencoder is None:
            return images
        out = []
        for chunk in images.split(batch):
            with autocast(bf16, chunk.device):
                out.append(self.autoencoder.encode(chunk).float())
        return (torch.cat(out) - self.latent_shift) / self.latent_scale

    @torch.no_grad()
    def from_latent(self, z: torch.Tensor, bf16: bool = True, batch: int = 64) -> torch.Tensor:
        """The inverse of to_latent, clamped to [-1, 1]."""
        if self.autoencoder is None:
            return z.clamp(-1, 1)
        out = []
        for chunk in (z * self.latent_scale + self.latent_shift).split(batch):
            with autocast(bf16, chunk.device):
                out.append(self.autoencoder.decode(chunk).float().clamp(-1, 1))
        return torch.cat(out)

    @classmethod
    def from_config(cls, config: dict[str, Any], source: str = "config") -> DiffusionModel:
        if config.get("kind") != cls.kind:
            raise CheckpointError(f"{source}: not a diffusion checkpoint (kind={config.get('kind')!r})")
        try:
            vocab = config["vocab"]
            unet = _build(UNetConfig, config["unet"], source, "unet")
            schedule = _build(ScheduleConfig, config["schedule"], source, "schedule")
            ae = config.get("autoencoder")
            ae = _build(AutoencoderConfig, ae, source, "autoencoder") if ae else None
            return cls(unet, schedule, vocab, int(config.get("cond_dim", 256)), ae, int(config.get("text_dim", 0)))
        except KeyError as e:
            raise CheckpointError(f"{source}: config.json lacks {e}") from None

    @classmethod
    def from_checkpoint(cls, folder: str | Path, ema: bool = True) -> DiffusionModel:
        model = _from_checkpoint(cls, folder, ema)
        if model.takes_text:
            model.prompt_reader = PromptReader.load(folder, model.vocab, config_label_rows(model.checkpoint_config))
        return model

    # --- conditions -------------------------------------------------------------------------------------
    def encode(self, values: dict[str, str]) -> torch.Tensor:
        """{attribute: value name} -> labels (A,); attributes left out or set to "any" are NULL."""
        labels = torch.full((len(self.attributes),), NULL, dtype=torch.long)
        for name, value in values.items():
            if name not in self.vocab:
                raise ConditionError(f"unknown attribute {name!r}; valid attributes: {', '.join(self.attributes)}")
            if value == ANY or value is None:
                continue
            vocab = self.vocab[name]
            if value not in vocab:
                shown = ", ".join(vocab[:40]) + (f", ... ({len(vocab)} in all)" if len(vocab) > 40 else "")
                raise ConditionError(f"unknown value {value!r} for attribute {name!r}; valid values: {shown}")
            labels[self.attributes.index(name)] = vocab.index(value)
        return labels

    def condition(self, labels: torch.Tensor, text: torch.Tensor | None = None) -> torch.Tensor:
        """labels (B, A) and optional sentence embeddings (B, text_dim; zero rows = no text) -> condition
        vectors (B, D)."""
        return self.embedder(labels, text)

    def encode_prompt(self, prompt: str | None, n: int = 1) -> torch.Tensor | None:
        """A prompt -> its sentence embedding repeated n times (n, text_dim); None or "" -> None (no text)."""
        if not prompt or not prompt.strip():
            return None
        if not self.takes_text:
            raise ConditionError("this generator was trained without text, so it takes no prompt; train one with "
                                 "a text column (lwgen train diffusion --text-column ...)")
        from .text import (
            encode,  # lazy: the sentence encoder loads on the first prompt only
        )

        return encode([prompt]).expand(n, -1)

    def null_condition(self, n: int = 1) -> torch.Tensor:
        return self.embedder(torch.full((n, len(self.attributes)), NULL, dtype=torch.long))

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.unet(x_t, t, cond)

    # --- sampling ---------------------------------------------------------------------------------------
    def denoiser(self, cond: torch.Tensor, guidance: float = 1.0, bf16: bool = True, clip: bool = True,
                 interval: tuple[float, float] | None = None,
                 parallel: float = DEFAULT_GUIDANCE_PARALLEL) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """A ``denoise(x_t, t) -> x0`` closure with classifier-free guidance (Ho & Salimans 2022), applied at the
        noise levels sigma within `interval` (all of them when None); `parallel` < 1 projects the guidance update
        (see `projected_guidance`)."""
        pred = self.schedule.prediction
        uncond = self.null_condition(cond.shape[0]) if guidance != 1.0 else None

        def denoise(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            abar = self.alphas_cumprod[t]
            with autocast(bf16, x.device):
                if uncond is None or (interval is not None and not within(abar[0], interval)):
                    x0 = to_x0(x, self.unet(x, t, cond).float(), abar, pred)
                else:
                    both = self.unet(torch.cat([x, x]), torch.cat([t, t]), torch.cat([cond, uncond])).float()
                    c, u = both.chunk(2)
                    if parallel == 1.0:
                        x0 = to_x0(x, u + guidance * (c - u), abar, pred)
                    else:
                        x0 = projected_guidance(to_x0(x, c, abar, pred), to_x0(x, u, abar, pred), guidance, parallel)
            return x0.clamp(-1, 1) if clip and self.autoencoder is None else x0

        return denoise

    @torch.no_grad()
    def generate(self, cond: torch.Tensor, seeds: Sequence[int], steps: int = 20, sampler: str = "dpmpp",
                 guidance: float = DEFAULT_GUIDANCE, callback: Callable[[dict], None] | None = None, bf16: bool = True,
                 eta: float | None = None, noise: torch.Tensor | None = None, batch: int = 0,
                 progress: Callable[[float], None] | None = None,
                 interval: tuple[float, float] | None = DEFAULT_GUIDANCE_INTERVAL,
                 parallel: float = DEFAULT_GUIDANCE_PARALLEL) -> torch.Tensor:
        """Sample images in [-1, 1], (B, 3, R, R); image i depends only on seeds[i] and cond[i].

        `batch` > 0 samples that many images at a time (the same images, less memory); `progress(fraction done)`
        is called after every sampler step; `interval` (lo, hi) limits guidance to noise levels lo <= sigma <= hi;
        `parallel` weighs the guidance update's component along the conditional prediction (`projected_guidance`).
        `noise` (B, C, r, r) replaces the seeded initial noise (the U-Net's input shape: see `noise_shape`); the
        callback's "x" and "x0" are in that space too, for the images of the current batch (`from_latent` turns
        them into images).
        """
        n = len(seeds)
        if cond.shape[0] != n:
            raise ValueError(f"{cond.shape[0]} conditions but {n} seeds")
        size = batch if 0 < batch < n else max(n, 1)
        out = []
        for start in range(0, n, size):
            stop = min(n, start + size)

            def step(info: dict, start: int = start, stop: int = stop) -> None:
                if callback is not None:
                    callback(info)
                if progress is not None:
                    progress((start + (stop - start) * (info["i"] + 1) / info["n"]) / n)

            out.append(self._sample(cond[start:stop], seeds[start:stop], steps, sampler, guidance, step, bf16, eta,
                                    None if noise is None else noise[start:stop], interval, parallel))
        return torch.cat(out) if out else torch.zeros(0, 3, self.resolution, self.resolution)

    def _sample(self, cond: torch.Tensor, seeds: Sequence[int], steps: int, sampler: str, guidance: float,
                callback: Callable[[dict], None], bf16: bool, eta: float | None,
                noise: torch.Tensor | None, interval: tuple[float, float] | None = None,
                parallel: float = DEFAULT_GUIDANCE_PARALLEL) -> torch.Tensor:
        shape = self.noise_shape
        gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
        x = per_sample_noise(shape, gens) if noise is None else noise.clone()
        fn = get_sampler(sampler)
        kwargs = {"eta": eta} if (eta is not None and sampler == "ddim") else {}
        ts = spaced_timesteps(steps, self.schedule.timesteps)
        z = fn(self.denoiser(cond, guidance, bf16, interval=interval, parallel=parallel), x, ts, self.alphas_cumprod,
               noise=lambda: per_sample_noise(shape, gens), callback=callback, **kwargs)
        return self.from_latent(z, bf16)

    @property
    def noise_shape(self) -> tuple[int, int, int]:
        """Shape of one sample in the space the U-Net diffuses."""
        c = self.unet.config
        return (c.in_channels, c.resolution, c.resolution)


class _NetUnit(nn.Module):
    """A single network stored under one config key (`kind`); shared loading for the up-scaler and autoencoder."""

    kind = ""
    config_cls: type = object
    net_cls: type = nn.Module

    def __init__(self, config: Any):
        super().__init__()
        self.net = self.net_cls(config)

    def config_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, self.kind: dataclasses.asdict(self.net.config)}

    @classmethod
    def from_config(cls, config: dict[str, Any], source: str = "config"):
        if config.get("kind") != cls.kind:
            raise CheckpointError(f"{source}: not an {cls.kind} checkpoint (kind={config.get('kind')!r})")
        if cls.kind not in config:
            raise CheckpointError(f"{source}: config.json lacks {cls.kind!r}")
        return cls(_build(cls.config_cls, config[cls.kind], source, cls.kind))

    @classmethod
    def from_checkpoint(cls, folder: str | Path, ema: bool = True):
        return _from_checkpoint(cls, folder, ema)


class UpscaleModel(_NetUnit):
    """The x4 (or x2) up-scaler as a loadable unit."""

    kind, config_cls, net_cls = "upscaler", UpscalerConfig, Upscaler

    @torch.no_grad()
    def upscale(self, images: torch.Tensor, bf16: bool = True, batch: int = 16) -> torch.Tensor:
        """images (B, 3, h, w) in [-1, 1] -> (B, 3, h*s, w*s) in [-1, 1]."""
        outs = []
        for chunk in images.split(batch):
            with autocast(bf16, chunk.device):
                outs.append(self.net(chunk).float().clamp(-1, 1))
        return torch.cat(outs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class AutoencoderModel(_NetUnit):
    """The image autoencoder as a loadable unit (trained on its own, then built into diffusion checkpoints)."""

    kind, config_cls, net_cls = "autoencoder", AutoencoderConfig, Autoencoder

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(x, noise)


def load_model(folder: str | Path, ema: bool = True) -> DiffusionModel | UpscaleModel | AutoencoderModel | Any:
    """Load any lwgen checkpoint folder, choosing the class from config.json's `kind` (the evaluation classifier
    included: it keeps its raw weights)."""
    config = read_config(Path(folder))
    kind = config.get("kind")
    if kind == "classifier":
        from .evaluation.classifier import Classifier  # lazy: evaluation builds on the pipeline

        return Classifier.from_checkpoint(folder)
    kinds = {m.kind: m for m in (DiffusionModel, UpscaleModel, AutoencoderModel)}
    if kind not in kinds:
        known = ", ".join([*kinds, "classifier"])
        raise CheckpointError(f"{folder}: unknown checkpoint kind {kind!r} (known: {known})")
    return kinds[kind].from_checkpoint(folder, ema)
