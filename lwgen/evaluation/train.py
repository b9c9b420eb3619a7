"""Train the domain classifier with the shared Trainer (AdamW, warm-up + cosine LR) and score it on val."""
from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data import DataError, ImageTable, class_balanced_weights
from ..data.annotations import read_csv, resolve_csv
from ..models import count_parameters
from ..precision import autocast
from ..shipped import inside_shipped, shipped_root
from ..training import TrainConfig, Trainer
from .augment import AugmentConfig, augment
from .classifier import Classifier, ClassifierConfig, derive_hierarchy, resize_to
from .metrics import topk_accuracy

DEFAULT_ATTRIBUTES = ("group", "subgroup", "style", "skin_tone")
RECORDED = ("batch", "lr", "weight_decay", "warmup", "min_lr_ratio", "steps", "minutes", "grad_clip", "bf16", "seed",
            "threads")  # the TrainConfig fields that apply to the classifier


def default_attributes(data: str | Path, csv: str = "annotations.csv") -> list[str]:
    """The emoji columns when the CSV has them all; else an error listing the CSV's columns to choose from."""
    path = resolve_csv(Path(data), csv)
    columns = [str(c) for c in read_csv(path).columns]
    if all(a in columns for a in DEFAULT_ATTRIBUTES):
        return list(DEFAULT_ATTRIBUTES)
    choices = [c for c in columns if c not in ("file", "split")]
    raise DataError(f"annotation CSV {path}: give --attributes, the columns the classifier predicts (the columns "
                    f"the generator was trained on), e.g. --attributes {' '.join(choices[:4]) or 'COLUMN'}; "
                    f"its columns are {', '.join(columns)}")


