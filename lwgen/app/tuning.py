"""What the Tuning page shows: the studies in an Optuna storage, a table of their trials and Optuna's figures."""
from __future__ import annotations

import math
import os
import shlex
from pathlib import Path
from typing import Any

import pandas as pd

from ..tuning.search import sqlite_path
from .paths import display_path

DEFAULT_STORAGE = "sqlite:///runs/tune.db"
TUNE_HINT = ("lwgen tune --data data/emoji --attributes group subgroup style skin_tone \\\n"
             "    --autoencoder checkpoints/emoji-autoencoder --trials 20 --minutes-per-trial 2 \\\n"
             "    --storage sqlite:///runs/tune.db")
MIN_FOR_IMPORTANCE = 2


def default_storage() -> str:
    """$LWGEN_TUNE_STORAGE, else the storage `lwgen tune` writes by default."""
    return os.environ.get("LWGEN_TUNE_STORAGE") or DEFAULT_STORAGE


def storage_problem(url: str) -> str | None:
    """Why a storage URL cannot be read (a missing SQLite file is not created by looking at it), else None."""
    url = url.strip()
    if not url:
        return "Enter an Optuna storage URL, such as `sqlite:///runs/tune.db`."
    if "://" not in url:
        return f"`{url}` is not a storage URL: an SQLite file is written `sqlite:///path/to/file.db`."
    path = sqlite_path(url)
    if path is not None and not path.is_file():
        return (f"`{display_path(path)}` does not exist yet: `lwgen tune ... --storage {url}` creates it with the "
                f"first trial.")
    return None


def study_names(url: str) -> list[str]:
    """The names of the studies in the storage, sorted."""
    import optuna

    try:
        summaries = optuna.get_all_study_summaries(url.strip(), include_best_trial=False)
    except Exception as e:  # noqa: BLE001 - SQLAlchemy, Optuna and driver errors alike: say what cannot be read
        raise ValueError(f"cannot read the studies in {url}: {e}") from None
    return sorted(s.study_name for s in summaries)


def load_study(url: str, name: str) -> Any:
    import optuna

    return optuna.load_study(study_name=name, storage=url.strip())


def _state(trial: Any) -> str:
    return trial.state.name.lower()


def state_counts(study: Any) -> dict[str, int]:
    """Trials per state: complete, pruned, failed, running (waiting ones count as running)."""
    out = {"complete": 0, "pruned": 0, "failed": 0, "running": 0}
    for t in study.trials:
        s = _state(t)
        out["failed" if s == "fail" else "running" if s in ("running", "waiting") else s] += 1
    return out


def trials_frame(study: Any) -> pd.DataFrame:
    """One row per trial: number, state, held-out loss (pruned: the last reported), parameters, steps, time."""
    rows = []
    for t in study.trials:
        value = t.value
        if value is None and t.intermediate_values:
            value = t.intermediate_values[max(t.intermediate_values)]
        duration = t.duration.total_seconds() if t.duration is not None else None
        rows.append({"trial": t.number, "state": _state(t),
                     "held-out loss": value if value is None or math.isfinite(value) else None,
                     **{k: v for k, v in t.params.items()},
                     "reports": len(t.intermediate_values), "steps": t.user_attrs.get("steps"),
                     "minutes": round(duration / 60, 2) if duration is not None else None,
                     "folder": t.user_attrs.get("folder", "")})
    return pd.DataFrame(rows)


def best_trial(study: Any) -> Any | None:
    """The completed trial with the lowest held-out loss, or None."""
    done = [t for t in study.trials if _state(t) == "complete" and t.value is not None]
    return min(done, key=lambda t: t.value) if done else None


def best_config_command(trial: Any) -> str | None:
    """The `lwgen train diffusion --config ...` call of the study's best.json, when `lwgen tune` wrote one."""
    folder = trial.user_attrs.get("folder")
    if not folder:
        return None
    best = Path(folder).parent / "best.json"
    if not best.is_file():
        return None
    return " ".join(shlex.quote(p) for p in ["lwgen", "train", "diffusion", "--config", display_path(best),
                                             "--minutes", "60", "--out", f"runs/{best.parent.name}-tuned"])


def figures(study: Any) -> dict[str, tuple[Any, str | None]]:
    """{view name: (Plotly figure or None, message when there is no figure)} for the three Optuna views."""
    from optuna import visualization as vis

    done = sum(_state(t) == "complete" for t in study.trials)
    views: dict[str, tuple[Any, str | None]] = {}
    makers = {"Optimization history": (vis.plot_optimization_history, 1),
              "Parameter importances": (vis.plot_param_importances, MIN_FOR_IMPORTANCE),
              "Parallel coordinates": (vis.plot_parallel_coordinate, 1)}
    for name, (make, needed) in makers.items():
        if done < needed:
            views[name] = (None, f"{name} need at least {needed} completed trial{'s' if needed > 1 else ''} "
                                 f"({done} so far).")
            continue
        try:
            views[name] = (make(study), None)
        except Exception as e:  # noqa: BLE001 - e.g. importances when every trial has the same parameters
            views[name] = (None, f"{name} cannot be drawn for this study: {e}")
    return views
