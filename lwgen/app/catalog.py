"""The checkpoint folders the app can offer: every folder with a `config.json` under the places it searches
(shipped, ./runs, $LWGEN_CHECKPOINTS; see paths.search_roots), broken ones included."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..checkpoint import CONFIG, WEIGHTS

SKIPPED_FOLDERS = {"tb", "wandb", "__pycache__"}  # written beside checkpoints, never checkpoints themselves


@dataclass(frozen=True)
class Root:
    """A place to search: `path` itself when it is a checkpoint folder, else its sub-folders up to `depth` levels
    down. Entries found under it are named `prefix` + their path relative to it."""

    path: Path
    source: str
    depth: int = 1
    prefix: str = ""


@dataclass(frozen=True)
class Entry:
    """A checkpoint folder: its unique name, kind, where it was found and a stamp that changes with its files."""

    name: str
    path: Path
    kind: str
    stamp: str
    error: str | None = None
    source: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None


def _stamp(folder: Path) -> str:
    """Size and mtime of config and weights: a cache key that changes when a checkpoint is rewritten."""
    parts = []
    for name in (CONFIG, WEIGHTS):
        try:
            st = (folder / name).stat()
            parts.append(f"{st.st_size}-{st.st_mtime_ns}")
        except OSError:
            parts.append("missing")
    return "/".join(parts)


def read_entry(folder: Path, name: str | None = None, source: str = "") -> Entry:
    """Describe one folder without loading weights; problems are kept in `error`."""
    name = folder.name if name is None else name
    stamp = _stamp(folder)
    try:
        config: Any = json.loads((folder / CONFIG).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return Entry(name, folder, "unknown", stamp, f"{folder / CONFIG} cannot be read ({e})", source)
    if not isinstance(config, dict):
        return Entry(name, folder, "unknown", stamp, f"{folder / CONFIG} is not a JSON object", source)
    kind = str(config.get("kind", "unknown"))
    if not (folder / WEIGHTS).is_file():
        return Entry(name, folder, kind, stamp, f"{folder} has no {WEIGHTS}", source)
    return Entry(name, folder, kind, stamp, None, source)


def _is_settings_file(entry: Entry) -> bool:
    """A readable config.json with neither a kind nor weights beside it: a file of settings, not a checkpoint."""
    return entry.kind == "unknown" and entry.error is not None and entry.error.endswith(f"has no {WEIGHTS}")


def _folders(root: Path, depth: int) -> list[Path]:
    """Checkpoint folders (those with a config.json) below root, up to depth levels down, sorted by path."""
    found: list[Path] = []
    level = [root]
    for _ in range(depth):
        below = []
        for folder in level:
            try:
                subs = [Path(d.path) for d in os.scandir(folder) if d.is_dir() and not d.name.startswith(".")
                        and d.name not in SKIPPED_FOLDERS]
            except OSError:
                continue
            below += subs
        found += [f for f in below if (f / CONFIG).is_file()]
        level = below
    return sorted(found, key=lambda p: p.relative_to(root).parts)


def scan(root: Root) -> list[Entry]:
    """The entries of one search root: the folder itself when it holds a config.json, else its sub-folders."""
    path = root.path
    if (path / CONFIG).is_file():
        return [read_entry(path, root.prefix + path.name, root.source)]
    if not path.is_dir():
        return []
    entries = [read_entry(f, root.prefix + f.relative_to(path).as_posix(), root.source)
               for f in _folders(path, root.depth)]
    return [e for e in entries if not _is_settings_file(e)]


def discover(root: str | Path) -> list[Entry]:
    """Every `root/*/config.json` folder, sorted by name; [] when root does not exist."""
    return scan(Root(Path(root), "", 1))


def unique_name(name: str, path: Path, taken: set[str]) -> str:
    """name, else name prefixed with its parent folder's name, else with a number: the first not yet taken."""
    if name not in taken:
        return name
    longer = f"{path.parent.name}/{name}" if path.parent.name else name
    if longer not in taken:
        return longer
    k = 2
    while f"{longer} ({k})" in taken:
        k += 1
    return f"{longer} ({k})"


def discover_all(roots: list[Root]) -> list[Entry]:
    """The entries of every root in order; a folder reached twice is listed once (first root wins) and every
    name is unique."""
    seen: set[Path] = set()
    taken: set[str] = set()
    out: list[Entry] = []
    for root in roots:
        for e in scan(root):
            key = e.path.resolve()
            if key in seen:
                continue
            seen.add(key)
            name = unique_name(e.name, e.path, taken)
            taken.add(name)
            out.append(e if name == e.name else Entry(name, e.path, e.kind, e.stamp, e.error, e.source))
    return out


def of_kind(entries: list[Entry], kind: str) -> list[Entry]:
    """The entries of one kind (diffusion, upscaler, classifier), broken ones included."""
    return [e for e in entries if e.kind == kind]


def preferred(entries: list[Entry], *names: str) -> int:
    """Index of the first entry whose name contains one of names (in order of preference), else 0."""
    for name in names:
        for i, e in enumerate(entries):
            if name in e.name:
                return i
    return 0
