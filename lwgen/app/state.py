"""Process-wide caches for the pages: models load once and are shared read-only by every session."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from ..pipeline import load_model
from ..projection.combinations import default_classes
from ..projection.features import load_classifier
from ..projection.gallery import GALLERY, Gallery, load_gallery, weights_hash
from ..projection.reduce import project, warm_umap
from ..projection.text import text_embeddings
from .cards import model_summary
from .catalog import Entry
from .explore import Items, real_items
from .images import data_uri
from .paths import cache_root
from .runner import Batcher


@dataclass
class Loaded:
    """A loaded checkpoint, the lock that serialises sampling on it (the CPU cores are shared) and, for a
    generator, the batcher that merges the Generate requests of all sessions into shared batches."""

    model: Any
    lock: threading.Lock = field(default_factory=threading.Lock)
    batcher: Batcher | None = None

    def __post_init__(self) -> None:
        if self.batcher is None and hasattr(self.model, "noise_shape"):
            self.batcher = Batcher(self.model, self.lock)


@st.cache_resource(max_entries=8, show_spinner="Loading checkpoint...")
def _load(path: str, stamp: str) -> Loaded:
    return Loaded(load_model(path))


def load(entry: Entry) -> Loaded:
    """Load a diffusion or up-scaler checkpoint once per process (reloaded when its files change)."""
    return _load(str(entry.path), entry.stamp)


@st.cache_resource(max_entries=2, show_spinner="Loading the classifier...")
def _classifier(path: str, stamp: str) -> Any:
    return load_classifier(path)


def classifier(entries: list[Entry]) -> Any | None:
    """The `classifier` checkpoint when it loads through lwgen.evaluation, else None."""
    for e in entries:
        if e.name == "classifier" and e.ok:
            return _classifier(str(e.path), e.stamp)
    return None


@st.cache_resource(max_entries=16, show_spinner=False)
def _gallery(path: str, stamp: str) -> Gallery | None:
    return load_gallery(path)


def _stamp(folder: Path) -> str:
    try:
        st_ = (folder / GALLERY).stat()
        return f"{st_.st_size}-{st_.st_mtime_ns}"
    except OSError:
        return "missing"


def gallery_at(folder: Path) -> Gallery | None:
    """The gallery saved in folder (memoised per file version); None when there is none."""
    return _gallery(str(folder), _stamp(folder))


def combinations(entry: Entry, model: Any) -> Any:
    """The attribute combinations a checkpoint knows: its config's, else its shipped gallery's classes."""
    from .conditions import known_combinations

    gallery = gallery_at(entry.path)
    return known_combinations(model.checkpoint_config, gallery.labels if gallery is not None else None)


@st.cache_resource(max_entries=16, show_spinner=False)
def _classes(path: str, stamp: str) -> Any:
    model = _load(path, stamp).model
    return default_classes(model.vocab, model.checkpoint_config)


def classes(entry: Entry) -> Any:
    """The classes a gallery of this checkpoint covers (config combinations, else the training CSV's, else a
    fallback), read once per checkpoint version."""
    return _classes(str(entry.path), entry.stamp)


def build_dir(entry: Entry, per_class: int, steps: int, seed: int) -> Path:
    """Where the app caches a gallery it builds: keyed by the checkpoint's weights hash and the settings."""
    return cache_root() / "galleries" / f"{entry.name}-{weights_hash(entry.path)}" / f"{per_class}x{steps}-seed{seed}"


def galleries(entry: Entry) -> dict[str, Path]:
    """{label: folder} of the galleries available for a checkpoint: shipped first, then app-built ones."""
    out: dict[str, Path] = {}
    if (entry.path / GALLERY).is_file():
        out["shipped with the checkpoint"] = entry.path
    built = cache_root() / "galleries" / f"{entry.name}-{weights_hash(entry.path)}"
    if built.is_dir():
        for folder in sorted(built.iterdir()):
            if (folder / GALLERY).is_file():
                out[f"built here: {folder.name}"] = folder
    return out


@st.cache_resource(max_entries=4, show_spinner="Loading real images...")
def real(root: str, attributes: tuple[str, ...], size: int, limit: int) -> Items:
    """A seeded sample of real images (decoded once per process; the data loader caches on disk too)."""
    return real_items(root, list(attributes), size, limit)


@st.cache_resource(max_entries=8, show_spinner="Computing image features...")
def features_cached(key: str, _compute: Any) -> np.ndarray:
    """Features computed once per key (the key names checkpoint, gallery, data and feature kind)."""
    return _compute()


@st.cache_resource(max_entries=8, show_spinner="Embedding the texts (the sentence encoder loads on first use)...")
def text_vectors(texts: tuple[str, ...]) -> Any:
    """Sentence embeddings (N, 384) of item texts, once per process per text list (and on disk in the cache)."""
    return text_embeddings(texts, cache_root() / "text")


@st.cache_data(max_entries=32, show_spinner="Projecting... (UMAP compiles on its first use: about 10 s)")
def projection(key: str, method: str, seed: int, perplexity: float, n_neighbors: int, min_dist: float,
               _x: np.ndarray) -> np.ndarray:
    """project() memoised by a key naming the features plus the projection parameters."""
    return project(_x, method, seed=seed, perplexity=perplexity, n_neighbors=n_neighbors, min_dist=min_dist)


THUMBNAIL_SIZE = 32  # px of the images drawn on the Explore maps


@st.cache_resource(max_entries=8, show_spinner=False)
def _thumbnail_store(key: str) -> dict[int, str]:
    return {}


def thumbnails(key: str, images: Any, indices: Any) -> list[str | None]:
    """One entry per image: a WEBP data URI for the given indices, None elsewhere. Each URI is encoded once per
    process per key (the key names the image set), so redrawing a map re-encodes nothing."""
    store = _thumbnail_store(key)
    out: list[str | None] = [None] * len(images)
    for i in map(int, indices):
        if i not in store:
            store[i] = data_uri(images[i], THUMBNAIL_SIZE, "WEBP")
        out[i] = store[i]
    return out


@st.cache_resource(max_entries=32, show_spinner=False)
def figure(key: str, _build: Any) -> Any:
    """A plotly figure built once per key (the key names the points, the colouring and the thumbnails); the
    pages must not change the returned figure."""
    return _build()


@st.cache_resource(show_spinner=False)
def _warm_projections() -> Any:
    return warm_umap()


def warm_projections() -> None:
    """Start importing and compiling UMAP in the background, once per process, so the first UMAP map waits less;
    not under streamlit.testing, whose runs would only spend CPU on it."""
    from .navigation import under_apptest

    if not under_apptest():
        _warm_projections()


@st.cache_resource(max_entries=16, show_spinner="Measuring the model...")
def summary(path: str, stamp: str) -> dict[str, Any]:
    """model_summary of a checkpoint, once per file version (its measuring forward waits for sampling)."""
    loaded = _load(path, stamp)
    with loaded.lock:
        return model_summary(loaded.model)
