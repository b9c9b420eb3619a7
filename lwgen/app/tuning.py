"""What the Tuning page shows: the studies in an Optuna storage, a table of their trials and Optuna's figures."""
from __future__ import annotations

import math
import os
import shlex
from pathlib import Path
from typing import Any

import pandas as pd

from ..shipped import shipped_enabled, shipped_root
from ..tuning.search import sqlite_path
from .paths import display_path

DEFAULT_STORAGE = "sqlite:///runs/tune.db"
TUNE_HINT = ("lwgen tune --data data/emoji --attributes group subgroup style skin_tone \\\n"
             "    --autoencoder checkpoints/emoji-autoencoder --trials 20 --minutes-per-trial 2 \\\n"
             "    --storage sqlite:///runs/tune.db")
MIN_FOR_IMPORTANCE = 2


SHIPPED_STUDY = "tune-demo.db"  # a small study of the emoji, in the shipped checkpoints folder
DEMO_STUDY = ("8 trials of 1 minute each on the emoji, one core: `lwgen tune --data data/emoji --attributes group "
              "subgroup style skin_tone --autoencoder checkpoints/emoji-autoencoder --trials 8 --minutes-per-trial 1 "
              "--storage sqlite:///runs/tune-demo.db --study emoji-demo --threads 1`")


def shipped_study() -> str | None:
    """The storage URL of the demo study shipped with lwgen (None when it is absent or the shipped checkpoints are
    off)."""
    path = shipped_root() / SHIPPED_STUDY
    return f"sqlite:///{path}" if shipped_enabled() and path.is_file() else None


def default_storage() -> str:
    """$LWGEN_TUNE_STORAGE, else the storage `lwgen tune` writes by default once it exists, else the shipped demo
    study (so a first visit shows what a search gives), else the default storage."""
    given = os.environ.get("LWGEN_TUNE_STORAGE")
    if given:
        return given
    own = sqlite_path(DEFAULT_STORAGE)
    if own is not None and own.exists():
        return DEFAULT_STORAGE
    return shipped_study() or DEFAULT_STORAGE


SQLITE_HEADER = b"SQLite format 3\x00"
OPTUNA_TABLES = {"studies", "trials", "version_info"}  # tables every Optuna RDB storage has


def sqlite_tables(path: Path) -> set[str] | None:
    """The table names of an SQLite file, read-only (None when the file is not an SQLite database)."""
    import sqlite3

    with open(path, "rb") as f:
        head = f.read(len(SQLITE_HEADER))
    if head != SQLITE_HEADER:
        return set() if head == b"" else None  # an empty file is an empty database to SQLite
    con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError:
        return None
    finally:
        con.close()


def storage_problem(url: str) -> str | None:
    """Why a storage URL cannot be opened as an Optuna storage, else None. Looking never writes: a missing SQLite
    file is not created, and an SQLite file without Optuna's tables is refused rather than given them."""
    url = url.strip()
    if not url:
        return "Enter an Optuna storage URL, such as `sqlite:///runs/tune.db`."
    if "://" not in url:
        return f"`{url}` is not a storage URL: an SQLite file is written `sqlite:///path/to/file.db`."
    path = sqlite_path(url)
    if path is None:
        return None
    shown = display_path(path)
    if not path.exists():
        return (f"`{shown}` does not exist yet: `lwgen tune ... --storage {url}` creates it with the first trial "
                f"(or create an empty study file here).")
    if not path.is_file():
        return f"`{shown}` is not a file, so it cannot be an SQLite study file."
    try:
        tables = sqlite_tables(path)
    except OSError as e:
        return f"`{shown}` cannot be read: {e.strerror or e}."
    if tables is None:
        return f"`{shown}` is not an SQLite database, so it holds no Optuna study."
    if not OPTUNA_TABLES <= tables:
        return (f"`{shown}` is an SQLite database without Optuna's tables; it is left untouched (the page writes "
                f"into no other database). Give the storage of `lwgen tune`.")
    return None


def can_create(url: str) -> bool:
    """Whether `url` names an SQLite file that does not exist yet (the page may create an empty study file)."""
    path = sqlite_path(url.strip())
    return path is not None and not path.exists()


def create_storage(url: str) -> None:
    """Create a new, empty Optuna study file (only where no file exists: never into another database)."""
    if not can_create(url):
        raise ValueError(f"{url}: only a new SQLite file can be created here")
    import optuna

    path = sqlite_path(url.strip())
    path.parent.mkdir(parents=True, exist_ok=True)
    optuna.storages.RDBStorage(url.strip())


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

    try:
        return optuna.load_study(study_name=name, storage=url.strip())
    except Exception as e:  # noqa: BLE001 - say what cannot be read, no traceback
        raise ValueError(f"cannot read study {name!r} in {url}: {e}") from None


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
