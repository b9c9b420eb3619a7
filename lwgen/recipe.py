"""One diffusion training run, typed: the data, the U-Net, the schedule, the optimisation and the autoencoder.

`prepare(recipe)` alone turns a recipe into what the trainer needs: it loads the table, builds (or restores) the
model, encodes the latents, embeds the text and weighs the rows. The training command, the tuner, the benchmarks
and the test fixtures all build their runs through it, and every diffusion checkpoint records its recipe, so
`lwgen train --config checkpoints/NAME/config.json --out runs/AGAIN` trains the same run again
(`recipe_flags` turns a checkpoint's config.json back into the flags that made it).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
import torch

from .checkpoint import CheckpointError, load_checkpoint, module_state, read_config
from .data import ImageTable, class_balanced_weights
from .data.cache import CACHE_DIR
from .diffusion import ScheduleConfig
from .models import AutoencoderConfig, UNetConfig, UpscalerConfig
from .pipeline import AutoencoderModel, DiffusionModel
from .precision import autocast
from .text import ENCODER, TEXT_DIM, cached_encode, lead_phrase, template
from .training.config import TrainConfig

DATA_FLAGS = {"folder": "data", "csv": "csv", "file_column": "file_column", "split": "split", "fit": "fit",
              "load_size": "load_size"}  # provenance key in config.json -> flag dest


@dataclass
class DataConfig:
    """Where the images and their annotations are, and how they are read."""

    HELP: ClassVar[dict[str, str]] = {
        "folder": "folder with the images and the annotation CSV",
        "attributes": "CSV columns to condition on",
        "csv": "annotation CSV, relative to --data or absolute",
        "file_column": "CSV column with the image paths",
        "split": "rows whose 'split' column has this value ('' = all rows)",
        "fit": "make images square by padding or cropping",
        "load_size": "images are loaded at this size, then area-downsampled",
        "skip_bad": "skip rows with missing or broken images (listed in a report)",
        "text_column": "CSV column of words describing each image, embedded by the sentence encoder so the "
                       "generator takes prompts; without that column the text is the row's attribute values; "
                       "'' trains without text",
    }

    folder: Path
    attributes: list[str] = field(default_factory=list)
    csv: str = "annotations.csv"
    file_column: str = "file"
    split: str = "train"
    fit: str = "pad"
    load_size: int = 256
    skip_bad: bool = False
    text_column: str = "text"

    def load(self, vocab: dict[str, list[str]] | None = None, progress: bool = True) -> ImageTable:
        """The table of the chosen split (its vocabulary fixed to `vocab` when given)."""
        return ImageTable.load(self.folder, list(self.attributes), size=self.load_size, csv=self.csv,
                               file_column=self.file_column, fit=self.fit, skip_bad=self.skip_bad, vocab=vocab,
                               split=self.split or None, progress=progress)

    def provenance(self, table: ImageTable) -> dict[str, Any]:
        """The `data` record of a checkpoint's config.json."""
        return {"folder": str(self.folder), "csv": self.csv, "file_column": self.file_column,
                "split": self.split or None, "fit": self.fit, "load_size": self.load_size,
                "images": len(table), "skipped": len(table.skipped)}


