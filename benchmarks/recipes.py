"""The contenders of the budgeted benchmarks: lwgen's recipe, diffusers U-Nets, and a conditional VAE.

Every `prepare_*` returns a `harness.Prepared`: a lwgen `Trainer` around a task whose `loss(idx, generator)`
draws a batch from the emoji training split, and the generator that `evaluate_generator` scores.

- `lwgen`: what `lwgen train autoencoder` + `lwgen train diffusion --autoencoder` do with their defaults.
- `lwgen-subgroup-balanced`: the same, sampling rows class-balanced by subgroup instead of group.
- `lwgen-tuned`: the same with the best settings of a 4-trial, 2-minute `lwgen tune` search on this data
  (lr 4.2e-3, width 48, linear schedule, no min-SNR weighting, condition drop 0.2, batch 128).
- `reference`: the standard small recipe of the baseline study this project started from: diffusers
  `UNet2DModel` (32, 64, 64, 128), 2.95 M parameters, pixel space at 64 px, 12 groups through
  `num_class_embeds`, cosine (`squaredcos_cap_v2`), eps-prediction, MSE, AdamW 3e-4 constant, batch 32,
  horizontal flips, clip 1, EMA 0.999, bf16, DDIM sampling.
- `peer`: a diffusers `UNet2DModel` with lwgen's U-Net parameter count (within 10 %), given lwgen's schedule,
  v-prediction, min-SNR weighting, optimiser, batch, EMA and DPM-Solver++ sampler: only the network and the
  space it diffuses in differ. It conditions on subgroup through `num_class_embeds` (a subgroup names its group).
- `cvae`: a conditional VAE (the approach the original project abandoned) with lwgen's attribute embedder.
"""
from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from harness import Prepared, Setting, balanced, budget_config, images_64, load_table
from torch import nn

from lwgen.data import to_float
from lwgen.diffusion import ScheduleConfig, add_noise, loss_weight, target
from lwgen.models import (
    NULL,
    AttributeEmbedder,
    AutoencoderConfig,
    EmbedderConfig,
    UNetConfig,
    count_parameters,
)
from lwgen.pipeline import AutoencoderModel, per_sample_noise
from lwgen.precision import autocast
from lwgen.recipe import DataConfig, DiffusionRecipe, prepare
from lwgen.training import Trainer
from lwgen.training.tasks import AutoencoderTask, DiffusionTask

ATTRIBUTES = ["group", "subgroup", "style", "skin_tone"]


# --- lwgen ----------------------------------------------------------------------------------------------------
def prepare_lwgen(setting: Setting, folder: Path, ae_minutes: float | None = None, width: int | None = None,
                  schedule: str = "cosine", balance_by: int = 0, **train: Any) -> Prepared:
    """Autoencoder first (inside the budget), then latent diffusion; the defaults of `lwgen train` unless a
    U-Net width, schedule, attribute to balance by (its index) or training settings are given."""
    attributes = setting.attributes or ATTRIBUTES
    table = load_table(setting.data, list(attributes), "train")  # reading the data is not part of any budget
    images = images_64(table)
    t0 = time.monotonic()
    ae_minutes = ae_minutes if ae_minutes is not None else min(0.3 * setting.budgets[0], 10.0)
    ae = AutoencoderModel(AutoencoderConfig())
    ae_config = budget_config(setting, ae_minutes, batch=32, min_snr_gamma=0.0)
    ae_trainer = Trainer(AutoencoderTask(ae, images, ae_config, size=64), ae_config, folder / "autoencoder",
                         torch.ones(len(table)), progress=setting.progress)
    ae_trainer.run()
    unet = UNetConfig() if width is None else UNetConfig(base_channels=width)
    spent = time.monotonic() - t0
    config = budget_config(setting, max(setting.budgets[-1] - spent / 60, 0.01), **train)
    recipe = DiffusionRecipe(DataConfig(setting.data, list(attributes), text_column=""), config, unet,
                             ScheduleConfig(schedule), autoencoder=folder / "autoencoder")
    model = prepare(recipe, progress=setting.progress, say=lambda _: None, table=table).model
    task = DiffusionTask(model, images, table.labels, config)  # encodes the training latents: inside the budget
    spent = time.monotonic() - t0
    trainer = Trainer(task, config, folder / "diffusion", balanced(table, column=balance_by),
                      progress=setting.progress)
    info = {"parameters": count_parameters(model.unet) + count_parameters(model.embedder),
            "autoencoder_parameters": count_parameters(model.autoencoder), "autoencoder_steps": ae_trainer.step,
            "attributes": list(attributes)}
    return Prepared(trainer, model, "dpmpp", spent, info)


