"""Attribute embedder: one nn.Embedding per annotation column, summed into one condition vector."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

NULL = -1  # label index meaning "attribute not given" (classifier-free guidance / "any")


@dataclass
class EmbedderConfig:
    """Vocabulary sizes per attribute (in the order of the label columns) and the vector width."""

    attributes: list[str] = field(default_factory=list)
    vocab_sizes: list[int] = field(default_factory=list)
    dim: int = 256

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

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        """labels (B, A) int64 with NULL for dropped attributes -> condition (B, dim)."""
        if labels.dim() != 2 or labels.shape[1] != len(self.tables):
            raise ValueError(f"labels must have shape (B, {len(self.tables)}), got {tuple(labels.shape)}")
        out = torch.zeros(labels.shape[0], self.config.dim, device=labels.device)
        for a, table in enumerate(self.tables):
            col = labels[:, a]
            given = col != NULL
            vec = table(col.clamp(min=0))
            out = out + torch.where(given[:, None], vec, self.null[a].expand_as(vec))
        return out

    def value_vectors(self, attribute: int) -> torch.Tensor:
        """Every value vector of one attribute, (V, dim)."""
        return self.tables[attribute].weight.detach()
