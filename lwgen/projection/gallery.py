"""A gallery: generated images per class, saved beside a checkpoint so projections need no sampling at start-up."""
from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image

from ..checkpoint import (
    WEIGHTS,
    CheckpointError,
    read_tensors,
    write_json,
    write_tensors,
)
from ..data.images import to_uint8
from ..models import NULL
from ..pipeline import DEFAULT_GUIDANCE
from .combinations import default_classes

GALLERY, GALLERY_META = "gallery.safetensors", "gallery.json"
Progress = Callable[[float, str], None]
_HASHES: dict[tuple[str, int, int], str] = {}


@dataclass
class Gallery:
    """Generated images (N, 3, R, R) uint8 with their labels (N, A) (-1 = any) and seeds (N,)."""

    images: torch.Tensor
    labels: torch.Tensor
    seeds: torch.Tensor
    vocab: dict[str, list[str]]
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def attributes(self) -> list[str]:
        return list(self.vocab)

    def frame(self) -> pd.DataFrame:
        """One row per image: attribute value names ("any" for -1) and the seed."""
        cols = {a: [self.vocab[a][i] if i >= 0 else "any" for i in self.labels[:, k].tolist()]
                for k, a in enumerate(self.attributes)}
        return pd.DataFrame({**cols, "seed": self.seeds.tolist()})


def weights_hash(folder: str | Path) -> str:
    """SHA-256 (first 16 hex digits) of a checkpoint's model.safetensors, memoised by size and mtime."""
    path = Path(folder) / WEIGHTS
    try:
        st = path.stat()
    except OSError:
        raise CheckpointError(f"{folder}: no {WEIGHTS}") from None
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _HASHES[key] = h.hexdigest()[:16]
    return _HASHES[key]


def build_gallery(model: Any, per_class: int = 4, steps: int = 20, seed: int = 0, progress: Progress | None = None,
                  classes: torch.Tensor | None = None, sampler: str = "dpmpp", guidance: float = DEFAULT_GUIDANCE,
                  batch: int = 32, source: str | Path | None = None) -> Gallery:
    """Generate per_class images for every class (labels (K, A); default: the model's known combinations).

    Image i uses seed + i, so `lwgen sample --seed <seed> -n 1` with its condition reproduces it. `source`, the
    checkpoint folder, records the weights hash that the gallery belongs to.
    """
    if per_class < 1:
        raise ValueError("per_class must be at least 1")
    if classes is None:
        classes = default_classes(model.vocab, getattr(model, "checkpoint_config", None))
    labels = classes.long().repeat_interleave(per_class, dim=0)  # (K * per_class, A)
    n = labels.shape[0]
    seeds = torch.arange(seed, seed + n, dtype=torch.long)
    t0 = time.perf_counter()
    images = model.generate(model.condition(labels), seeds.tolist(), steps=steps, sampler=sampler, guidance=guidance,
                            batch=batch, progress=None if progress is None else
                            lambda done: progress(done, f"{int(done * n)} / {n} images"))
    meta = {"per_class": per_class, "steps": steps, "seed": seed, "sampler": sampler, "guidance": guidance,
            "seconds": round(time.perf_counter() - t0, 1)}
    if source is not None:
        meta["weights"] = weights_hash(source)
    return Gallery(to_uint8(images), labels, seeds, {a: list(v) for a, v in model.vocab.items()}, meta)


def _to_png(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, R, R) uint8 -> the bytes of one lossless PNG column of tiles, as a uint8 tensor (~3x smaller)."""
    n, _, r, _ = images.shape
    column = images.permute(0, 2, 3, 1).reshape(n * r, r, 3).numpy()
    buf = io.BytesIO()
    Image.fromarray(column).save(buf, format="PNG", optimize=True)
    return torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8)


def _from_png(data: torch.Tensor, n: int, source: Path) -> torch.Tensor:
    try:
        column = np.array(Image.open(io.BytesIO(data.numpy().tobytes())).convert("RGB"))
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{source}: gallery images are not a readable PNG ({e})") from None
    r = column.shape[1]
    if column.shape[0] != n * r:
        raise CheckpointError(f"{source}: gallery PNG holds {column.shape[0] // r} images, expected {n}")
    return torch.from_numpy(column).reshape(n, r, r, 3).permute(0, 3, 1, 2).contiguous()


def save_gallery(folder: str | Path, gallery: Gallery) -> None:
    """Write gallery.safetensors (images as one PNG, labels, seeds) then gallery.json, each atomically."""
    folder = Path(folder)
    tensors = {"images_png": _to_png(gallery.images), "labels": gallery.labels, "seeds": gallery.seeds}
    write_tensors(folder / GALLERY, tensors, {"format": "lwgen-gallery-1"})
    write_json(folder / GALLERY_META, {"count": len(gallery), "vocab": gallery.vocab, "meta": gallery.meta})


def load_gallery(folder: str | Path) -> Gallery | None:
    """Read the gallery saved in folder; None when there is none, CheckpointError when it is broken."""
    folder = Path(folder)
    meta_path, path = folder / GALLERY_META, folder / GALLERY
    if not meta_path.is_file() or not path.is_file():
        return None
    try:
        info = json.loads(meta_path.read_text())
        vocab = {str(a): [str(v) for v in vals] for a, vals in info["vocab"].items()}
    except (json.JSONDecodeError, KeyError, AttributeError, TypeError) as e:
        raise CheckpointError(f"{meta_path}: not a gallery description ({e})") from None
    tensors, _ = read_tensors(path)
    try:
        labels, seeds = tensors["labels"].long(), tensors["seeds"].long()
        n = seeds.shape[0]
        images = tensors["images"] if "images" in tensors else _from_png(tensors["images_png"], n, path)
    except KeyError as e:
        raise CheckpointError(f"{path}: lacks tensor {e}") from None
    sizes = torch.tensor([len(v) for v in vocab.values()], dtype=torch.long)
    ok = (images.dtype == torch.uint8 and images.dim() == 4 and images.shape[1] == 3 and seeds.shape == (n,)
          and labels.shape == (n, len(vocab)) and bool(((labels >= NULL) & (labels < sizes)).all()))
    if not ok or info.get("count", n) != n:
        raise CheckpointError(f"{path}: images, labels and seeds do not match {meta_path.name}")
    return Gallery(images, labels, seeds, vocab, dict(info.get("meta") or {}))
