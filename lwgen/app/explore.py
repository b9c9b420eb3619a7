"""The items the Explore page projects: generated gallery images and, when the data is built, real images; each
with the text that describes it, for sentence embeddings and search."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..data import ImageTable
from ..data.images import DataError
from ..projection.features import classifier_features, pixel_features
from ..projection.gallery import Gallery
from .images import resize

SOURCE = "source"
TEXT = "text"  # what describes an item in words: the data's text column, else its attribute values
MATCH = "query"  # the column a text search fills: "match" for its hits, else "other"
TAG = "tag"  # what tells one item from another in a caption: "seed 12" for generated images, the name for real ones


@dataclass
class Items:
    """Images (N, 3, R, R) uint8 and one frame row per image (source, attributes, text, name or seed)."""

    images: torch.Tensor
    frame: pd.DataFrame

    def __len__(self) -> int:
        return int(self.images.shape[0])


def gallery_items(gallery: Gallery) -> Items:
    """The gallery as items with source "generated"."""
    frame = gallery.frame()
    frame.insert(0, SOURCE, "generated")
    frame[TEXT] = values_text(frame, gallery.attributes)
    frame[TAG] = [f"seed {s}" for s in frame["seed"]]
    return Items(gallery.images, frame)


def values_text(frame: pd.DataFrame, attributes: list[str]) -> list[str]:
    """Each row's attribute values as text ("red, circle"), for items without a text of their own."""
    from ..text import template  # lazy: lwgen.text is only needed where text is

    return [template({a: str(row[a]) for a in attributes if a in frame.columns}) for _, row in frame.iterrows()]


def has_real_data(root: str | Path) -> bool:
    """Whether the annotation CSV of the demo data exists."""
    return (Path(root) / "annotations.csv").is_file()


def real_items(root: str | Path, attributes: list[str], size: int, limit: int, seed: int = 0) -> Items:
    """Up to `limit` real images (a seeded random sample, all splits) with their attribute values."""
    root = Path(root)
    try:
        table = ImageTable.load(root, attributes, size=size, progress=False, skip_bad=True)
    except DataError as e:
        raise DataError(f"real images from {root}: {e}") from None
    order = torch.randperm(len(table), generator=torch.Generator().manual_seed(seed))[:limit].sort().values
    table = table.subset(order)
    frame = pd.DataFrame({SOURCE: "real", **{a: table.extra[a].astype(str).replace("", "unknown").tolist()
                                             for a in attributes}})
    if "name" in table.extra.columns:
        frame["name"] = table.extra["name"].astype(str).tolist()
    if TEXT in table.extra.columns:
        frame[TEXT] = [str(v).strip() if v == v else "" for v in table.extra[TEXT].tolist()]  # NaN -> no text
    else:
        frame[TEXT] = values_text(frame, attributes)
    frame["file"] = table.files
    frame[TAG] = frame["name"] if "name" in frame.columns else [Path(f).stem for f in table.files]
    return Items(table.images, frame)


def combine(parts: list[Items]) -> Items:
    """Concatenate item sets; images are resized to the smallest resolution among them."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return Items(torch.zeros((0, 3, 1, 1), dtype=torch.uint8), pd.DataFrame({SOURCE: []}))
    size = min(p.images.shape[-1] for p in parts)
    images = torch.cat([resize(p.images, size) for p in parts])
    frame = pd.concat([p.frame.astype(str) for p in parts], ignore_index=True).fillna("")  # text: for display
    return Items(images, frame)


def item_features(items: Items, kind: str = "pixels", classifier: Any = None, size: int = 16) -> np.ndarray:
    """Feature vectors (N, F): downsampled pixels, or classifier features when kind is "classifier"."""
    if kind == "classifier":
        if classifier is None:
            raise ValueError("classifier features requested but no classifier is loaded")
        return classifier_features(classifier, items.images)
    return pixel_features(items.images, size)


def first_image_per_class(gallery: Gallery, classes: torch.Tensor) -> list[int | None]:
    """For each class row (K, A), the index of the first gallery image with exactly those labels, or None."""
    found: dict[tuple[int, ...], int] = {}
    for i, row in enumerate(gallery.labels.tolist()):
        found.setdefault(tuple(row), i)
    return [found.get(tuple(row)) for row in classes.tolist()]


def spread_subset(xy: np.ndarray, k: int) -> list[int]:
    """k point indices spread over the map (greedy farthest-point sampling), so thumbnails overlap little."""
    n = len(xy)
    if k >= n:
        return list(range(n))
    if k <= 0:
        return []
    xy = np.asarray(xy, np.float64)
    picks = [int(np.argmin(((xy - xy.mean(0)) ** 2).sum(1)))]
    dist = ((xy - xy[picks[0]]) ** 2).sum(1)
    for _ in range(k - 1):
        nxt = int(np.argmax(dist))
        picks.append(nxt)
        dist = np.minimum(dist, ((xy - xy[nxt]) ** 2).sum(1))
    return sorted(picks)


def text_search(query: str, text_vecs: torch.Tensor, k: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """The k items whose texts are closest in meaning to the query (cosine of sentence embeddings): indices, scores."""
    from ..projection.text import search
    from ..text import encode  # lazy: the sentence encoder loads on the first query

    if not query.strip():
        raise ValueError("the query is empty: type a few words")
    return search(encode([query])[0], text_vecs, k)


def match_labels(n: int, indices: np.ndarray | list[int]) -> list[str]:
    """A label per item for colouring a search: "match" for the hits, "other" for the rest."""
    out = ["other"] * n
    for i in indices:
        out[int(i)] = "match"
    return out
