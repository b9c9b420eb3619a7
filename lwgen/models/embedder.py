"""Condition embedder: one nn.Embedding per annotation column and, optionally, a projected sentence embedding,
summed into one condition vector."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..conditioning import NULL


@dataclass
class EmbedderConfig:
    """Vocabulary sizes per attribute (in the order of the label columns) and the vector width."""

    attributes: list[str] = field(default_factory=list)
    vocab_sizes: list[int] = field(default_factory=list)
    dim: int = 256
    text_dim: int = 0  # width of the sentence embeddings taken as a condition; 0 = no text

    def __post_init__(self) -> None:
        if len(self.attributes) != len(self.vocab_sizes):
            raise ValueError("attributes and vocab_sizes must have the same length")


class AttributeEmbedder(nn.Module):
    """Sum of per-attribute embeddings; label NULL (-1) selects that attribute's learned null vector.

    The sum keeps every single value vector in the same space as the combined condition vectors, so value
    vectors, combinations and interpolations between them can all be fed to the networks.
    """

    def __init__(self, config: EmbedderConfig):
        super().__init__()
        self.config = config
        self.tables = nn.ModuleList(nn.Embedding(n, config.dim) for n in config.vocab_sizes)
        self.null = nn.Parameter(torch.zeros(len(config.vocab_sizes), config.dim))
        for table in self.tables:
            nn.init.normal_(table.weight, std=0.5)
        self.text_proj: nn.Linear | None = None
        if config.text_dim > 0:
            # zero at first, so that text can be added to a generator trained without it and change nothing yet
            self.text_proj = nn.Linear(config.text_dim, config.dim)
            nn.init.zeros_(self.text_proj.weight)
            nn.init.zeros_(self.text_proj.bias)
            self.null_text = nn.Parameter(torch.zeros(config.dim))

    def forward(self, labels: torch.Tensor, text: torch.Tensor | None = None) -> torch.Tensor:
        """labels (B, A) int64 with NULL for dropped attributes, text (B, text_dim) sentence embeddings with an
        all-zero row for "no text" -> condition (B, dim)."""
        if labels.dim() != 2 or labels.shape[1] != len(self.tables):
            raise ValueError(f"labels must have shape (B, {len(self.tables)}), got {tuple(labels.shape)}")
        out = torch.zeros(labels.shape[0], self.config.dim, device=labels.device)
        for a, table in enumerate(self.tables):
            col = labels[:, a]
            given = col != NULL
            vec = table(col.clamp(min=0))
            out = out + torch.where(given[:, None], vec, self.null[a].expand_as(vec))
        if self.text_proj is not None:
            if text is None:
                return out + self.null_text
            if text.shape != (labels.shape[0], self.config.text_dim):
                raise ValueError(f"text must have shape ({labels.shape[0]}, {self.config.text_dim}), "
                                 f"got {tuple(text.shape)}")
            given = text.abs().sum(dim=1, keepdim=True) > 0
            out = out + torch.where(given, self.text_proj(text.to(out.dtype)), self.null_text.expand_as(out))
        elif text is not None and bool((text != 0).any()):
            raise ValueError("this generator was trained without text; it cannot take a prompt")
        return out

    def value_vectors(self, attribute: int) -> torch.Tensor:
        """Every value vector of one attribute, (V, dim)."""
        return self.tables[attribute].weight.detach()
