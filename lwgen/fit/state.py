"""`fit-state.json`: which stages of a fit are done, so that re-running the same command resumes it."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ..io import atomic_write_text

STATE = "fit-state.json"
CARD = "fit.json"
LOG = "fit.log"  # the Train page sends a launched fit's output here (it may exist before the fit starts)


def identity(data: Path, csv: str, file_column: str, attributes: list[str], text_column: str) -> dict[str, Any]:
    """What makes two fits the same: an earlier fit of the same identity may be resumed in its folder."""
    return {"data": str(Path(data).resolve()), "csv": csv, "file_column": file_column,
            "attributes": list(attributes), "text_column": text_column}


def read_state(out: Path) -> dict[str, Any] | None:
    """The fit state in `out`, or None when there is none; ValueError naming the file when it is unreadable."""
    path = out / STATE
    if not path.is_file():
        return None
    try:
        state = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a readable fit state ({e}); pass --force to start the fit again") from None
    if not isinstance(state, dict) or not isinstance(state.get("stages"), dict):
        raise ValueError(f"{path}: not a fit state (no 'stages'); pass --force to start the fit again")
    return state


def write_state(out: Path, state: dict[str, Any]) -> None:
    state["updated"] = time.time()
    atomic_write_text(out / STATE, json.dumps(state, indent=1))


def new_state(ident: dict[str, Any], argv: list[str]) -> dict[str, Any]:
    return {"identity": ident, "command": argv, "stages": {}, "current": None, "state": "running",
            "started": time.time()}


def stage_done(state: dict[str, Any], name: str) -> bool:
    return (state["stages"].get(name) or {}).get("status") == "done"
