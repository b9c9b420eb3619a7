"""Where the app finds checkpoints, the demo data and its own cache (environment variables override or add)."""
from __future__ import annotations

import os
from pathlib import Path

from ..shipped import shipped_enabled, shipped_root
from .catalog import Entry, Root, discover_all

TRAIN_HINT = ("lwgen train diffusion --data data/emoji --attributes group subgroup style skin_tone "
              "--schedule cosine --minutes 60 --out runs/emoji-cosine")
RUNS_DEPTH = 2  # runs/NAME and runs/NAME/STAGE (the folders `lwgen fit` writes)
SOURCE_TEXT = {"shipped": "shipped with lwgen", "working folder": "from ./checkpoints",
               "LWGEN_CHECKPOINTS": "from LWGEN_CHECKPOINTS", "runs": "from runs/"}  # an Entry.source, for people


def runs_root() -> Path:
    """$LWGEN_RUNS, else ./runs: the training runs the app lists beside the shipped checkpoints."""
    return Path(os.environ.get("LWGEN_RUNS") or "runs").expanduser()


def extra_roots() -> list[Path]:
    """The folders named in $LWGEN_CHECKPOINTS (os.pathsep-separated; each a checkpoint or a folder of them)."""
    value = os.environ.get("LWGEN_CHECKPOINTS") or ""
    return [Path(p).expanduser() for p in value.split(os.pathsep) if p.strip()]


def search_roots() -> list[Root]:
    """Every place the app looks, in listing order: the shipped checkpoints (unless LWGEN_SHIPPED=0), ./checkpoints
    when it is another folder, each $LWGEN_CHECKPOINTS folder, then ./runs two levels down (named runs/...)."""
    roots = []
    shipped = shipped_root()
    if shipped_enabled():
        roots.append(Root(shipped, "shipped"))
    local = Path("checkpoints")
    if local.resolve() != shipped.resolve():
        roots.append(Root(local, "working folder"))
    roots += [Root(p, "LWGEN_CHECKPOINTS", RUNS_DEPTH) for p in extra_roots()]
    runs = runs_root()
    roots.append(Root(runs, "runs", RUNS_DEPTH, prefix="runs/"))
    return roots


def searched_text() -> str:
    """The searched places as one line for a message, e.g. "`checkpoints/` (shipped), `runs/` (two levels down)"."""
    parts = []
    for root in search_roots():
        what = {"shipped": "shipped", "runs": "two levels down"}.get(root.source, root.source)
        parts.append(f"`{display_path(root.path)}/` ({what})")
    return ", ".join(parts)


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


def catalog() -> list[Entry]:
    """The checkpoint folders of every searched place (shipped, $LWGEN_CHECKPOINTS, ./runs), rescanned on every run
    so a checkpoint written while the app runs appears on the next rerun (cheap: config files only)."""
    return discover_all(search_roots())