def check_out(out: str | Path, force: bool = False) -> None:
    """Refuse, without force, an `out` inside the shipped checkpoints folder or one that is not empty."""
    out = Path(out)
    if force:
        return
    if inside_shipped(out):
        raise ValueError(f"--out {out} is inside the shipped checkpoints folder {shipped_root()}: write the classifier "
                         f"elsewhere (e.g. runs/NAME/classifier, beside the generator it scores), or pass --force to "
                         f"replace a shipped one")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"--out {out} is not empty: pass --force to replace it, or choose another folder")


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float in [-1, 1]."""
    return images.float() / 127.5 - 1.0


class ClassifierTask:
    """Label-smoothed cross-entropy summed over the attribute heads, on augmented images (bf16 autocast).

    `mixup` > 0 blends each batch with a shuffled copy of itself, lambda ~ Beta(mixup, mixup), and the loss with
    it (Zhang et al. 2018). `text` (N, D) sentence embeddings of the images' texts add a cosine loss on the model's
    text head, weighted by `text_weight`: the features must also place an image near the words that describe it
    (rows without text, zero vectors, do not count)."""

    def __init__(self, model: Classifier, images: torch.Tensor, labels: torch.Tensor, config: TrainConfig,
                 augment_config: AugmentConfig | None = None, label_smoothing: float = 0.1, mixup: float = 0.0,
                 text: torch.Tensor | None = None, text_weight: float = 1.0):
        if images.shape[-1] != model.config.image_size:
            raise ValueError(f"images are {images.shape[-1]} px but the classifier takes {model.config.image_size} px")
        if mixup < 0:
            raise ValueError(f"mixup must be >= 0, got {mixup}")
        self.model, self.images, self.labels, self.config = model, images, labels, config
        self.augment_config = augment_config or AugmentConfig()
        self.label_smoothing = label_smoothing
        self.mixup = mixup
        if text is not None and (model.text_head is None or text.shape != (len(images), model.text_head.out_features)):
            raise ValueError("text embeddings need a classifier with a text head of their width, one row per image")
        self.text, self.text_weight = text, text_weight

    def _losses(self, text_pred: torch.Tensor | None, logits: dict[str, torch.Tensor], y: torch.Tensor,
                idx: torch.Tensor) -> torch.Tensor:
        loss = torch.stack([F.cross_entropy(logits[a].float(), y[:, i], ignore_index=-1,
                                            label_smoothing=self.label_smoothing)
                            for i, a in enumerate(self.model.attributes)]).sum()
        if text_pred is not None and self.text is not None:
            target = self.text[idx]
            given = target.abs().sum(1) > 0
            if given.any():
                cos = F.cosine_similarity(text_pred[given], target[given], dim=1)
                loss = loss + self.text_weight * (1 - cos).mean()
        return loss

    def _text_pred(self, features: torch.Tensor) -> torch.Tensor | None:
        """The text head's prediction for a batch (once, shared by both mixup terms); None without text."""
        if self.text is None or self.model.text_head is None:
            return None
        return self.model.text_head(self.model.dropout(features)).float()

    def loss(self, idx: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        x = augment(to_float(self.images[idx]), g, self.augment_config)
        y = self.labels[idx]
        if not self.mixup:
            with autocast(self.config.bf16):
                features, logits = self.model(x)
                return self._losses(self._text_pred(features), logits, y, idx)
        # lambda from the global torch RNG (seeded by train_classifier), the pairing from g
        lam = float(torch.distributions.Beta(self.mixup, self.mixup).sample())
        perm = torch.randperm(len(idx), generator=g)
        with autocast(self.config.bf16):
            features, logits = self.model(lam * x + (1 - lam) * x[perm])
            text_pred = self._text_pred(features)
            return (lam * self._losses(text_pred, logits, y, idx)
                    + (1 - lam) * self._losses(text_pred, logits, y[perm], idx[perm]))

@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, images: torch.Tensor, batch: int = 128, limit: int = 2048,
                          seed: int = 0) -> None:
    """Re-estimate BatchNorm running statistics with a cumulative average over clean images (Izmailov et al. 2018)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    was_training = model.training
    model.train()
    pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:limit]
    for chunk in images[pick].split(batch):
        model(to_float(chunk))
    for m, mom in zip(norms, momenta):
        m.momentum = mom
    model.train(was_training)


def accuracy(model: Classifier, images: torch.Tensor, labels: torch.Tensor, side: int | None = None,
             batch: int = 128) -> dict[str, float]:
    """Top-1 (and top-5 when an attribute has more than 5 values) per attribute; `side` first resamples to it."""
    x = images
    if side is not None and side != images.shape[-1]:
        x = torch.cat([resize_to(to_float(c), side) for c in images.split(512)])
    _, logits = model.embed(x, batch)
    out: dict[str, float] = {}
    for i, a in enumerate(model.attributes):
        out[f"{a}_top1"] = round(topk_accuracy(logits[a], labels[:, i], 1), 4)
        if len(model.vocab[a]) > 5:
            out[f"{a}_top5"] = round(topk_accuracy(logits[a], labels[:, i], 5), 4)
    return out


def _split_tables(data: Path, attributes: Sequence[str], load_size: int, size: int, csv: str, progress: bool,
                  train_split: str, val_split: str) -> tuple[ImageTable, ImageTable]:
    """Load every row once (one image cache), area-downsample to the classifier side and split by the split column."""
    table = ImageTable.load(data, list(attributes), size=load_size, csv=csv, progress=progress)
    if "split" not in table.extra.columns:
        raise DataError(f"{data}: the annotation CSV needs a 'split' column ({train_split}/{val_split})")
    if load_size % size:
        raise DataError(f"--load-size {load_size} is not a multiple of the classifier side {size}")
    split = table.extra["split"].to_numpy()
    parts = []
    for name in (train_split, val_split):
        mask = torch.from_numpy(split == name)
        if not mask.any():
            raise DataError(f"{data}: no rows with split == {name!r}")
        part = table.subset(mask)
        part.images = resize_to(part.images, size) if load_size > size else part.images
        parts.append(part)
    return parts[0], parts[1]


def train_classifier(data: str | Path, out: str | Path, attributes: Sequence[str] = DEFAULT_ATTRIBUTES,
                     minutes: float = 5.0, steps: int = 0, batch: int = 64, lr: float = 2e-3,
                     weight_decay: float = 0.05, architecture: ClassifierConfig | None = None,
                     augment_config: AugmentConfig | None = None, load_size: int = 256, csv: str = "annotations.csv",
                     train_split: str = "train", val_split: str = "val", bf16: bool = True, seed: int = 0,
                     threads: int = 1, work: str | Path | None = None, progress: bool = True,
                     balance_power: float = 0.0, mixup: float = 0.0, text_column: str | None = None,
                     text_weight: float = 1.0, force: bool = False) -> dict[str, Any]:
    """Train on the train split, score top-1/top-5 on the val split, save an fp16 checkpoint; returns its config.

    `balance_power` > 0 draws images with weight (class count) ** -power of the first attribute, so rare classes
    are seen more often (0 = uniform); `mixup` is the Beta parameter of batch mixup (0 = none); `text_column`
    names a CSV column whose sentence embeddings a text head learns to predict (see ClassifierTask). Without
    `force`, a non-empty `out` or one inside the shipped checkpoints folder is refused before any work."""
    check_out(out, force)
    if threads > 0:
        torch.set_num_threads(threads)
    arch = architecture or ClassifierConfig()
    aug = augment_config or AugmentConfig()
    data, out = Path(data), Path(out)
    train, val = _split_tables(data, attributes, load_size, arch.image_size, csv, progress, train_split, val_split)
    text = None
    if text_column:
        if text_column not in train.extra.columns:
            raise DataError(f"{data}: the annotation CSV has no column {text_column!r} for --text-column")
        from ..data.cache import CACHE_DIR
        from ..text import TEXT_DIM, cached_encode

        text = cached_encode(train.extra[text_column].fillna("").astype(str).tolist(), data / CACHE_DIR,
                             progress=progress)
        arch = dataclasses.replace(arch, text_dim=TEXT_DIM)
    torch.manual_seed(seed)
    model = Classifier(arch, train.vocab)
    config = TrainConfig(batch=batch, lr=lr, weight_decay=weight_decay, warmup=max(1, steps // 10) if steps else 100,
                         steps=steps, minutes=minutes, bf16=bf16, seed=seed, threads=threads,
                         log_every=max(1, min(50, steps or 50)), save_minutes=1e9, sample_minutes=1e9)
    task = ClassifierTask(model, train.images, train.labels, config, aug, mixup=mixup, text=text,
                          text_weight=text_weight)
    if progress:
        print(f"classifier: {count_parameters(model) / 1e6:.2f} M parameters; {len(train)} train / {len(val)} val "
              f"images; heads: " + ", ".join(f"{a} ({len(v)})" for a, v in train.vocab.items()))
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lwgen-classifier-") as tmp:
        weights = (class_balanced_weights(train.labels, 0, balance_power) if balance_power > 0
                   else torch.ones(len(train)))
        trainer = Trainer(task, config, Path(work) if work else Path(tmp), weights, progress=progress)
        summary = trainer.run()
    final = trainer.model  # the raw weights: on short runs they score above the EMA (which lags the decayed LR)
    recalibrate_batchnorm(final, train.images, seed=seed)
    final.set_hierarchy(derive_hierarchy(train.labels, train.vocab))  # scores a group with its subgroup head too
    final.eval()
    val_acc = accuracy(final, val.images, val.labels)
    val_half = accuracy(final, val.images, val.labels, side=arch.image_size // 2)
    extra = {
        "attributes": list(attributes),
        "parameters": count_parameters(final),
        "accuracy": {val_split: val_acc, f"{val_split}_{arch.image_size // 2}px": val_half},
        "data": {"folder": str(data), "csv": csv, "load_size": load_size, "train_split": train_split,
                 "val_split": val_split, "train_images": len(train), "val_images": len(val)},
        "train": {**{k: summary["train"][k] for k in RECORDED}, "augment": dataclasses.asdict(aug),
                  "label_smoothing": task.label_smoothing, "mixup": mixup,
                  "text_column": text_column or None, "text_weight": text_weight if text_column else None,
                  "balance_power": balance_power,
                  "weights": "raw (not EMA); BatchNorm statistics re-estimated on clean train images"},
        "progress": {k: summary["progress"][k] for k in ("step", "images_seen", "wall_time_s")},
        "total_time_s": round(time.perf_counter() - t0, 1),
    }
    final.save(out, extra)
    final.checkpoint_config = {**final.config_dict(), **extra}
    return final.checkpoint_config