@dataclass
class DiffusionRecipe:
    """Everything `lwgen train diffusion` needs to train one generator from scratch (or from `init`)."""

    data: DataConfig
    train: TrainConfig
    unet: UNetConfig = field(default_factory=UNetConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    autoencoder: Path | None = None  # a checkpoint whose autoencoder gives the latent (an autoencoder or generator)
    init: Path | None = None  # start from this generator's weights
    cond_dim: int = 256

    def record(self) -> dict[str, Any]:
        """What config.json keeps beyond the model's own sections (unet, schedule, train, data)."""
        return {"autoencoder": str(self.autoencoder) if self.autoencoder else None,
                "text_column": self.data.text_column, "skip_bad": self.data.skip_bad}


@dataclass
class Run:
    """A prepared run: the model and the tensors its training task draws from."""

    recipe: DiffusionRecipe
    model: DiffusionModel
    table: ImageTable
    weights: torch.Tensor  # per-row sampling weights
    text: torch.Tensor | None  # (N, TEXT_DIM) sentence embeddings, or None
    latent_stats: bool  # whether the task sets the latent statistics from the data (False when continuing)
    meta: dict[str, Any]  # config.json entries beside the model's own
    text_lead: torch.Tensor | None = None  # (N, TEXT_DIM) embeddings of each text's first phrase (--text-lead)


def load_autoencoder(folder: Path) -> AutoencoderModel:
    """The autoencoder of an autoencoder checkpoint, or the one a latent generator carries."""
    config = read_config(folder)
    if config.get("kind") == AutoencoderModel.kind:
        return AutoencoderModel.from_checkpoint(folder)
    if config.get("kind") == DiffusionModel.kind and config.get("autoencoder"):
        _, tensors = load_checkpoint(folder)
        ae = AutoencoderModel(AutoencoderConfig(**config["autoencoder"]))
        state = module_state(tensors, "ema.autoencoder") or module_state(tensors, "model.autoencoder")
        ae.net.load_state_dict({k: v.float() for k, v in state.items()})
        return ae
    raise CheckpointError(f"--autoencoder {folder}: neither an autoencoder nor a latent generator "
                          f"(kind={config.get('kind')!r})")


@torch.no_grad()
def encode_latents(ae: AutoencoderModel, images: torch.Tensor, bf16: bool = True, batch: int = 256) -> torch.Tensor:
    """Images in [-1, 1] -> the autoencoder's raw latents (before a generator's shift and scale)."""
    out = []
    for chunk in images.split(batch):
        with autocast(bf16, chunk.device):
            out.append(ae.net.encode(chunk).float())
    return torch.cat(out)


def row_texts(table: ImageTable, attributes: list[str], column: str) -> list[str]:
    """The text of every row: the `column` cell where the CSV has that column, else its attribute values."""
    if column in table.extra.columns:
        return ["" if pd.isna(v) else str(v) for v in table.extra[column].tolist()]  # an empty cell: no text
    return [template({a: table.vocab[a][i] for a, i in zip(attributes, row.tolist())}) for row in table.labels]


def balance_weights(labels: torch.Tensor, attributes: list[str], train: TrainConfig) -> torch.Tensor:
    """Per-row sampling weights of (N, A) labels: class-balanced by `train.balance_attribute` (default: the first
    attribute) with `train.balance_power`."""
    balance = train.balance_attribute or attributes[0]
    if balance not in attributes:
        raise ValueError(f"--balance-attribute {balance!r} is not one of --attributes ({', '.join(attributes)})")
    return class_balanced_weights(labels, attributes.index(balance), train.balance_power)


def init_weights(model: DiffusionModel, folder: Path) -> list[str]:
    """Load a checkpoint's (EMA) weights into `model`; returns the parts it lacked (new, e.g. text)."""
    _, tensors = load_checkpoint(folder)
    state = module_state(tensors, "ema") or module_state(tensors, "model")
    own = model.state_dict()
    missing = sorted(k for k in own if k not in state)
    unexpected = sorted(k for k in state if k not in own)
    wrong = [k for k in state if k in own and state[k].shape != own[k].shape]

    def new(key: str) -> bool:  # parts that start at zero, so a trained generator may gain them
        return key.startswith(("embedder.text_proj.", "embedder.null_text", "unet.token_")) or ".cross." in key

    if unexpected or wrong or any(not new(k) for k in missing):
        bad = ", ".join((unexpected + wrong + [k for k in missing if not new(k)])[:6])
        raise ValueError(f"--init {folder}: its weights do not fit this model ({bad})")
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    return sorted({"cross-attention" if ".cross." in k or k.startswith("unet.token_") else k.split(".")[1]
                   for k in missing})


def init_record(folder: Path, config: dict) -> dict:
    """What a warm start began from (kept in the new checkpoint's config): the checkpoint, its steps and the
    training time behind it, earlier warm starts included."""
    progress = config.get("progress", {})
    earlier = config.get("init") or {}
    return {"checkpoint": str(folder), "steps": progress.get("step"), "images_seen": progress.get("images_seen"),
            "wall_time_s": progress.get("wall_time_s"),
            "total_wall_time_s": round((progress.get("wall_time_s") or 0) + (earlier.get("total_wall_time_s") or 0), 1)}


def prepare(recipe: DiffusionRecipe, resume: Path | None = None, progress: bool = True,
            say: Callable[[str], None] = print, table: ImageTable | None = None) -> Run:
    """Build the run: load the data, build the model (restored from `resume`'s config.json, started from
    `recipe.init`, or new), embed the text and weigh the rows. `table` skips loading (already loaded)."""
    data = recipe.data
    prev = read_config(resume) if resume is not None else None
    start = read_config(recipe.init) if recipe.init and not prev else None
    base = prev or start
    if table is None:
        table = data.load(vocab=base["vocab"] if base else None, progress=progress)
    torch.manual_seed(recipe.train.seed)
    texts = row_texts(table, data.attributes, data.text_column) if data.text_column else None
    text_dim = TEXT_DIM if texts is not None else 0
    if prev:
        model = DiffusionModel.from_config(prev, str(resume))
    elif start:
        # a warm start may gain text and condition tokens (both start at zero); the rest is the checkpoint's
        grown = {**start, "text_dim": text_dim or start.get("text_dim", 0)}
        if isinstance(start.get("unet"), dict):
            grown["unet"] = {**start["unet"],
                             "cond_tokens": max(recipe.unet.cond_tokens, start["unet"].get("cond_tokens", 0))}
        model = DiffusionModel.from_config(grown, str(recipe.init))
        missing = init_weights(model, recipe.init)  # type: ignore[arg-type]
        say(f"started from {recipe.init}" + (f" (new: {', '.join(missing)})" if missing else ""))
    else:
        ae = load_autoencoder(recipe.autoencoder) if recipe.autoencoder else None
        channels = ae.net.config.latent_channels if ae is not None else 3
        unet = dataclasses.replace(recipe.unet, in_channels=channels)
        model = DiffusionModel(unet, recipe.schedule, table.vocab, cond_dim=recipe.cond_dim,
                               autoencoder=ae.net.config if ae else None, text_dim=text_dim)
        if ae is not None and model.autoencoder is not None:
            model.autoencoder.load_state_dict(ae.net.state_dict())
    text = lead = None
    if texts is not None and model.takes_text:
        text = cached_encode(texts, table.root / CACHE_DIR, progress=progress)
        if recipe.train.text_lead > 0:
            leads = [lead_phrase(t) for t in texts]
            lead = text if leads == list(texts) else cached_encode(leads, table.root / CACHE_DIR, progress=progress)
    weights = balance_weights(table.labels, list(data.attributes), recipe.train)
    meta: dict[str, Any] = {
        "data": data.provenance(table), "attributes": list(data.attributes), "recipe": recipe.record(),
        "combinations": sorted({tuple(row) for row in table.labels.tolist()}),  # value indices the data holds
        "text": {"column": data.text_column if data.text_column in table.extra.columns else None,
                 "encoder": ENCODER} if model.takes_text else None}
    if start:
        meta["init"] = init_record(recipe.init, start)  # type: ignore[arg-type]
    elif prev and prev.get("init"):
        meta["init"] = prev["init"]
    return Run(recipe, model, table, weights, text, latent_stats=start is None and not (prev or {}).get("init"),
               meta=meta, text_lead=lead)


def recipe_flags(config: dict[str, Any], folder: Path) -> tuple[str, dict[str, Any]]:
    """A checkpoint's config.json -> (the `lwgen train` sub-command, its flag values) that train the same run.

    The budget and every setting come from the checkpoint; `init` (a warm start) is not part of the recipe.
    A latent generator without a recorded autoencoder path takes the autoencoder it carries (`folder`).
    """
    kind = config.get("kind")
    commands = {"diffusion": "diffusion", "autoencoder": "autoencoder", "upscaler": "upscaler"}
    if kind not in commands:
        raise ValueError(f"--config {folder / 'config.json'}: a {kind!r} checkpoint has no `lwgen train` recipe")
    data = config.get("data") or {}
    flags: dict[str, Any] = {dest: data[key] for key, dest in DATA_FLAGS.items() if data.get(key) is not None}
    if data.get("split", "train") is None:
        flags["split"] = ""
    train = {f.name for f in dataclasses.fields(TrainConfig)}
    flags.update({k: v for k, v in (config.get("train") or {}).items() if k in train})
    recipe = config.get("recipe") or {}
    if recipe.get("skip_bad"):
        flags["skip_bad"] = True
    if kind == "diffusion":
        flags["attributes"] = config.get("attributes") or list(config.get("vocab") or {})
        skip = ("cond_dim", "in_channels")
        flags.update({"unet_" + k: v for k, v in (config.get("unet") or {}).items() if k not in skip})
        schedule = dict(config.get("schedule") or {})
        flags["schedule"] = schedule.pop("name", "cosine")
        flags["prediction"] = schedule.pop("prediction", "v")
        flags.update({"schedule_" + k: v for k, v in schedule.items()})
        text = config.get("text")
        flags["text_column"] = recipe.get("text_column", (text or {}).get("column") or "text") if text else ""
        if config.get("autoencoder"):
            flags["autoencoder"] = recipe.get("autoencoder") or str(folder)
    elif kind == "autoencoder":
        flags.update({"ae_" + k: v for k, v in (config.get("autoencoder") or {}).items()})
        if config.get("size"):
            flags["size"] = config["size"]
    else:
        flags.update({"up_" + k: v for k, v in (config.get("upscaler") or {}).items()})
        if config.get("crop"):
            flags["crop"] = config["crop"]
    return commands[kind], flags


ARCHITECTURES: dict[str, type] = {"diffusion": UNetConfig, "autoencoder": AutoencoderConfig,
                                  "upscaler": UpscalerConfig}
