"""Shared fixtures: a tiny synthetic data set and tiny trained checkpoints, made once per test session."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lwgen.data import ImageTable, make_shapes
from lwgen.diffusion import ScheduleConfig
from lwgen.models import AutoencoderConfig, UNetConfig, UpscalerConfig
from lwgen.pipeline import AutoencoderModel, UpscaleModel
from lwgen.recipe import DataConfig, DiffusionRecipe, prepare
from lwgen.training import (
    AutoencoderTask,
    DiffusionTask,
    TrainConfig,
    Trainer,
    UpscalerTask,
)

torch.set_num_threads(1)

TINY_UNET = UNetConfig(resolution=16, in_channels=3, unshuffle=1, base_channels=16, channel_mult=(1, 2),
                       attention_levels=(1,),
                       groups=8, emb_dim=32, head_dim=16)
SHAPE_ATTRIBUTES = ["shape", "color", "size"]


def tiny_recipe(data: Path, schedule: str = "cosine", steps: int = 4, seed: int = 0, text_column: str = "",
                autoencoder: Path | None = None, unet: UNetConfig = TINY_UNET) -> DiffusionRecipe:
    """The recipe of a tiny diffusion model on a shapes folder: a few steps, rows drawn uniformly."""
    return DiffusionRecipe(DataConfig(data, SHAPE_ATTRIBUTES, load_size=32, text_column=text_column),
                           TrainConfig(batch=8, steps=steps, warmup=2, log_every=1, seed=seed, balance_power=0),
                           unet, ScheduleConfig(schedule), autoencoder=autoencoder, cond_dim=32)


def train_recipe(recipe: DiffusionRecipe, out: Path) -> Path:
    """Prepare and train a recipe as `lwgen train diffusion` does; returns the checkpoint folder."""
    run = prepare(recipe, progress=False)
    task = DiffusionTask(run.model, run.table.images, run.table.labels, recipe.train, text=run.text)
    Trainer(task, recipe.train, out, run.weights, meta=run.meta, progress=False).run()
    return out


def train_tiny_diffusion(data: Path, out: Path, schedule: str = "cosine", steps: int = 4, seed: int = 0) -> Path:
    """Train a tiny diffusion model for a few steps on a shapes folder; returns the checkpoint folder."""
    return train_recipe(tiny_recipe(data, schedule, steps, seed), out)


def train_tiny_upscaler(data: Path, out: Path, steps: int = 3) -> Path:
    """Train a tiny x4 up-scaler for a few steps; returns the checkpoint folder."""
    table = ImageTable.load(data, [], size=32, progress=False)
    model = UpscaleModel(UpscalerConfig(scale=4, channels=8, num_blocks=1))
    config = TrainConfig(batch=4, steps=steps, warmup=1, log_every=1, min_snr_gamma=0)
    Trainer(UpscalerTask(model, table.images, config, crop=32), config, out, torch.ones(len(table)),
            progress=False).run()
    return out


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory) -> Path:
    """64 synthetic coloured shapes at 32 px with shape / color / size / split columns."""
    return make_shapes(tmp_path_factory.mktemp("shapes"), n=64, size=32, seed=0)


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory, shapes_dir) -> dict[str, Path]:
    """{'cosine', 'linear', 'upscaler'}: tiny checkpoint folders, as `lwgen train` writes them."""
    root = tmp_path_factory.mktemp("checkpoints")
    return {
        "cosine": train_tiny_diffusion(shapes_dir, root / "tiny-cosine", "cosine"),
        "linear": train_tiny_diffusion(shapes_dir, root / "tiny-linear", "linear"),
        "upscaler": train_tiny_upscaler(shapes_dir, root / "upscaler-x4"),
    }


TINY_AE = AutoencoderConfig(channels=(8, 16), latent_channels=4, groups=4)


@pytest.fixture(scope="session")
def tiny_latent_checkpoint(tmp_path_factory, shapes_dir) -> Path:
    """A tiny diffusion model that diffuses in the latent of a tiny autoencoder (both trained a few steps)."""
    root = tmp_path_factory.mktemp("latent")
    table = ImageTable.load(shapes_dir, SHAPE_ATTRIBUTES, size=32, split="train", progress=False)
    ae = AutoencoderModel(TINY_AE)
    config = TrainConfig(batch=8, steps=3, warmup=1, log_every=1, min_snr_gamma=0)
    Trainer(AutoencoderTask(ae, table.images, config, size=32), config, root / "ae", torch.ones(len(table)),
            progress=False).run()
    return train_recipe(tiny_recipe(shapes_dir, steps=3, autoencoder=root / "ae"), root / "diffusion")


def train_tiny_text_diffusion(data: Path, out: Path, steps: int = 4, seed: int = 0) -> Path:
    """A tiny diffusion model that also takes prompts: trained on the rows' attribute values as text (the shapes
    CSV has no text column: "red, circle, ...")."""
    return train_recipe(tiny_recipe(data, steps=steps, seed=seed, text_column="text"), out)


@pytest.fixture(scope="session")
def tiny_text_checkpoint(tmp_path_factory, shapes_dir) -> Path:
    """A tiny cosine diffusion checkpoint with text conditioning (text_dim 384)."""
    return train_tiny_text_diffusion(shapes_dir, tmp_path_factory.mktemp("text") / "tiny-text")
