"""The score of a trial: denoising error on held-out images at fixed noise, comparable across schedules and
prediction types."""
from __future__ import annotations

import torch

from ..diffusion import add_noise, to_x0
from ..precision import autocast

LOGSNR_RANGE = (-6.0, 6.0)


class Validation:
    """v-space denoising MSE of a diffusion model on fixed held-out targets, noise and noise levels.

    Every image gets its own fixed Gaussian noise and a fixed noise level, evenly spaced in log-SNR over
    [-6, 6] (the order shuffled with `seed`). A model is asked to denoise at the timestep of *its* schedule
    whose log-SNR is nearest, so linear and cosine models are measured at the same noise levels. Its output is
    turned into the estimate of the clean target x0 that the samplers use, whatever it predicts (v or eps;
    clipped to [-1, 1] in pixel space, as the samplers do), and the error is `|x0_hat - x0|^2 / (1 - alpha_bar)`:
    the MSE of the velocity v, the unweighted v-prediction loss. The training loss itself is no score: it
    changes with the prediction type and the min-SNR weighting. An eps-predicting model pays here for its
    unstable x0 estimate at high noise, which is what a sampler's first steps start from.
    """

    def __init__(self, x0: torch.Tensor, labels: torch.Tensor, seed: int = 0, max_images: int = 512):
        if len(x0) == 0:
            raise ValueError("no held-out images to validate on")
        n = min(len(x0), max_images) if max_images > 0 else len(x0)
        g = torch.Generator().manual_seed(seed)
        pick = torch.randperm(len(x0), generator=g)[:n].sort().values
        self.x0, self.labels = x0[pick].float(), labels[pick]
        self.noise = torch.randn(self.x0.shape, generator=g)
        levels = torch.linspace(*LOGSNR_RANGE, n, dtype=torch.float64)
        self.logsnr = levels[torch.randperm(n, generator=g)] if n > 1 else levels

    def __len__(self) -> int:
        return int(self.x0.shape[0])

    def timesteps(self, alphas_cumprod: torch.Tensor) -> torch.Tensor:
        """For each image, the timestep of this schedule whose log-SNR is nearest to the image's level."""
        ac = alphas_cumprod.double().clamp(1e-12, 1 - 1e-12)
        logsnr = (ac / (1 - ac)).log()
        return (logsnr[None, :] - self.logsnr[:, None]).abs().argmin(dim=1)

    @torch.no_grad()
    def loss(self, model, bf16: bool = True, batch: int = 128) -> float:
        """The mean v-space MSE of `model` (a DiffusionModel, typically the EMA copy) on these images."""
        was_training = model.training
        model.eval()
        t = self.timesteps(model.alphas_cumprod)
        abar = model.alphas_cumprod[t].float()
        pred = model.schedule.prediction
        total = 0.0
        for s in range(0, len(self), batch):
            x0, a, tt = self.x0[s:s + batch], abar[s:s + batch], t[s:s + batch]
            x_t = add_noise(x0, self.noise[s:s + batch], a)
            with autocast(bf16):
                out = model(x_t, tt, model.condition(self.labels[s:s + batch]))
            x0_hat = to_x0(x_t, out.float(), a, pred)
            if model.autoencoder is None:  # the samplers clip pixel-space estimates to the image range too
                x0_hat = x0_hat.clamp(-1, 1)
            total += float(((x0_hat - x0).pow(2).mean(dim=(1, 2, 3)) / (1 - a)).sum())
        model.train(was_training)
        return total / len(self)
