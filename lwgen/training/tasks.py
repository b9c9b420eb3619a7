"""What is trained: a loss over a batch drawn from in-memory images, for each kind of model."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..data import downsample
from ..diffusion import add_noise, loss_weight, target
from ..models import NULL, reconstruction_loss
from ..pipeline import AutoencoderModel, DiffusionModel, UpscaleModel
from .config import TrainConfig


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float in [-1, 1]."""
    return images.float() / 127.5 - 1.0


class DiffusionTask:
    """Denoising loss with v or eps prediction, min-SNR weighting and condition dropout for guidance."""

    def __init__(self, model: DiffusionModel, images: torch.Tensor, labels: torch.Tensor, config: TrainConfig):
        r = model.resolution
        if images.shape[-1] % r:
            raise ValueError(f"images of {images.shape[-1]} px cannot be area-downsampled to {r} px")
        self.model, self.config = model, config
        factor = images.shape[-1] // r
        images = downsample(images, factor) if factor > 1 else images  # uint8 (N, 3, r, r)
        if model.autoencoder is not None:
            z = model.to_latent(to_float(images), bf16=config.bf16)  # un-normalised: shift 0, scale 1 so far
            model.latent_shift.copy_(z.mean(dim=(0, 2, 3), keepdim=True))
            model.latent_scale.copy_(z.std(dim=(0, 2, 3), keepdim=True))
            self.x0 = (z - model.latent_shift) / model.latent_scale  # (N, L, r/f, r/f), unit variance
        else:
            self.x0 = to_float(images)
        self.labels = labels

    @classmethod
    def from_targets(cls, model: DiffusionModel, x0: torch.Tensor, labels: torch.Tensor,
                     config: TrainConfig) -> "DiffusionTask":
        """A task on targets already in the model's space (normalised latents, or pixels in [-1, 1]), so that
        several models can share one encoding of the data; the model's latent statistics must be set already."""
        task = cls.__new__(cls)
        task.model, task.config, task.x0, task.labels = model, config, x0, labels
        return task

    def loss(self, idx: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        c, model = self.config, self.model
        x0 = self.x0[idx]
        labels = self.labels[idx].clone()
        b = x0.shape[0]
        drop_attr = torch.rand(labels.shape, generator=g) < c.attr_drop
        drop_all = torch.rand(b, generator=g) < c.cond_drop
        labels[drop_attr | drop_all[:, None]] = NULL
        t = torch.randint(0, model.schedule.timesteps, (b,), generator=g)
        noise = torch.randn(x0.shape, generator=g)
        abar = model.alphas_cumprod[t]
        x_t = add_noise(x0, noise, abar)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=c.bf16):
            out = model(x_t, t, model.condition(labels))
        pred = model.schedule.prediction
        per_sample = (out.float() - target(x0, noise, abar, pred)).pow(2).mean(dim=(1, 2, 3))
        return (per_sample * loss_weight(abar, pred, c.min_snr_gamma)).mean()


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
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.config.bf16):
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
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.config.bf16):
            out = self.model(x, noise)
        return reconstruction_loss(out.float(), x)
