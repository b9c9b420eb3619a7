"""Synthetic coloured-shapes data set for tests and quick smoke training."""
from __future__ import annotations

import io
import os
import random
from pathlib import Path

import pandas as pd
from PIL import Image, ImageDraw

from ..io import atomic_write_bytes, atomic_write_text

SHAPES = ("circle", "square", "triangle", "cross")
COLORS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 195, 20),
}
SIZES = {"small": 0.18, "large": 0.36}
SUPERSAMPLE = 4


def _draw(shape: str, color: tuple[int, int, int], radius: float, cx: float, cy: float, side: int) -> Image.Image:
    """Draw one shape on a white side x side canvas."""
    img = Image.new("RGB", (side, side), (255, 255, 255))
    d = ImageDraw.Draw(img)
    r = radius
    if shape == "circle":
        d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=color)
    elif shape == "square":
        q = r * 0.85
        d.rectangle((cx - q, cy - q, cx + q, cy + q), fill=color)
    elif shape == "triangle":
        d.polygon([(cx, cy - r), (cx + r * 0.95, cy + r * 0.75), (cx - r * 0.95, cy + r * 0.75)], fill=color)
    else:
        t = r * 0.33
        d.rectangle((cx - r, cy - t, cx + r, cy + t), fill=color)
        d.rectangle((cx - t, cy - r, cx + t, cy + r), fill=color)
    return img


def make_shapes(out: str | os.PathLike, n: int = 512, size: int = 64, seed: int = 0) -> Path:
    """Write n shape PNGs and annotations.csv (file, shape, color, size, split) to out; deterministic per seed."""
    if n < 1 or size < 8:
        raise ValueError(f"need n >= 1 and size >= 8, got n={n}, size={size}")
    out = Path(out)
    rng = random.Random(seed)
    big = size * SUPERSAMPLE
    rows = []
    for i in range(n):
        shape, color, scale = rng.choice(SHAPES), rng.choice(list(COLORS)), rng.choice(list(SIZES))
        radius = SIZES[scale] * big * rng.uniform(0.9, 1.1)
        margin = radius + 0.04 * big
        cx, cy = rng.uniform(margin, big - margin), rng.uniform(margin, big - margin)
        img = _draw(shape, COLORS[color], radius, cx, cy, big).resize((size, size), Image.Resampling.BOX)
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        file = f"images/shape_{i:05d}.png"
        atomic_write_bytes(out / file, buf.getvalue())
        rows.append({"file": file, "shape": shape, "color": color, "size": scale,
                     "split": "val" if i % 10 == 9 else "train"})
    table = pd.DataFrame(rows, columns=["file", "shape", "color", "size", "split"])
    atomic_write_text(out / "annotations.csv", table.to_csv(index=False))
    return out
