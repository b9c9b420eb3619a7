"""Checkpoint folders: model.safetensors + config.json, written atomically and loaded without pickle."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .io import atomic_write, atomic_write_text

WEIGHTS, CONFIG, TRAIN_STATE = "model.safetensors", "config.json", "train_state.safetensors"


class CheckpointError(ValueError):
    """A checkpoint folder is missing, unreadable or does not match its config."""


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temporary file + rename)."""
    atomic_write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def write_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Write a safetensors file atomically."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def read_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a safetensors file and its string metadata."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except Exception as e:  # safetensors raises its own error types for truncated or foreign files
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None


def save_checkpoint(folder: Path, tensors: dict[str, torch.Tensor], config: dict[str, Any]) -> None:
    """Write weights then config, each atomically."""
    folder = Path(folder)
    write_tensors(folder / WEIGHTS, tensors)
    write_json(folder / CONFIG, config)


def read_config(folder: Path) -> dict[str, Any]:
    """Read config.json of a checkpoint folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: checkpoint folder not found")
    cfg_path = folder / CONFIG
    if not cfg_path.is_file():
        raise CheckpointError(f"{folder}: no {CONFIG} (is this a checkpoint folder?)")
    try:
        config = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{cfg_path}: invalid JSON ({e})") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{cfg_path}: expected a JSON object")
    return config


def load_checkpoint(folder: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read (config, tensors) of a checkpoint folder."""
    config = read_config(folder)
    tensors, _ = read_tensors(Path(folder) / WEIGHTS)
    return config, tensors


def module_state(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors under `prefix.`, with the prefix removed."""
    n = len(prefix) + 1
    return {k[n:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def load_module(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load a state dict into module (in its dtypes), with a clear error when config and weights disagree."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    bad = [f"{k}: checkpoint {tuple(state[k].shape)} vs config {tuple(own[k].shape)}"
           for k in sorted(set(own) & set(state)) if state[k].shape != own[k].shape]
    if missing or unexpected or bad:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensors (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected tensors (e.g. {unexpected[0]})")
        if bad:
            parts.append(f"{len(bad)} shape mismatches (e.g. {bad[0]})")
        raise CheckpointError(f"{source}: weights do not match config.json: " + "; ".join(parts))
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})
