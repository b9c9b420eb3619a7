"""The checkpoint folders the app can offer: one entry per `<root>/*/config.json`, broken ones included."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..checkpoint import CONFIG, WEIGHTS


@dataclass(frozen=True)
class Entry:
    """A checkpoint folder: its name, kind and a stamp that changes when its files change."""

    name: str
    path: Path
    kind: str
    stamp: str
    error: str | None = None

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


def read_entry(folder: Path) -> Entry:
    """Describe one folder without loading weights; problems are kept in `error`."""
    stamp = _stamp(folder)
    try:
        config: Any = json.loads((folder / CONFIG).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return Entry(folder.name, folder, "unknown", stamp, f"{folder / CONFIG} cannot be read ({e})")
    if not isinstance(config, dict):
        return Entry(folder.name, folder, "unknown", stamp, f"{folder / CONFIG} is not a JSON object")
    kind = str(config.get("kind", "unknown"))
    if not (folder / WEIGHTS).is_file():
        return Entry(folder.name, folder, kind, stamp, f"{folder} has no {WEIGHTS}")
    return Entry(folder.name, folder, kind, stamp)


def discover(root: str | Path) -> list[Entry]:
    """Every `root/*/config.json` folder, sorted by name; [] when root does not exist."""
    root = Path(root)
    if not root.is_dir():
        return []
    return [read_entry(p.parent) for p in sorted(root.glob(f"*/{CONFIG}"))]


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
