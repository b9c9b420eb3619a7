"""Condition ("text") embeddings: the vector of each attribute value alone and of each known combination."""
from __future__ import annotations

from typing import Any

import pandas as pd
import torch

from ..models import NULL


def _names(labels: torch.Tensor, vocab: dict[str, list[str]]) -> dict[str, list[str]]:
    """Label columns -> value names ("any" for NULL)."""
    return {a: [vocab[a][i] if i != NULL else "any" for i in labels[:, k].tolist()] for k, a in enumerate(vocab)}


@torch.no_grad()
def condition_points(model: Any, combinations: torch.Tensor | None = None) -> tuple[torch.Tensor, pd.DataFrame]:
    """Condition vectors (M, D) and a frame describing them: every single value, then every combination.

    A value's point is the condition {attribute: value, every other attribute: any}, i.e. the learned value
    vector plus the other attributes' null vectors, so values and combinations live in the same space.
    """
    vocab = model.vocab
    rows, kinds, attrs = [], [], []
    for k, (attr, values) in enumerate(vocab.items()):
        for i in range(len(values)):
            row = [NULL] * len(vocab)
            row[k] = i
            rows.append(row)
            kinds.append("value")
            attrs.append(attr)
    labels = torch.tensor(rows, dtype=torch.long).reshape(-1, len(vocab))
    n_values = labels.shape[0]
    if combinations is not None and len(combinations):
        labels = torch.cat([labels, combinations.long()])
        kinds += ["combination"] * len(combinations)
        attrs += ["(combination)"] * len(combinations)
    names = _names(labels, vocab)
    text = [", ".join(f"{a}={names[a][j]}" for a in vocab if names[a][j] != "any") or "(no condition)"
            for j in range(labels.shape[0])]
    frame = pd.DataFrame({"kind": kinds, "attribute": attrs, "label": text, **names,
                          "combination": [-1] * n_values + list(range(labels.shape[0] - n_values))})
    return model.condition(labels).float(), frame
