"""What is trained: a loss over a batch drawn from in-memory images, for each kind of model."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..data import downsample, to_float
from ..diffusion import add_noise, loss_weight, target
from ..models import NULL, reconstruction_loss
from ..pipeline import AutoencoderModel, DiffusionModel, UpscaleModel
from ..precision import autocast
from .config import TrainConfig


def draw_timesteps(how: str, timesteps: int, n: int, g: torch.Generator) -> torch.Tensor:
    """n training timesteps in [0, timesteps): uniform, or logit-normal (the sigmoid of a standard normal, scaled)."""
    if how == "logit-normal":
        u = torch.sigmoid(torch.randn(n, generator=g))
        return (u * timesteps).long().clamp_(0, timesteps - 1)
    return torch.randint(0, timesteps, (n,), generator=g)


def jitter_text(text: torch.Tensor, length: float, g: torch.Generator) -> torch.Tensor:
    """Sentence embeddings (B, D) moved by Gaussian noise of about `length` (each noise vector's expected length
    relative to a unit embedding), then given their own length again; zero rows ("no text") stay zero."""
    noise = torch.randn(text.shape, generator=g) * (length / text.shape[1] ** 0.5)
    return F.normalize(text + noise, dim=1) * text.norm(dim=1, keepdim=True)


class DiffusionTask:
    """Denoising loss with v or eps prediction, min-SNR weighting and condition dropout for guidance.

    Each attribute is dropped on its own with p = attr_drop and the text with p = text_drop, so every subset
    a user may give (a group alone, a subgroup alone, a prompt alone, ...) is trained, not only whole rows;
    everything is dropped together with p = cond_drop, the unconditional branch of guidance. With `text_lead`
    (the embeddings of each row's first phrase, its name) a row's text is its name alone with p = text_lead;
    config.text_noise > 0 moves each row's text embedding a little (jitter_text) before the drops.
    `latent_stats` False keeps the latent statistics the model has (fine-tuning a trained generator).
    """

    def __init__(self, model: DiffusionModel, images: torch.Tensor, labels: torch.Tensor, config: TrainConfig,
                 text: torch.Tensor | None = None, latent_stats: bool = True, text_lead: torch.Tensor | None = None):
        r = model.resolution
        if images.shape[-1] % r:
            raise ValueError(f"images of {images.shape[-1]} px cannot be area-downsampled to {r} px")
        self.model, self.config = model, config
        factor = images.shape[-1] // r
        images = downsample(images, factor) if factor > 1 else images  # uint8 (N, 3, r, r)
        if model.autoencoder is not None:
            if latent_stats:
                model.latent_shift.zero_()
                model.latent_scale.fill_(1.0)
            z = model.to_latent(to_float(images), bf16=config.bf16)  # (N, L, r/f, r/f)
            if latent_stats:
                model.latent_shift.copy_(z.mean(dim=(0, 2, 3), keepdim=True))
                model.latent_scale.copy_(z.std(dim=(0, 2, 3), keepdim=True))
                z = (z - model.latent_shift) / model.latent_scale  # unit variance
            self.x0 = z
        else:
            self.x0 = to_float(images)
        self.labels = labels
        self.text = self._check_text(model, text, len(labels))
        self.text_lead = self._check_text(model, text_lead, len(labels)) if self.text is not None else None

    @staticmethod
    def _check_text(model: DiffusionModel, text: torch.Tensor | None, n: int) -> torch.Tensor | None:
        if text is None or not model.takes_text:
            return None
        if text.shape != (n, model.embedder.config.text_dim):
            raise ValueError(f"text embeddings must have shape ({n}, {model.embedder.config.text_dim}), "
                             f"got {tuple(text.shape)}")
        return text

    @classmethod
    def from_targets(cls, model: DiffusionModel, x0: torch.Tensor, labels: torch.Tensor,
                     config: TrainConfig, text: torch.Tensor | None = None) -> DiffusionTask:
        """A task on targets already in the model's space (normalised latents, or pixels in [-1, 1]), so that
        several models can share one encoding of the data; the model's latent statistics must be set already."""
        task = cls.__new__(cls)
        task.model, task.config, task.x0, task.labels = model, config, x0, labels
        task.text = cls._check_text(model, text, len(labels))
        task.text_lead = None
        return task

    def loss(self, idx: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        c, model = self.config, self.model
        x0 = self.x0[idx]
        labels = self.labels[idx].clone()
        b = x0.shape[0]
        drop_attr = torch.rand(labels.shape, generator=g) < c.attr_drop
        drop_all = torch.rand(b, generator=g) < c.cond_drop
        labels[drop_attr | drop_all[:, None]] = NULL
        text = None
        if self.text is not None:  # drawn only with text, so runs without text keep their random stream
            text = self.text[idx].clone()
            if self.text_lead is not None and c.text_lead > 0:  # drawn only then: other runs keep their stream
                lead = torch.rand(b, generator=g) < c.text_lead
                text[lead] = self.text_lead[idx][lead]
            if c.text_noise > 0:  # drawn only then, as above
                text = jitter_text(text, c.text_noise, g)
            text[(torch.rand(b, generator=g) < c.text_drop) | drop_all] = 0.0
        t = draw_timesteps(c.noise_levels, model.schedule.timesteps, b, g)
        noise = torch.randn(x0.shape, generator=g)
        abar = model.alphas_cumprod[t]
        x_t = add_noise(x0, noise, abar)
        with autocast(c.bf16):
            out = model(x_t, t, model.condition(labels, text))
        pred = model.schedule.prediction
        per_sample = (out.float() - target(x0, noise, abar, pred)).pow(2).mean(dim=(1, 2, 3))
        return (per_sample * loss_weight(abar, pred, c.min_snr_gamma, c.snr_floor)).mean()


class UpscalerTask:
    """L1 between the up-scaled area-downsampled image and the original (random crops of the high-res image)."""

    def __init__(self, model: UpscaleModel, images: torch.Tensor, config: TrainConfig, crop: int = 128):
        self.model, self.config, self.images = model, config, images  # uint8 (N, 3, H, W)
        self.scale = model.net.config.scale
        self.crop = min(crop, images.shape[-1]) // self.scale * self.scale

    def loss(self, idx: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        hr = self.images[idx]
        side, s = hr.shape[-1], self.scale
        if self.crop < side:
            ys = torch.randint(0, (side - self.crop) // s + 1, (len(idx),), generator=g) * s
            xs = torch.randint(0, (side - self.crop) // s + 1, (len(idx),), generator=g) * s
            hr = torch.stack([im[:, y:y + self.crop, x:x + self.crop] for im, y, x in zip(hr, ys, xs)])
        lr = downsample(hr, s)
        with autocast(self.config.bf16):
            out = self.model(to_float(lr))
        return F.l1_loss(out.float(), to_float(hr))


class AutoencoderTask:
    """Reconstruction (L1 + edge L1) through a latent perturbed with Gaussian noise."""

    def __init__(self, model: AutoencoderModel, images: torch.Tensor, config: TrainConfig, size: int = 64):
        self.model, self.config = model, config
        factor = images.shape[-1] // size
        self.images = downsample(images, factor) if factor > 1 else images  # uint8 (N, 3, size, size)

    def loss(self, idx: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        x = to_float(self.images[idx])
        f = self.model.net.config.factor
        noise = torch.randn(x.shape[0], self.model.net.config.latent_channels, x.shape[2] // f, x.shape[3] // f,
                            generator=g)
        with autocast(self.config.bf16):
            out = self.model(x, noise)
        return reconstruction_loss(out.float(), x)
