"""Where the app finds checkpoints, the demo data and its own cache (environment variables override)."""
from __future__ import annotations

import os
from pathlib import Path

TRAIN_HINT = ("lwgen train diffusion --data data/emoji --attributes group subgroup style skin_tone "
              "--schedule cosine --minutes 60 --out checkpoints/emoji-cosine")


def checkpoints_root() -> Path:
    """$LWGEN_CHECKPOINTS, else ./checkpoints."""
    return Path(os.environ.get("LWGEN_CHECKPOINTS") or "checkpoints").expanduser()


def data_root() -> Path:
    """$LWGEN_DATA, else ./data/emoji."""
    return Path(os.environ.get("LWGEN_DATA") or "data/emoji").expanduser()


def cache_root() -> Path:
    """$LWGEN_CACHE, else ~/.cache/lwgen/app."""
    return Path(os.environ.get("LWGEN_CACHE") or Path.home() / ".cache" / "lwgen" / "app").expanduser()


def display_path(path: str | Path) -> str:
    """A path as a user would type it: relative to the working folder when inside it, else absolute."""
    path = Path(os.path.abspath(path))  # normalised, symbolic links kept as the user named them
    try:
        return str(path.relative_to(os.path.abspath(Path.cwd())))
    except ValueError:
        return str(path)