# --- diffusers U-Nets -----------------------------------------------------------------------------------------
class JointClass(nn.Module):
    """Maps per-attribute labels (as DiffusionModel.encode gives them) to one class id; the last id is null."""

    def __init__(self, vocab: dict[str, list[str]], labels: torch.Tensor):
        super().__init__()
        self.vocab = {k: list(v) for k, v in vocab.items()}
        self.attributes = list(self.vocab)
        self.classes = sorted({tuple(row) for row in labels.tolist()})
        self.index = {c: i for i, c in enumerate(self.classes)}
        self.null = len(self.classes)

    def encode(self, values: dict[str, str]) -> torch.Tensor:
        return torch.tensor([self.vocab[a].index(values[a]) if a in values else NULL for a in self.attributes])

    def condition(self, labels: torch.Tensor) -> torch.Tensor:
        return torch.tensor([self.index.get(tuple(row), self.null) for row in labels.tolist()])


class DiffusersGenerator(nn.Module):
    """A diffusers UNet2DModel in pixel space with a diffusers noise scheduler, behind lwgen's generator API."""

    kind = "diffusers"
    resolution = 64

    def __init__(self, labels: JointClass, channels: Sequence[int], attention: Sequence[int], prediction: str,
                 sampler_spacing: str = "leading"):
        super().__init__()
        from diffusers import DDPMScheduler, UNet2DModel

        self.labels = labels
        self.vocab, self.attributes = labels.vocab, labels.attributes
        n = len(channels)
        self.unet_kwargs = dict(
            sample_size=64, in_channels=3, out_channels=3, block_out_channels=tuple(channels), layers_per_block=1,
            down_block_types=tuple("AttnDownBlock2D" if i in attention else "DownBlock2D" for i in range(n)),
            up_block_types=tuple("AttnUpBlock2D" if n - 1 - i in attention else "UpBlock2D" for i in range(n)),
            norm_num_groups=8, num_class_embeds=labels.null + 1)
        self.unet = UNet2DModel(**self.unet_kwargs)
        self.prediction = prediction
        self.scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2",
                                       prediction_type="epsilon" if prediction == "eps" else "v_prediction",
                                       timestep_spacing=sampler_spacing)
        self.register_buffer("alphas_cumprod", self.scheduler.alphas_cumprod.float(), persistent=False)

    def config_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "unet": {k: list(v) if isinstance(v, tuple) else v
                                            for k, v in self.unet_kwargs.items()},
                "prediction": self.prediction, "classes": len(self.labels.classes)}

    def encode(self, values: dict[str, str]) -> torch.Tensor:
        return self.labels.encode(values)

    def condition(self, labels: torch.Tensor) -> torch.Tensor:
        return self.labels.condition(labels)

    def forward(self, x: torch.Tensor, t: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        return self.unet(x, t, class_labels=classes).sample

    @torch.no_grad()
    def generate(self, cond: torch.Tensor, seeds: Sequence[int], steps: int = 20, sampler: str = "dpmpp",
                 guidance: float = 2.0, bf16: bool = True) -> torch.Tensor:
        from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

        if sampler == "dpmpp":
            sched = DPMSolverMultistepScheduler.from_config(self.scheduler.config, algorithm_type="dpmsolver++",
                                                            solver_order=2)
        else:
            sched = DDIMScheduler.from_config(self.scheduler.config)
        sched.set_timesteps(steps)
        x = per_sample_noise((3, 64, 64), [torch.Generator().manual_seed(int(s)) for s in seeds])
        x = x * sched.init_noise_sigma
        null = torch.full_like(cond, self.labels.null)
        for t in sched.timesteps:
            with autocast(bf16):
                out = self(torch.cat([x, x]), t.expand(2 * len(x)), torch.cat([cond, null])).float()
            c, u = out.chunk(2)
            x = sched.step(u + guidance * (c - u), t, x).prev_sample
        return x.clamp(-1, 1)


class DiffusersTask:
    """Pixel-space denoising loss for DiffusersGenerator (condition dropout for guidance, optional flips)."""

    def __init__(self, model: DiffusersGenerator, images: torch.Tensor, classes: torch.Tensor, config,
                 flips: bool):
        self.model, self.images, self.classes, self.config, self.flips = model, images, classes, config, flips

    def loss(self, idx: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        c, model = self.config, self.model
        x0 = to_float(self.images[idx])
        if self.flips:
            flip = torch.rand(len(idx), generator=g) < 0.5
            x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0)
        classes = self.classes[idx].clone()
        classes[torch.rand(len(idx), generator=g) < c.cond_drop] = model.labels.null
        t = torch.randint(0, 1000, (len(idx),), generator=g)
        noise = torch.randn(x0.shape, generator=g)
        abar = model.alphas_cumprod[t]
        with autocast(c.bf16):
            out = model(add_noise(x0, noise, abar), t, classes)
        per_sample = (out.float() - target(x0, noise, abar, model.prediction)).pow(2).mean(dim=(1, 2, 3))
        return (per_sample * loss_weight(abar, model.prediction, c.min_snr_gamma)).mean()


def _diffusers(setting: Setting, folder: Path, attributes: list[str], channels, attention, prediction: str,
               sampler: str, spacing: str, flips: bool, weights: str, **train) -> Prepared:
    table = load_table(setting.data, attributes, "train")
    t0 = time.monotonic()
    labels = JointClass(table.vocab, table.labels)
    model = DiffusersGenerator(labels, channels, attention, prediction, spacing)
    config = budget_config(setting, setting.budgets[-1], **train)
    task = DiffusersTask(model, images_64(table), labels.condition(table.labels), config, flips)
    w = balanced(table) if weights == "balanced" else torch.ones(len(table))
    trainer = Trainer(task, config, folder / "model", w, progress=setting.progress)
    info = {"parameters": count_parameters(model.unet), "attributes": attributes, "classes": len(labels.classes)}
    return Prepared(trainer, model, sampler, time.monotonic() - t0, info)


def prepare_reference(setting: Setting, folder: Path) -> Prepared:
    """The standard small recipe (see the module docstring)."""
    return _diffusers(setting, folder, ["group"], (32, 64, 64, 128), (), "eps", "ddim", "leading", flips=True,
                      weights="uniform", lr=3e-4, batch=32, warmup=1, min_lr_ratio=1.0, weight_decay=0.01,
                      min_snr_gamma=0.0, attr_drop=0.0, cond_drop=0.1)


def prepare_peer(setting: Setting, folder: Path) -> Prepared:
    """diffusers UNet2DModel of lwgen's size with lwgen's training recipe, in pixel space."""
    return _diffusers(setting, folder, ["group", "subgroup"], (32, 64, 128, 128), (2, 3), "v", "dpmpp", "trailing",
                      flips=False, weights="balanced", attr_drop=0.0)


# --- conditional VAE ------------------------------------------------------------------------------------------
def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.SiLU())


