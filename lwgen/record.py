"""What a checkpoint's config.json says about how it was made, typed: the training progress, the data it saw, the
checkpoint it continued from and the text it takes. `CheckpointRecord.of(model)` reads it from any loaded model;
a missing or malformed entry reads as empty, never as an error (the model's own sections are validated on load).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class Progress:
    """Steps, images and wall time of one training run, and its loss history [(step, loss, seconds), ...]."""

    step: int | None = None
    images_seen: int | None = None
    wall_time_s: float | None = None
    processes: int = 1
    loss_history: tuple[tuple[float, ...], ...] = ()

    @classmethod
    def parse(cls, value: Any) -> Progress:
        d = _dict(value)
        history = tuple(tuple(float(x) for x in row) for row in d.get("loss_history") or []
                        if isinstance(row, (list, tuple)) and all(_num(x) is not None for x in row))
        return cls(_int(d.get("step")), _int(d.get("images_seen")), _num(d.get("wall_time_s")),
                   _int(d.get("processes")) or 1, history)

    @property
    def final_loss(self) -> float | None:
        return self.loss_history[-1][1] if self.loss_history and len(self.loss_history[-1]) > 1 else None


@dataclass(frozen=True)
class Continued:
    """The checkpoint a run started from (`lwgen train diffusion --init`) and what had gone into it."""

    checkpoint: str
    steps: int = 0
    images_seen: int = 0
    wall_time_s: float = 0.0  # of that checkpoint and everything it continued in turn

    @classmethod
    def parse(cls, value: Any) -> Continued | None:
        d = _dict(value)
        if not d.get("checkpoint"):
            return None
        total = _num(d.get("total_wall_time_s")) or _num(d.get("wall_time_s")) or 0.0
        return cls(str(d["checkpoint"]), _int(d.get("steps")) or 0, _int(d.get("images_seen")) or 0, total)


@dataclass(frozen=True)
class CheckpointRecord:
    """The training record of a checkpoint (config.json beyond the architecture)."""

    kind: str
    vocab: dict[str, list[str]] = field(default_factory=dict)
    attributes: tuple[str, ...] = ()
    data_folder: str | None = None
    data_images: int | None = None
    progress: Progress = field(default_factory=Progress)
    continued: Continued | None = None
    text_column: str | None = None  # the CSV column the prompts were trained on (None: attribute values)
    text_encoder: str | None = None  # None: the generator takes no prompts
    train: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, config: dict[str, Any]) -> CheckpointRecord:
        vocab = {str(k): [str(x) for x in v] for k, v in _dict(config.get("vocab")).items() if isinstance(v, list)}
        data = _dict(config.get("data"))
        text = _dict(config.get("text"))
        attributes = config.get("attributes") if isinstance(config.get("attributes"), list) else list(vocab)
        return cls(str(config.get("kind", "unknown")), vocab, tuple(map(str, attributes)),
                   str(data["folder"]) if data.get("folder") else None, _int(data.get("images")),
                   Progress.parse(config.get("progress")), Continued.parse(config.get("init")),
                   str(text["column"]) if text.get("column") else None,
                   str(text["encoder"]) if text.get("encoder") else None, _dict(config.get("train")))

    @classmethod
    def of(cls, model: Any) -> CheckpointRecord:
        """The record of a loaded model (one that did not come from a checkpoint has an empty one)."""
        return cls.parse(getattr(model, "checkpoint_config", None) or {"kind": getattr(model, "kind", "unknown")})

    @property
    def total_steps(self) -> int | None:
        """Steps of this run plus those of the checkpoints it continued."""
        if self.progress.step is None:
            return None
        return self.progress.step + (self.continued.steps if self.continued else 0)

    @property
    def total_images(self) -> int | None:
        if self.progress.images_seen is None:
            return None
        return self.progress.images_seen + (self.continued.images_seen if self.continued else 0)

    @property
    def total_seconds(self) -> float | None:
        if self.progress.wall_time_s is None:
            return None
        return self.progress.wall_time_s + (self.continued.wall_time_s if self.continued else 0.0)
