"""The Embedding lab: walks between two prompts, and a PCA plane of condition vectors, clickable anywhere, mapped
back to vectors."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..projection.interpolate import walk
from ..projection.reduce import PlaneMap
from .runner import condition_of


def click_grid(xy: np.ndarray, n: int = 36, margin: float = 0.15) -> np.ndarray:
    """n x n positions covering the points' bounding box plus a margin: every click lands on one."""
    lo, hi = xy.min(0), xy.max(0)
    pad = np.maximum((hi - lo) * margin, 1e-3)
    gx = np.linspace(lo[0] - pad[0], hi[0] + pad[0], n)
    gy = np.linspace(lo[1] - pad[1], hi[1] + pad[1], n)
    return np.stack(np.meshgrid(gx, gy), -1).reshape(-1, 2)


def vector_at(plane: PlaneMap, position: tuple[float, float]) -> torch.Tensor:
    """The condition vector (1, D) at a 2-D position of the plane (PCA inverse transform)."""
    return torch.from_numpy(plane.inverse(np.array([position]))).float()


def nearest(xy: np.ndarray, position: tuple[float, float], k: int = 3) -> list[int]:
    """Indices of the k points closest to position on the map."""
    d = ((xy - np.asarray(position)) ** 2).sum(1)
    return np.argsort(d)[:k].tolist()


def prompt_walk(model: Any, prompt_a: str, prompt_b: str, n: int, mode: str = "slerp",
                values: dict[str, str] | None = None) -> torch.Tensor:
    """n condition vectors (n, D) from prompt A's to prompt B's, t = 0..1 (attributes `values`, default all "any").

    An empty prompt is the no-text condition; at least one prompt must be given.
    """
    if not (prompt_a or "").strip() and not (prompt_b or "").strip():
        raise ValueError("type prompt A and prompt B (an empty one means no text)")
    a = condition_of(model, values or {}, prompt_a)[0]
    b = condition_of(model, values or {}, prompt_b)[0]
    return walk(a, b, n, mode)
