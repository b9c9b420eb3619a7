"""Plotly figures for the pages: thumbnail scatters, the condition map and loss curves."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

PALETTE = list(qualitative.Dark24) + list(qualitative.Light24)
THUMBNAIL_LIMIT = 200  # default number of points drawn as images; markers beyond
THUMBNAIL_STEPS = (0, 50, 100, 200, 300, 500)


def category_colors(values: Sequence[str], order: Sequence[str] | None = None) -> dict[str, str]:
    """A colour per distinct value of 48, cycling: by the value's index in `order` (a model's vocabulary, so a value
    keeps its colour on every map and gallery), the other values after those in sorted order."""
    known = {v: i for i, v in enumerate(order or ())}
    rest = {v: len(known) + i for i, v in enumerate(sorted({v for v in values if v not in known}))}
    return {v: PALETTE[(known[v] if v in known else rest[v]) % len(PALETTE)] for v in dict.fromkeys(values)}


def _hover(frame: pd.DataFrame, columns: list[str]) -> list[str]:
    """One hover text per row: "column: value" lines."""
    cols = [c for c in columns if c in frame.columns]
    if not cols:
        return [""] * len(frame)
    values = zip(*(frame[c].astype(str).tolist() for c in cols))
    return ["<br>".join(f"{c}: {v}" for c, v in zip(cols, row)) for row in values]


def _spans(xy: np.ndarray) -> tuple[float, float]:
    """Data width and height of a point cloud (1 when flat)."""
    if len(xy) == 0:
        return 1.0, 1.0
    span = np.ptp(xy, axis=0)
    return float(span[0]) or 1.0, float(span[1]) or 1.0


def thumbnail_scatter(xy: np.ndarray, frame: pd.DataFrame, color: str, hover: list[str],
                      thumbs: Sequence[str | None] | None = None, height: int = 640, title: str = "",
                      thumb_fraction: float = 0.045, palette_order: Sequence[str] | None = None) -> go.Figure:
    """Scatter of items coloured by a column; customdata is the item index (for selections).

    Points with a thumbnail (a data URI in thumbs) show their image as a layout image framed by an open
    square in their colour; the others are plain markers. Colours follow palette_order (see category_colors);
    the legend lists the most frequent values first.
    """
    values = frame[color].astype(str).tolist() if color in frame.columns else ["all"] * len(frame)
    order = pd.Series(values).value_counts().index.tolist()
    colors = category_colors(order, palette_order)
    text = _hover(frame, hover)
    has = [bool(thumbs[i]) if thumbs is not None else False for i in range(len(values))]
    fig = go.Figure()
    trace = go.Scatter if any(has) or len(xy) <= 2000 else go.Scattergl  # WebGL only where SVG would be slow
    for value in order:
        idx = [i for i, v in enumerate(values) if v == value]
        fig.add_trace(trace(
            x=xy[idx, 0], y=xy[idx, 1], mode="markers", name=value, customdata=idx,
            hovertext=[text[i] for i in idx], hoverinfo="text",
            marker={"color": colors[value], "size": [22 if has[i] else 7 for i in idx],
                    "symbol": ["square-open" if has[i] else "circle" for i in idx],
                    "line": {"width": 2, "color": colors[value]}, "opacity": 0.9}))
    if any(has):
        sx, sy = _spans(xy)
        fig.update_layout(images=[
            {"source": thumbs[i], "x": float(xy[i, 0]), "y": float(xy[i, 1]), "xref": "x", "yref": "y",
             "sizex": thumb_fraction * sx, "sizey": thumb_fraction * sy, "xanchor": "center", "yanchor": "middle",
             "sizing": "contain", "layer": "below"}
            for i in range(len(values)) if has[i]])
    fig.update_layout(height=height, title=title or None, dragmode="select", legend={"itemsizing": "constant"},
                      margin={"l": 10, "r": 10, "t": 40, "b": 10}, plot_bgcolor="white", legend_title_text=color)
    fig.update_xaxes(showgrid=False, zeroline=False, showticklabels=False)
    fig.update_yaxes(showgrid=False, zeroline=False, showticklabels=False)
    return fig


def condition_map(xy: np.ndarray, frame: pd.DataFrame, color: str, hover: list[str], grid: np.ndarray,
                  path: np.ndarray | None = None, marker: tuple[float, float] | None = None,
                  explained: Sequence[float] = (), height: int = 560,
                  palette_order: Sequence[str] | None = None) -> go.Figure:
    """PCA map of condition vectors over a faint grid of clickable positions, with an optional walk and marker."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=grid[:, 0], y=grid[:, 1], mode="markers", name="click anywhere", hoverinfo="none",
                             marker={"size": 20, "symbol": "square", "color": "rgba(120,120,120,0.05)"},
                             showlegend=False))
    values = frame[color].astype(str).tolist()
    colors = category_colors(pd.Series(values).value_counts().index.tolist(), palette_order)
    text = _hover(frame, hover)
    for value in colors:
        idx = [i for i, v in enumerate(values) if v == value]
        fig.add_trace(go.Scatter(x=xy[idx, 0], y=xy[idx, 1], mode="markers", name=value, customdata=idx,
                                 hovertext=[text[i] for i in idx], hoverinfo="text",
                                 marker={"size": 8, "color": colors[value]}))
    if path is not None and len(path) >= 2:
        fig.add_trace(go.Scatter(x=path[:, 0], y=path[:, 1], mode="lines+markers+text", name="walk",
                                 text=["A"] + [""] * (len(path) - 2) + ["B"], textposition="top center",
                                 line={"color": "black", "width": 2}, marker={"size": 6, "color": "black"},
                                 hoverinfo="skip"))
    if marker is not None:
        fig.add_trace(go.Scatter(x=[marker[0]], y=[marker[1]], mode="markers", name="generated here",
                                 marker={"symbol": "x", "size": 16, "color": "crimson", "line": {"width": 2}},
                                 hoverinfo="skip"))
    ex = list(explained) + [0.0, 0.0]
    fig.update_layout(height=height, margin={"l": 10, "r": 10, "t": 40, "b": 10},  # Streamlit: click selects
                      plot_bgcolor="white", legend_title_text=color,
                      xaxis_title=f"PC1 ({100 * ex[0]:.0f}% of variance)",
                      yaxis_title=f"PC2 ({100 * ex[1]:.0f}% of variance)")
    fig.update_xaxes(showgrid=True, gridcolor="#eee", zeroline=False)
    fig.update_yaxes(showgrid=True, gridcolor="#eee", zeroline=False)
    return fig


def loss_figure(history: Sequence[Sequence[float]], height: int = 260) -> go.Figure:
    """Training loss against step (log scale), from config progress.loss_history rows [step, loss, seconds]."""
    rows = [r for r in history if len(r) >= 2]
    steps = [r[0] for r in rows]
    loss = [r[1] for r in rows]
    minutes = [r[2] / 60 if len(r) > 2 else float("nan") for r in rows]
    fig = go.Figure(go.Scatter(x=steps, y=loss, mode="lines", name="loss", customdata=minutes,
                               hovertemplate="step %{x}<br>loss %{y:.4f}<br>%{customdata:.1f} min<extra></extra>"))
    fig.update_layout(height=height, margin={"l": 10, "r": 10, "t": 10, "b": 10}, xaxis_title="step",
                      yaxis_title="loss", yaxis_type="log" if loss and min(loss) > 0 else "linear")
    return fig
