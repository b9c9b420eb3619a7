"""A TensorBoard projector folder from a gallery: sprite.png, metadata.tsv, tensors.tsv, projector_config.pbtxt."""
from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..io import atomic_write_bytes, atomic_write_text
from .gallery import Gallery

SPRITE_LIMIT = 8192  # TensorBoard's projector reads sprites of at most 8192 x 8192 pixels
SPRITE, METADATA, TENSORS, CONFIG = "sprite.png", "metadata.tsv", "tensors.tsv", "projector_config.pbtxt"


@dataclass
class ProjectorExport:
    """What was written: the folder, the number of points, the sprite grid and the feature size."""

    folder: Path
    count: int
    per_row: int
    thumb: int
    dims: int

    @property
    def sprite_side(self) -> int:
        return self.per_row * self.thumb


def sprite_layout(count: int, image_side: int, thumb: int = 0, limit: int = SPRITE_LIMIT) -> tuple[int, int]:
    """(thumbnails per row and column, thumbnail side) of a square sprite of `count` images within `limit` px.

    The thumbnail keeps the images' own side (or `thumb`) unless the grid would not fit; then it shrinks.
    """
    if count < 1:
        raise ValueError("a projector needs at least one image")
    per_row = math.ceil(math.sqrt(count))
    side = min(thumb or image_side, limit // per_row)
    if side < 1:
        raise ValueError(f"{count} images do not fit a {limit} px sprite")
    return per_row, side


def sprite(images: torch.Tensor, per_row: int, thumb: int) -> np.ndarray:
    """uint8 images (N, 3, R, R) -> one (per_row * thumb)-square RGB sprite, row by row, blank cells white."""
    x = images.float()
    if x.shape[-1] != thumb:
        x = F.interpolate(x, size=(thumb, thumb), mode="area" if x.shape[-1] > thumb else "bilinear")
    x = x.round().clamp(0, 255).to(torch.uint8)
    grid = torch.full((3, per_row * thumb, per_row * thumb), 255, dtype=torch.uint8)
    for i, im in enumerate(x):
        r, c = divmod(i, per_row)
        grid[:, r * thumb:(r + 1) * thumb, c * thumb:(c + 1) * thumb] = im
    return grid.permute(1, 2, 0).numpy()


def _cell(value: object) -> str:
    return " ".join(str(value).split()) or "-"  # no tabs or line breaks inside a TSV cell; never empty


def metadata_rows(gallery: Gallery) -> list[list[str]]:
    """Header + one row per image: each attribute's value ("any" when unset), the condition, the seed."""
    frame = gallery.frame()
    header = [*gallery.attributes, "condition", "seed"]
    rows = [header]
    for _, row in frame.iterrows():
        condition = " · ".join(f"{a}={row[a]}" for a in gallery.attributes if row[a] != "any") or "no condition"
        rows.append([_cell(row[a]) for a in gallery.attributes] + [_cell(condition), str(int(row["seed"]))])
    return rows


def projector_config(tensor_name: str, thumb: int) -> str:
    """The projector_config.pbtxt text: one embedding whose files sit beside it."""
    name = tensor_name.replace("\\", "\\\\").replace('"', '\\"')
    return (f'embeddings {{\n  tensor_name: "{name}"\n  tensor_path: "{TENSORS}"\n  metadata_path: "{METADATA}"\n'
            f'  sprite {{\n    image_path: "{SPRITE}"\n    single_image_dim: {thumb}\n    single_image_dim: {thumb}\n'
            f'  }}\n}}\n')


def write_projector(gallery: Gallery, features: np.ndarray, out: str | Path, tensor_name: str,
                    thumb: int = 0) -> ProjectorExport:
    """Write the four projector files for a gallery and its feature vectors (N, F) into `out`."""
    out = Path(out)
    n = len(gallery)
    if features.ndim != 2 or features.shape[0] != n:
        raise ValueError(f"expected features of shape ({n}, F), got {tuple(features.shape)}")
    per_row, side = sprite_layout(n, int(gallery.images.shape[-1]), thumb)
    out.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    Image.fromarray(sprite(gallery.images, per_row, side)).save(buf, format="PNG", optimize=True)
    atomic_write_bytes(out / SPRITE, buf.getvalue())
    atomic_write_text(out / METADATA, "".join("\t".join(r) + "\n" for r in metadata_rows(gallery)))
    lines = ["\t".join(f"{v:.6g}" for v in row) for row in np.asarray(features, dtype=np.float64)]
    atomic_write_text(out / TENSORS, "\n".join(lines) + "\n")
    atomic_write_text(out / CONFIG, projector_config(tensor_name, side))
    return ProjectorExport(out, n, per_row, side, int(features.shape[1]))