class ConditionalVAE(nn.Module):
    """q(z | x, c) and p(x | z, c): conv encoder 64 -> 4 px, 128-d Gaussian latent, conv decoder 4 -> 64 px.

    The condition is lwgen's summed attribute embedding (null vector per attribute), fed to both sides.
    """

    kind = "cvae"
    resolution = 64

    def __init__(self, vocab: dict[str, list[str]], widths: Sequence[int] = (32, 64, 128, 256), latent: int = 128,
                 cond_dim: int = 256, kl_weight: float = 0.02):
        super().__init__()
        self.vocab = {k: list(v) for k, v in vocab.items()}
        self.attributes = list(self.vocab)
        self.latent, self.kl_weight, self.widths = latent, kl_weight, tuple(widths)
        self.embedder = AttributeEmbedder(EmbedderConfig(self.attributes, [len(v) for v in self.vocab.values()],
                                                         cond_dim))
        enc, cin = [_block(3, widths[0])], widths[0]
        for w in widths:
            enc += [nn.Conv2d(cin, w, 4, stride=2, padding=1), nn.GroupNorm(8, w), nn.SiLU(), _block(w, w)]
            cin = w
        self.encoder = nn.Sequential(*enc)  # (B, widths[-1], 4, 4)
        flat = widths[-1] * 16
        self.to_stats = nn.Linear(flat + cond_dim, 2 * latent)
        self.from_latent = nn.Sequential(nn.Linear(latent + cond_dim, flat), nn.SiLU())
        dec = []
        for w in reversed(widths):
            dec += [nn.Upsample(scale_factor=2, mode="nearest"), _block(cin, w), _block(w, w)]
            cin = w
        self.decoder = nn.Sequential(*dec, nn.Conv2d(cin, 3, 3, padding=1))

    def config_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "widths": list(self.widths), "latent": self.latent, "kl_weight": self.kl_weight}

    def encode(self, values: dict[str, str]) -> torch.Tensor:
        return torch.tensor([self.vocab[a].index(values[a]) if a in values else NULL for a in self.attributes])

    def condition(self, labels: torch.Tensor) -> torch.Tensor:
        return self.embedder(labels)

    def decode(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.from_latent(torch.cat([z, cond], 1)).view(len(z), self.widths[-1], 4, 4)
        return torch.tanh(self.decoder(h))

    def forward(self, x: torch.Tensor, cond: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x).flatten(1)
        mu, logvar = self.to_stats(torch.cat([h, cond], 1)).float().chunk(2, dim=1)
        logvar = logvar.clamp(-10, 10)
        z = mu + (0.5 * logvar).exp() * eps
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)
        return self.decode(z, cond), kl

    @torch.no_grad()
    def generate(self, cond: torch.Tensor, seeds: Sequence[int], steps: int = 0, sampler: str = "",
                 guidance: float = 0.0, bf16: bool = True) -> torch.Tensor:
        """Decode z ~ N(0, I) (one seed per image); steps, sampler and guidance do not apply."""
        z = per_sample_noise((self.latent,), [torch.Generator().manual_seed(int(s)) for s in seeds])
        with autocast(bf16):
            return self.decode(z, cond).float().clamp(-1, 1)


