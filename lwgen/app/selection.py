"""Plotly selection events -> the items they select, and the 2-D position a click or box points at."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd


def _get(obj: Any, key: str, default: Any = None) -> Any:
    """Item or attribute access (Streamlit returns attribute-dicts; tests pass plain dicts)."""
    if isinstance(obj, Mapping):
        return obj.get(key, default)
    return getattr(obj, key, default)


def selection_of(event: Any) -> Any:
    """The `selection` part of a st.plotly_chart event (or the selection itself)."""
    inner = _get(event, "selection")
    return inner if inner is not None else event


def selected_indices(event: Any) -> list[int]:
    """Item indices of the selected points, in selection order, each once.

    Each point carries its item index as customdata (a scalar or the first element of a list); points
    without customdata (background traces such as the click grid) are ignored.
    """
    if event is None:
        return []
    seen: dict[int, None] = {}
    for point in _get(selection_of(event), "points", []) or []:
        custom = _get(point, "customdata")
        if isinstance(custom, (list, tuple)):
            custom = custom[0] if custom else None
        if custom is None or isinstance(custom, str):
            continue
        try:
            seen[int(custom)] = None
        except (TypeError, ValueError):
            continue
    return list(seen)


def captions(frame: pd.DataFrame, indices: list[int], columns: list[str]) -> list[str]:
    """One caption per selected item: its values in the given columns, "any" values left out."""
    out = []
    for i in indices:
        row = frame.iloc[i]
        parts = [str(row[c]) for c in columns if c in frame.columns and str(row[c]) not in ("any", "", "nan")]
        out.append(" · ".join(parts))
    return out


def selection_summary(frame: pd.DataFrame, indices: list[int], column: str, top: int = 5) -> str:
    """"12 selected: 7 flags, 3 objects, ..." for the most common values of one column."""
    if not indices:
        return "nothing selected"
    counts = frame.iloc[indices][column].astype(str).value_counts()
    shown = ", ".join(f"{n} {v}" for v, n in counts.head(top).items())
    more = f", {len(counts) - top} more values" if len(counts) > top else ""
    return f"{len(indices)} selected: {shown}{more}"


def clicked_position(event: Any) -> tuple[float, float] | None:
    """The 2-D position a selection points at: the last clicked point, a box's centre or a lasso's centroid."""
    if event is None:
        return None
    sel = selection_of(event)
    points = _get(sel, "points", []) or []
    if points:
        x, y = _get(points[-1], "x"), _get(points[-1], "y")
        if x is not None and y is not None:
            return float(x), float(y)
    for box in _get(sel, "box", []) or []:
        xs, ys = _get(box, "x", []), _get(box, "y", [])
        if len(xs) >= 2 and len(ys) >= 2:
            return (float(xs[0]) + float(xs[1])) / 2, (float(ys[0]) + float(ys[1])) / 2
    for lasso in _get(sel, "lasso", []) or []:
        xs, ys = _get(lasso, "x", []), _get(lasso, "y", [])
        if len(xs) and len(xs) == len(ys):
            return sum(map(float, xs)) / len(xs), sum(map(float, ys)) / len(ys)
    return None


def outside_known(xy: np.ndarray, position: tuple[float, float], margin: float = 0.15) -> bool:
    """Whether a position lies outside the box of the known points widened by `margin` of its size per side (the
    click grid's area): there the nearest known points say little about what the position means."""
    xy = np.asarray(xy, np.float64)
    if len(xy) == 0:
        return True
    lo, hi = xy.min(0), xy.max(0)
    pad = np.maximum((hi - lo) * margin, 1e-3)
    p = np.asarray(position, np.float64)
    return bool(((p < lo - pad) | (p > hi + pad)).any())
