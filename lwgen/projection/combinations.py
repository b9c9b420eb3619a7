"""Which attribute-value combinations a model knows: from its config, its training data, or a small fallback."""
from __future__ import annotations

import itertools
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from ..conditioning import NULL, config_label_rows, label_rows
from ..data.annotations import cell_value, read_csv, resolve_csv
from ..data.images import DataError


def labels_from_rows(rows: Iterable[Any], vocab: dict[str, list[str]]) -> torch.Tensor | None:
    """Rows of value names, label indices or {attribute: value} dicts -> unique labels (K, A); unknown rows dropped."""
    found = label_rows(rows, vocab)
    return torch.tensor(found, dtype=torch.long).reshape(-1, len(vocab)) if found else None


def combinations_from_config(config: dict[str, Any]) -> torch.Tensor | None:
    """The `combinations` list of a checkpoint config as labels (K, A), or None when it has none."""
    found = config_label_rows(config)
    return torch.tensor(found, dtype=torch.long) if found else None


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
