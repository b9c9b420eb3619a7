"""Text in embedding space: sentence embeddings of row texts and semantic search over them; and the learned
condition vectors of each attribute value alone and of each known combination."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..models import NULL


def _names(labels: torch.Tensor, vocab: dict[str, list[str]]) -> dict[str, list[str]]:
    """Label columns -> value names ("any" for NULL)."""
    return {a: [vocab[a][i] if i != NULL else "any" for i in labels[:, k].tolist()] for k, a in enumerate(vocab)}


@torch.no_grad()
def condition_points(model: Any, combinations: Any = None) -> tuple[torch.Tensor, pd.DataFrame]:
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
        labels = torch.cat([labels, torch.as_tensor(combinations, dtype=torch.long)])
        kinds += ["combination"] * len(combinations)
        attrs += ["(combination)"] * len(combinations)
    names = _names(labels, vocab)
    text = [", ".join(f"{a}={names[a][j]}" for a in vocab if names[a][j] != "any") or "(no condition)"
            for j in range(labels.shape[0])]
    frame = pd.DataFrame({"kind": kinds, "attribute": attrs, "label": text, **names,
                          "combination": [-1] * n_values + list(range(labels.shape[0] - n_values))})
    return model.condition(labels).float(), frame


def text_embeddings(texts: Sequence[str], cache_dir: Path | None = None) -> torch.Tensor:
    """Sentence embeddings (N, 384) of texts, each distinct text encoded once; "" gives a zero row ("no text").

    The sentence encoder (lwgen.text) is imported and loaded here, on first use only.
    """
    from ..text import cached_encode  # lazy: the encoder loads on the first text only

    texts = [str(t).strip() for t in texts]
    unique = sorted(set(texts))
    index = {t: i for i, t in enumerate(unique)}
    vectors = cached_encode(unique, cache_dir)  # (U, 384)
    return vectors[[index[t] for t in texts]] if texts else vectors[:0]


def search(query_vec: torch.Tensor | np.ndarray, text_vecs: torch.Tensor | np.ndarray,
           k: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Semantic search: the k rows of text_vecs (N, D) most cosine-similar to query_vec (D,) or (1, D), best first.

    Returns (indices, scores); rows without text (all zero) are never returned, ties keep row order.
    """
    q = np.asarray(query_vec, dtype=np.float64).reshape(-1)
    x = np.asarray(text_vecs, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != q.shape[0]:
        raise ValueError(f"the query has {q.shape[0]} dimensions but the texts have shape {tuple(x.shape)}")
    qn = np.linalg.norm(q)
    if qn == 0:
        raise ValueError("the query is empty: type a few words")
    norms = np.linalg.norm(x, axis=1)
    rows = np.flatnonzero(norms > 0)
    scores = x[rows] @ q / (norms[rows] * qn)
    order = np.argsort(-scores, kind="stable")[:max(0, int(k))]
    return rows[order], scores[order]
