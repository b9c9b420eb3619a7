"""Which attribute-value combinations a model knows: from its config, its training data, or a small fallback."""
from __future__ import annotations

import itertools
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from ..data.annotations import cell_value, read_csv, resolve_csv
from ..data.images import DataError
from ..models import NULL


def _label(value: Any, lookup: dict[str, int], size: int) -> int | None:
    """One cell (value name, index or "any") -> label index, or None when unknown."""
    if value is None or value == "any":
        return NULL
    if isinstance(value, int) and not isinstance(value, bool):
        return value if NULL <= value < size else None
    return lookup.get(value) if isinstance(value, str) else None


def labels_from_rows(rows: Iterable[Any], vocab: dict[str, list[str]]) -> torch.Tensor | None:
    """Rows of value names, label indices or {attribute: value} dicts -> unique labels (K, A); unknown rows dropped."""
    attrs = list(vocab)
    lookup = [{v: i for i, v in enumerate(vocab[a])} for a in attrs]
    out = []
    for row in rows:
        if isinstance(row, dict):
            row = [row.get(a, "any") for a in attrs]
        if not isinstance(row, (list, tuple)) or len(row) != len(attrs):
            continue
        labels = [_label(value, lookup[a], len(vocab[attrs[a]])) for a, value in enumerate(row)]
        if None not in labels:
            out.append(labels)
    if not out:
        return None
    return torch.unique(torch.tensor(out, dtype=torch.long).reshape(-1, len(attrs)), dim=0)


def combinations_from_config(config: dict[str, Any]) -> torch.Tensor | None:
    """The `combinations` list of a checkpoint config as labels (K, A), or None when it has none."""
    rows = config.get("combinations")
    vocab = config.get("vocab")
    if not isinstance(rows, list) or not isinstance(vocab, dict):
        return None
    return labels_from_rows(rows, vocab)


def combinations_from_data(config: dict[str, Any], root: str | Path | None = None) -> torch.Tensor | None:
    """Combinations present in the checkpoint's training CSV (`data.folder`, or root), or None when unreadable."""
    vocab = config.get("vocab")
    data = config.get("data") or {}
    folder = root if root is not None else data.get("folder")
    if not isinstance(vocab, dict) or not folder:
        return None
    path = resolve_csv(Path(folder), data.get("csv", "annotations.csv"))
    if not path.is_file():
        return None
    try:
        df = read_csv(path)
    except DataError:
        return None
    attrs = list(vocab)
    if any(a not in df.columns for a in attrs):
        return None
    split = data.get("split")
    if split and "split" in df.columns:
        df = df[df["split"] == split]
    rows = df[attrs].drop_duplicates().itertuples(index=False, name=None)
    return labels_from_rows(([cell_value(v) for v in row] for row in rows), vocab)


def default_classes(vocab: dict[str, list[str]], config: dict[str, Any] | None = None,
                    data_root: str | Path | None = None, max_product: int = 64) -> torch.Tensor:
    """Combinations from the config, else from the data, else every combination if few, else one per first value."""
    config = config or {}
    for found in (combinations_from_config(config), combinations_from_data({**config, "vocab": vocab}, data_root)):
        if found is not None:
            return found
    sizes = [len(v) for v in vocab.values()]
    if sizes and int(torch.tensor(sizes).prod()) <= max_product:
        return torch.tensor(list(itertools.product(*(range(n) for n in sizes))), dtype=torch.long)
    labels = torch.full((sizes[0] if sizes else 0, len(sizes)), NULL, dtype=torch.long)
    if sizes:
        labels[:, 0] = torch.arange(sizes[0])
    return labels
