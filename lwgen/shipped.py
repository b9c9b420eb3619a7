"""The checkpoints shipped with lwgen: the `checkpoints/` folder beside the package, wherever lwgen runs from."""
from __future__ import annotations

import os
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # the folder that holds app.py, lwgen/ and checkpoints/


def shipped_root() -> Path:
    """<package>/checkpoints, whether or not it exists (an installed wheel has none)."""
    return PACKAGE_ROOT / "checkpoints"


def shipped_enabled() -> bool:
    """False when $LWGEN_SHIPPED is 0 (or false/no/off): the shipped checkpoints are then neither listed by the app
    nor used as defaults."""
    return os.environ.get("LWGEN_SHIPPED", "1").strip().lower() not in ("0", "false", "no", "off")


def inside_shipped(path: str | Path) -> bool:
    """Whether path is the shipped checkpoints folder or lies inside it (links resolved)."""
    root = shipped_root().resolve()
    target = Path(path).expanduser().resolve()
    return target == root or root in target.parents
