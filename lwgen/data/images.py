"""The single image loading path: decode any image file to a square RGB image of a given size."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

FITS = ("pad", "crop")
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_WHITE = (255, 255, 255)


class DataError(ValueError):
    """Bad input data: the message names the file, row or column at fault."""


class BadImage(Exception):
    """Internal: an image file could not be decoded; the message is the reason."""


def _high_bit_to_8bit(img: Image.Image) -> Image.Image:
    """Scale a 16-bit / 32-bit integer or float single-channel image to 8-bit grey."""
    a = np.asarray(img)
    if img.mode.startswith("I;16"):
        scaled = a.astype(np.float64) / 257.0
    elif img.mode == "F" and a.size and np.nanmax(a) <= 1.0:
        scaled = a.astype(np.float64) * 255.0
    else:
        peak = float(np.nanmax(a)) if a.size else 0.0
        if peak <= 255.0:
            scaled = a.astype(np.float64)
        elif peak <= 65535.0:
            scaled = a.astype(np.float64) / 257.0
        else:
            scaled = a.astype(np.float64) * (255.0 / peak)
    scaled = np.nan_to_num(scaled, nan=0.0)
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L")


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB; transparency is composited on white."""
    if img.mode == "RGB" and "transparency" not in img.info:
        return img
    if img.mode.startswith("I") or img.mode == "F":
        return _high_bit_to_8bit(img).convert("RGB")
    if img.mode in _ALPHA_MODES or "transparency" in img.info:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _WHITE + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    try:
        return img.convert("RGB")
    except ValueError as e:
        raise BadImage(f"unsupported image mode {img.mode!r} ({e})") from None


def _square(img: Image.Image, fit: str) -> Image.Image:
    """Make an image square by white padding ('pad') or centre cropping ('crop')."""
    w, h = img.size
    if w == h:
        return img
    if fit == "pad":
        side = max(w, h)
        canvas = Image.new("RGB", (side, side), _WHITE)
        canvas.paste(img, ((side - w) // 2, (side - h) // 2))
        return canvas
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    return img.crop((left, top, left + side, top + side))


def decode_image(path: str | os.PathLike, size: int, fit: str = "pad") -> Image.Image:
    """Decode path to a size x size RGB image; raises BadImage(reason) on a bad file."""
    if fit not in FITS:
        raise ValueError(f"fit must be one of {FITS}, got {fit!r}")
    if size < 1:
        raise ValueError(f"size must be a positive integer, got {size}")
    path = Path(path)
    if not path.is_file():
        raise BadImage("file not found" if not path.exists() else "not a regular file")
    try:
        with Image.open(path) as img:
            img.load()
            if img.getexif().get(0x0112, 1) != 1:
                img = ImageOps.exif_transpose(img)
            rgb = _to_rgb(img)
            rgb.load()
    except BadImage:
        raise
    except UnidentifiedImageError:
        raise BadImage("not an image (unrecognised file format)") from None
    except Image.DecompressionBombError as e:
        raise BadImage(f"image too large ({e})") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as e:
        raise BadImage(f"corrupt or truncated image ({type(e).__name__}: {e})") from None
    rgb = _square(rgb, fit)
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.Resampling.LANCZOS)
    return rgb


def load_image(path: str | os.PathLike, size: int, fit: str = "pad") -> Image.Image:
    """Load any image file as a size x size RGB image (pad with white or centre-crop to square)."""
    try:
        return decode_image(path, size, fit)
    except BadImage as e:
        raise DataError(f"{path}: {e}") from None


def to_tensor(img: Image.Image) -> torch.Tensor:
    """Convert a PIL image to a uint8 tensor of shape (3, H, W)."""
    if img.mode != "RGB":
        img = _to_rgb(img)
    a = np.array(img, dtype=np.uint8, copy=True)
    return torch.from_numpy(a).permute(2, 0, 1).contiguous()


def _box_mean(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Box-average a floating point (N,C,H,W) batch by factor."""
    if x.dtype in (torch.float16, torch.bfloat16) and x.device.type == "cpu":
        return F.avg_pool2d(x.float(), factor).to(x.dtype)
    return F.avg_pool2d(x, factor)


def _box_round_uint8(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Box-average a uint8 (N,C,H,W) batch by factor with round-half-up, exactly."""
    n = factor * factor
    dtype = torch.float32 if factor < 256 else torch.float64  # block sums stay exact integers
    total = F.avg_pool2d(x.to(dtype), factor, divisor_override=1)
    return torch.floor((total + n // 2) / n).to(torch.uint8)


def downsample(x: torch.Tensor, factor: int, chunk: int = 256) -> torch.Tensor:
    """Area (box) average downsampling of (N,C,H,W) or (C,H,W); uint8 in gives rounded uint8 out."""
    if not isinstance(factor, int) or factor < 1:
        raise ValueError(f"factor must be a positive integer, got {factor!r}")
    if x.dim() not in (3, 4):
        raise ValueError(f"expected a (C,H,W) or (N,C,H,W) tensor, got shape {tuple(x.shape)}")
    h, w = x.shape[-2:]
    if h % factor or w % factor:
        raise ValueError(f"image size {h}x{w} is not divisible by factor {factor}")
    if x.dtype == torch.uint8:
        op = _box_round_uint8
    elif x.is_floating_point():
        op = _box_mean
    else:
        raise TypeError(f"downsample supports uint8 and floating point tensors, got {x.dtype}")
    if factor == 1:
        return x.clone()
    batch = x.unsqueeze(0) if x.dim() == 3 else x
    parts = [op(part, factor) for part in batch.split(chunk)] if len(batch) else [op(batch, factor)]
    out = torch.cat(parts) if len(parts) > 1 else parts[0]
    return out[0] if x.dim() == 3 else out


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float32 in [-1, 1], what every network takes (to_uint8 is the inverse)."""
    return images.float() / 127.5 - 1.0


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] -> uint8, rounded as torchvision's save_image does (x * 255 + 0.5, clamped)."""
    return ((images.float() + 1) / 2).mul(255).add(0.5).clamp(0, 255).to(torch.uint8)


def image_grid(images: torch.Tensor, nrow: int, padding: int = 2, pad_value: int = 255) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> one uint8 (3, H', W') grid, `nrow` images a row, laid out as torchvision's make_grid."""
    n, c, h, w = images.shape
    cols = min(nrow, n)
    rows = -(-n // cols)
    out = torch.full((c, rows * (h + padding) + padding, cols * (w + padding) + padding), pad_value,
                     dtype=images.dtype)
    for i, image in enumerate(images):
        y, x = (i // cols) * (h + padding) + padding, (i % cols) * (w + padding) + padding
        out[:, y:y + h, x:x + w] = image
    return out
