"""The one table of bounds on user-given numbers, shared by the CLI, the app and the validation of config.json.

A value outside its bounds, or a float that is not finite (nan, inf), is refused with a one-line error naming
the flag or key, before any work starts.
"""
from __future__ import annotations

import math
from typing import Any

# name -> (lowest, highest), both inclusive
LIMITS: dict[str, tuple[float, float]] = {
    # sampling (CLI `sample`, the app)
    "count": (1, 1024),               # images per call
    "steps": (1, 1000),               # sampler steps
    "guidance": (0.0, 30.0),          # classifier-free guidance scale
    "seed": (0, 2**31 - 1),           # every seed used (image i uses seed + i)
    "nrow": (0, 1024),                # images per grid row (0: square-ish)
    # architecture (training flags and config.json)
    "resolution": (4, 1024),          # side the U-Net sees (latent or pixels)
    "channels": (1, 4096),            # any channel width
    "width": (1, 4096),               # the widest U-Net level: base_channels x max(channel_mult)
    "channel_mult": (1, 64),          # each entry
    "levels": (1, 8),                 # len(channel_mult), len(autoencoder channels)
    "blocks": (0, 64),                # residual blocks per level / in the up-scaler body
    "unshuffle": (1, 16),
    "in_channels": (1, 64),
    "groups": (1, 1024),
    "embedding": (1, 8192),           # cond_dim, emb_dim, head_dim, text_dim (text_dim may be 0)
    "tokens": (1, 256),               # condition tokens of the U-Net's cross-attention (0 = none)
    "timesteps": (2, 100_000),
    "vocab_size": (1, 1_000_000),     # values per attribute
    # data and training
    "image_size": (8, 4096),          # --size, --load-size, --crop
    "batch": (1, 65_536),
}

MAX_SEED = int(LIMITS["seed"][1])


def _describe(lo: float, hi: float, integer: bool) -> str:
    what = "an integer" if integer else "a finite number"
    return f"{what} between {lo:g} and {hi:g}"


def check(limit: str, value: Any, name: str | None = None, integer: bool | None = None) -> Any:
    """Return value when it lies within LIMITS[limit] (and is finite); else raise ValueError naming `name`.

    `integer` (default: whether the bounds are integers) also refuses floats and booleans.
    """
    lo, hi = LIMITS[limit]
    name = name or limit
    integer = isinstance(lo, int) and isinstance(hi, int) if integer is None else integer
    ok_type = (isinstance(value, int) if integer else isinstance(value, (int, float))) and not isinstance(value, bool)
    if not ok_type or (not integer and not math.isfinite(value)) or not lo <= value <= hi:
        raise ValueError(f"{name} must be {_describe(lo, hi, integer)}, got {value!r}")
    return value


def check_finite(value: Any, name: str, low: float | None = None, high: float | None = None) -> float:
    """A finite number (optionally within [low, high]), else ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"at least {low:g}" if high is None else f"at most {high:g}" if low is None else \
            f"between {low:g} and {high:g}"
        raise ValueError(f"{name} must be {bounds}, got {value!r}")
    return value


def check_seeds(first: int, count: int, name: str = "--seed") -> None:
    """Seeds first .. first + count - 1 must all lie within the seed limits."""
    check("seed", first, name)
    if first + count - 1 > MAX_SEED:
        raise ValueError(f"{name} {first} with {count} images uses seeds up to {first + count - 1}; the largest "
                         f"seed is {MAX_SEED}")


def check_sampling(steps: int, guidance: float, count: int, seed: int | None = None,
                   names: dict[str, str] | None = None) -> None:
    """The bounds of one sampling call (the CLI's `sample` and the app's pages)."""
    names = names or {}
    check("steps", steps, names.get("steps", "steps"))
    check("guidance", guidance, names.get("guidance", "guidance"))
    check("count", count, names.get("count", "count"))
    if seed is not None:
        check_seeds(seed, count, names.get("seed", "seed"))
