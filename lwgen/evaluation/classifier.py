"""Domain classifier: a small residual CNN with one head per attribute; its pooled features drive FID/KID/P-R."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_module,
    module_state,
    save_checkpoint,
)
from ..data import downsample, to_float

KIND = "classifier"


@dataclass
class ClassifierConfig:
    """Architecture: input side, channels per stage (each stage halves the side) and residual blocks per stage."""

    image_size: int = 64
    stem_channels: int = 24
    widths: tuple[int, ...] = (32, 64, 128, 256)
    blocks: tuple[int, ...] = (1, 1, 1, 1)
    norm: str = "batch"
    dropout: float = 0.1
    text_dim: int = 0  # > 0: a head that predicts the sentence embedding of each image's text (training only)

    def __post_init__(self) -> None:
        self.widths, self.blocks = tuple(self.widths), tuple(self.blocks)
        if len(self.widths) != len(self.blocks) or not self.widths:
            raise ValueError(f"widths {self.widths} and blocks {self.blocks} must be non-empty and of equal length")
        if self.image_size % 2 ** len(self.widths):
            raise ValueError(f"image_size {self.image_size} cannot be halved {len(self.widths)} times")
        if self.norm not in ("batch", "group"):
            raise ValueError(f"norm must be 'batch' or 'group', got {self.norm!r}")

    @property
    def feature_dim(self) -> int:
        return self.widths[-1]


def _norm(kind: str, channels: int) -> nn.Module:
    return nn.BatchNorm2d(channels) if kind == "batch" else nn.GroupNorm(min(8, channels), channels)


def _conv_norm_act(cin: int, cout: int, stride: int, norm: str) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), _norm(norm, cout), nn.SiLU())


class BasicBlock(nn.Module):
    """Pre-activation-free residual block: conv-norm-SiLU-conv-norm + identity, then SiLU (He et al. 2016)."""

    def __init__(self, channels: int, norm: str):
        super().__init__()
        self.body = nn.Sequential(_conv_norm_act(channels, channels, 1, norm),
                                  nn.Conv2d(channels, channels, 3, 1, 1, bias=False), _norm(norm, channels))
        nn.init.zeros_(self.body[-1].weight)  # each block starts as the identity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(x + self.body(x))


class Classifier(nn.Module):
    """x (B, 3, S, S) in [-1, 1] -> pooled features (B, F) and logits per attribute."""

    kind = KIND

    def __init__(self, config: ClassifierConfig, vocab: dict[str, list[str]]):
        super().__init__()
        if not vocab:
            raise ValueError("a classifier needs at least one attribute")
        self.config = c = config
        self.vocab = {a: list(v) for a, v in vocab.items()}
        self.attributes = list(self.vocab)
        layers: list[nn.Module] = [_conv_norm_act(3, c.stem_channels, 1, c.norm)]
        cin = c.stem_channels
        for width, n in zip(c.widths, c.blocks):
            layers.append(_conv_norm_act(cin, width, 2, c.norm))
            layers.extend(BasicBlock(width, c.norm) for _ in range(n))
            cin = width
        self.body = nn.Sequential(*layers)
        self.dropout = nn.Dropout(c.dropout)
        self.heads = nn.ModuleDict({a: nn.Linear(c.feature_dim, len(v)) for a, v in self.vocab.items()})
        self.text_head = nn.Linear(c.feature_dim, c.text_dim) if c.text_dim > 0 else None
        # {coarse attribute: (finer attribute, P(coarse value | finer value) (V_fine, V_coarse))}: see `combine`
        self.hierarchy: dict[str, tuple[str, torch.Tensor]] = {}
        self.checkpoint_config: dict[str, Any] = {}

    # --- forward ----------------------------------------------------------------------------------------
    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Bring images in [-1, 1] to the input side: area-downsample larger ones, bicubic-upsample smaller."""
        return resize_to(x.float(), self.config.image_size)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(features (B, F), {attribute: logits (B, V)}) of images already at the input side."""
        if x.shape[-2:] != (self.config.image_size,) * 2:
            raise ValueError(f"classifier expects {self.config.image_size} px input, got {tuple(x.shape[-2:])} "
                             f"(use prepare())")
        h = self.body(x).mean(dim=(2, 3))
        d = self.dropout(h)
        return h, {a: head(d) for a, head in self.heads.items()}

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate (globally pooled) features (B, F) of images in [-1, 1] at any side."""
        return self(self.prepare(x))[0]

    def logits(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """{attribute: scores (B, V)} of images in [-1, 1] at any side (`combine`d)."""
        return self.combine(self(self.prepare(x))[1])

    def combine(self, logits: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Score each coarse attribute of the hierarchy with both heads: its own log-probabilities plus the log of
        the finer head's probabilities summed into it (a subgroup tells its group), so the two heads agree."""
        if not self.hierarchy:
            return logits
        out = dict(logits)
        for coarse, (fine, p) in self.hierarchy.items():
            via = logits[fine].float().softmax(1) @ p
            out[coarse] = logits[coarse].float().log_softmax(1) + via.clamp_min(1e-6).log()
        return out

    @torch.no_grad()
    def embed(self, images: torch.Tensor, batch: int = 128) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Features and scores (`combine`d logits) of many images (uint8 or float in [-1, 1]) in eval mode, float32,
        batched."""
        was_training = self.training
        self.eval()
        feats, logits = [], {a: [] for a in self.attributes}
        try:
            for chunk in images.split(batch):
                x = to_float(chunk) if chunk.dtype == torch.uint8 else chunk
                f, lg = self(self.prepare(x))
                lg = self.combine(lg)
                feats.append(f.float())
                for a in self.attributes:
                    logits[a].append(lg[a].float())
        finally:
            self.train(was_training)
        if not feats:
            return torch.zeros(0, self.config.feature_dim), {a: torch.zeros(0, len(v)) for a, v in self.vocab.items()}
        return torch.cat(feats), {a: torch.cat(v) for a, v in logits.items()}

    # --- checkpoints ------------------------------------------------------------------------------------
    def config_dict(self) -> dict[str, Any]:
        out = {"kind": self.kind, "architecture": dataclasses.asdict(self.config), "vocab": self.vocab,
               "feature_dim": self.config.feature_dim}
        if self.hierarchy:
            out["hierarchy"] = {coarse: {"from": fine, "p": _rows(p)} for coarse, (fine, p) in self.hierarchy.items()}
        return out

    def set_hierarchy(self, hierarchy: dict[str, Any], source: str = "config") -> None:
        """Install a hierarchy as config.json stores it ({coarse: {"from": fine, "p": rows}}), checking its shape."""
        self.hierarchy = {}
        for coarse, item in hierarchy.items():
            fine = item.get("from") if isinstance(item, dict) else None
            if coarse not in self.vocab or fine not in self.vocab:
                raise CheckpointError(f"{source}: hierarchy names unknown attributes {coarse!r} / {fine!r}")
            p = torch.tensor(item.get("p", []), dtype=torch.float32)
            if p.shape != (len(self.vocab[fine]), len(self.vocab[coarse])):
                raise CheckpointError(f"{source}: hierarchy {fine} -> {coarse} has shape {tuple(p.shape)}, expected "
                                      f"{(len(self.vocab[fine]), len(self.vocab[coarse]))}")
            self.hierarchy[coarse] = (fine, p)

    @classmethod
    def from_config(cls, config: dict[str, Any], source: str = "config") -> Classifier:
        if config.get("kind") != KIND:
            raise CheckpointError(f"{source}: not a classifier checkpoint (kind={config.get('kind')!r})")
        try:
            arch = ClassifierConfig(**config["architecture"])
            model = cls(arch, config["vocab"])
            model.set_hierarchy(config.get("hierarchy") or {}, source)
            return model
        except KeyError as e:
            raise CheckpointError(f"{source}: config.json lacks {e}") from None
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"{source}: invalid classifier architecture in config.json ({e})") from None

    @classmethod
    def from_checkpoint(cls, folder: str | Path) -> Classifier:
        """Load a classifier folder (model.safetensors + config.json) in float32, eval mode."""
        config, tensors = load_checkpoint(Path(folder))
        model = cls.from_config(config, str(folder))
        state = module_state(tensors, "model") or module_state(tensors, "ema")
        if not state:
            raise CheckpointError(f"{folder}: no 'model.*' tensors in model.safetensors")
        load_module(model, state, str(folder))
        model.checkpoint_config = config
        return model.eval()

    def save(self, folder: str | Path, extra: dict[str, Any] | None = None, dtype: torch.dtype = torch.float16) -> None:
        """Write model.safetensors (floating tensors cast to dtype) and config.json (+ extra keys), atomically."""
        tensors = {f"model.{k}": v.to(dtype) if v.is_floating_point() else v for k, v in self.state_dict().items()}
        config = {**self.config_dict(), **(extra or {}), "dtype": str(dtype).removeprefix("torch.")}
        save_checkpoint(Path(folder), tensors, config)


def _rows(p: torch.Tensor) -> list[list[float]]:
    """A probability table as config.json keeps it: nested lists, 6 decimals."""
    return [[round(float(v), 6) for v in row] for row in p.tolist()]


def derive_hierarchy(labels: torch.Tensor, vocab: dict[str, list[str]], share: float = 0.9
                     ) -> dict[str, dict[str, Any]]:
    """Pairs of attributes where a finer one all but decides a coarser one in `labels` (N, A) (as a subgroup
    decides its group: for at least `share` of the rows the coarse value is the one most common with the row's
    fine value), as {coarse: {"from": fine, "p": P(coarse | fine) rows}}; the finest such attribute per coarse one.
    """
    names = list(vocab)
    out: dict[str, dict[str, Any]] = {}
    for ci, coarse in enumerate(names):
        best = None
        for fi, fine in enumerate(names):
            if fi == ci or len(vocab[fine]) <= len(vocab[coarse]):
                continue
            both = (labels[:, fi] >= 0) & (labels[:, ci] >= 0)
            if not both.any():
                continue
            counts = torch.zeros(len(vocab[fine]), len(vocab[coarse]))
            counts.index_put_((labels[both, fi], labels[both, ci]), torch.ones(int(both.sum())), accumulate=True)
            if counts.max(1).values.sum() < share * counts.sum():
                continue
            rows = counts.sum(1, keepdim=True)
            p = torch.where(rows > 0, counts / rows.clamp_min(1), torch.full_like(counts, 1 / len(vocab[coarse])))
            if best is None or len(vocab[fine]) > len(vocab[best[0]]):
                best = (fine, p)
        if best is not None:
            out[coarse] = {"from": best[0], "p": _rows(best[1])}
    return out


def resize_to(x: torch.Tensor, size: int) -> torch.Tensor:
    """Square float images to size x size: area downsampling by an integer factor, bicubic up-sampling otherwise."""
    side = x.shape[-1]
    if side == size:
        return x
    if side > size and side % size == 0:
        return downsample(x, side // size)
    if side > size:
        return F.interpolate(x, size=(size, size), mode="area")
    return F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False).clamp(-1, 1)