class VAETask:
    """Negative ELBO per pixel: MSE + kl_weight * KL / pixels, with lwgen's attribute dropout."""

    def __init__(self, model: ConditionalVAE, images: torch.Tensor, labels: torch.Tensor, config):
        self.model, self.images, self.labels, self.config = model, images, labels, config

    def loss(self, idx: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        c, model = self.config, self.model
        x = to_float(self.images[idx])
        labels = self.labels[idx].clone()
        labels[torch.rand(labels.shape, generator=g) < c.attr_drop] = NULL
        labels[torch.rand(len(idx), generator=g) < c.cond_drop] = NULL
        eps = torch.randn(len(idx), model.latent, generator=g)
        with autocast(c.bf16):
            out, kl = model(x, model.condition(labels), eps)
        return F.mse_loss(out.float(), x) + model.kl_weight * kl.mean() / x[0].numel()


def prepare_cvae(setting: Setting, folder: Path) -> Prepared:
    attributes = setting.attributes or ATTRIBUTES
    table = load_table(setting.data, attributes, "train")
    t0 = time.monotonic()
    model = ConditionalVAE(table.vocab)
    config = budget_config(setting, setting.budgets[-1])
    trainer = Trainer(VAETask(model, images_64(table), table.labels, config), config, folder / "model",
                      balanced(table), progress=setting.progress)
    info = {"parameters": count_parameters(model), "attributes": attributes}
    return Prepared(trainer, model, "decoder", time.monotonic() - t0, info)


RECIPES = {"lwgen": prepare_lwgen, "reference": prepare_reference, "peer": prepare_peer, "cvae": prepare_cvae,
           "lwgen-subgroup-balanced": functools.partial(prepare_lwgen, balance_by=1),
           "lwgen-tuned": functools.partial(prepare_lwgen, width=48, schedule="linear", lr=4.2e-3, batch=128,
                                            min_snr_gamma=0.0, cond_drop=0.2)}
