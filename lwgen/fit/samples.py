"""One sample grid per value of the first attribute, through the model's own `generate`."""
from __future__ import annotations

import re
from pathlib import Path

from PIL import Image

from ..data.images import image_grid, to_uint8
from ..io import atomic_write
from ..pipeline import DiffusionModel


def file_name(attribute: str, value: str) -> str:
    """A safe PNG name for one attribute value ("group", "Smileys & Emotion" -> "group=Smileys_Emotion.png")."""
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", f"{attribute}={value}").strip("_") + ".png"


def class_grids(checkpoint: Path, out: Path, n: int = 8, steps: int = 20, seed: int = 0) -> dict[str, str]:
    """Write n images of each value of the checkpoint's first attribute (others left free) to out; value -> path."""
    model = DiffusionModel.from_checkpoint(checkpoint)
    attribute = model.attributes[0]
    written = {}
    for value in model.vocab[attribute]:
        cond = model.condition(model.encode({attribute: value}).expand(n, -1))
        images = model.generate(cond, seeds=[seed + i for i in range(n)], steps=steps)
        grid = image_grid(to_uint8(images), min(n, 8)).permute(1, 2, 0).numpy()  # (H, W, 3)
        path = out / file_name(attribute, value)
        atomic_write(path, lambda tmp, grid=grid: Image.fromarray(grid).save(tmp, format="PNG"))
        written[value] = str(path)
    return written
