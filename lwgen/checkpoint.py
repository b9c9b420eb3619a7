"""Checkpoint folders: model.safetensors + config.json, written atomically and loaded without pickle.

Every save stamps the weights' safetensors metadata, config.json (and the training state written with them) with
one save id, and replaces the files together; a reader that finds two stamps that differ (a save in progress, or
one killed between two renames) gets a clear error instead of a config one save behind its weights. Files saved
before stamps existed have none and are accepted as they are.
"""
from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safetensors import safe_open

from . import limits
from .io import atomic_write, atomic_write_text, commit, prepare

if TYPE_CHECKING:  # torch loads with the first tensor written, not with this module (the app's catalog uses it)
    import torch

WEIGHTS, CONFIG, TRAIN_STATE = "model.safetensors", "config.json", "train_state.safetensors"
STAMP = "save_stamp"  # key of the save id in config.json and in the safetensors metadata


class CheckpointError(ValueError):
    """A checkpoint folder is missing, unreadable or does not match its config."""


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temporary file + rename)."""
    atomic_write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def _tensor_writer(path: Path, tensors: dict[str, torch.Tensor],
                   metadata: dict[str, str] | None) -> Callable[[str], None]:
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}

    def write(tmp: str) -> None:
        from safetensors.torch import save_file

        try:
            save_file(tensors, tmp, metadata=metadata)
        except OSError:
            raise
        except Exception as e:  # noqa: BLE001 - SafetensorError wraps the OS error (e.g. os error 28: the disk is full)
            text = str(e)
            cause = "no space left on the disk" if "os error 28" in text else f"cannot be written ({text})"
            raise OSError(28 if "os error 28" in text else None, cause, str(path)) from None

    return write


def write_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Write a safetensors file atomically."""
    atomic_write(path, _tensor_writer(Path(path), tensors, metadata))


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


def new_stamp(step: int | None = None) -> str:
    """A save id: the step (when there is one), the time and a random part."""
    return f"{'' if step is None else f'step-{step}-'}{time.time_ns()}-{uuid.uuid4().hex[:8]}"


def save_checkpoint(folder: Path, tensors: dict[str, torch.Tensor], config: dict[str, Any],
                    train_state: tuple[dict[str, torch.Tensor], dict[str, str]] | None = None,
                    stamp: str | None = None) -> str:
    """Write weights, config (and the training state) as one set: every file is written and fsynced under a
    temporary name first, all carry the same save stamp, then they are renamed into place together (the config
    last) and the folder is fsynced. Returns the stamp."""
    folder = Path(folder)
    stamp = stamp or new_stamp(config.get("progress", {}).get("step") if isinstance(config.get("progress"), dict)
                               else None)
    config = {**config, STAMP: stamp}
    jobs: list[tuple[Path, Callable[[str], None]]] = []
    if train_state is not None:
        state, meta = train_state
        jobs.append((folder / TRAIN_STATE, _tensor_writer(folder / TRAIN_STATE, state, {**meta, STAMP: stamp})))
    jobs.append((folder / WEIGHTS, _tensor_writer(folder / WEIGHTS, tensors, {STAMP: stamp})))
    text = (json.dumps(config, indent=2, default=str) + "\n").encode("utf-8")

    def write_config(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(text)

    jobs.append((folder / CONFIG, write_config))
    done: list[tuple[Path, Path]] = []
    try:
        for path, write in jobs:
            done.append((prepare(path, write), path))
        commit(done)
    finally:
        for tmp, _ in done:
            if tmp.exists():
                os.unlink(tmp)
    return stamp


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
    try:
        validate_config(config)
    except ValueError as e:
        raise CheckpointError(f"{cfg_path}: {e}") from None
    return config


def load_checkpoint(folder: Path, retries: int = 20) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read (config, tensors) of a checkpoint folder; both must come from the same save (see STAMP)."""
    for attempt in range(retries + 1):
        config = read_config(folder)
        tensors, meta = read_tensors(Path(folder) / WEIGHTS)
        a, b = config.get(STAMP), meta.get(STAMP)
        if a is None or b is None or a == b:  # no stamp: written before stamps existed
            return config, tensors
        if attempt < retries:
            time.sleep(0.05)  # a save is being renamed into place: read again
    raise CheckpointError(f"{folder}: {CONFIG} and {WEIGHTS} come from different saves ({a} vs {b}): the folder "
                          f"is being written, or a save was interrupted (resume the run to write a whole set)")


# --- config.json validation (types and ranges, before anything is built) -----------------------------------
def _int(section: dict, key: str, limit: str, where: str, low: int | None = None) -> None:
    if key in section:
        value = section[key]
        if low is not None and value == low and isinstance(value, int) and not isinstance(value, bool):
            return
        limits.check(limit, value, f"{where}{key}")


def _int_list(section: dict, key: str, limit: str, where: str) -> None:
    if key not in section:
        return
    value = section[key]
    if not isinstance(value, list) or not value:
        raise ValueError(f"{where}{key} must be a non-empty list of integers, got {value!r}")
    limits.check("levels", len(value), f"the length of {where}{key}")
    for i, v in enumerate(value):
        limits.check(limit, v, f"{where}{key}[{i}]")


def _float(section: dict, key: str, where: str, low: float | None = None, high: float | None = None) -> None:
    if key in section:
        limits.check_finite(section[key], f"{where}{key}", low, high)


def _section(config: dict, key: str) -> dict | None:
    value = config.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError(f"{key} must be an object, got {value!r}")
    return value


def validate_config(config: dict[str, Any]) -> None:
    """Check the types and ranges of the architecture keys of a config.json (LIMITS); ValueError names the key."""
    kind = config.get("kind")
    if kind is not None and not isinstance(kind, str):
        raise ValueError(f"kind must be a string, got {kind!r}")
    unet = _section(config, "unet")
    if unet is not None:
        w = "unet."
        _int(unet, "resolution", "resolution", w)
        _int(unet, "in_channels", "in_channels", w)
        _int(unet, "base_channels", "channels", w)
        _int_list(unet, "channel_mult", "channel_mult", w)
        if "attention_levels" in unet:
            levels = unet["attention_levels"]
            if not isinstance(levels, list) or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 8
                                                       for v in levels):
                raise ValueError(f"unet.attention_levels must be a list of level numbers, got {levels!r}")
        _int(unet, "num_res_blocks", "blocks", w)
        _int(unet, "unshuffle", "unshuffle", w)
        _int(unet, "cond_dim", "embedding", w)
        _int(unet, "emb_dim", "embedding", w)
        _int(unet, "groups", "groups", w)
        _int(unet, "head_dim", "embedding", w)
        _int(unet, "cond_tokens", "tokens", w, low=0)
        if isinstance(unet.get("base_channels"), int) and isinstance(unet.get("channel_mult"), list):
            limits.check("width", unet["base_channels"] * max(unet["channel_mult"]),
                         "unet.base_channels x max(unet.channel_mult)")
    schedule = _section(config, "schedule")
    if schedule is not None:
        for key in ("name", "prediction"):
            if key in schedule and not isinstance(schedule[key], str):
                raise ValueError(f"schedule.{key} must be a string, got {schedule[key]!r}")
        _int(schedule, "timesteps", "timesteps", "schedule.")
        for key in ("beta_start", "beta_end"):
            _float(schedule, key, "schedule.", 0.0, 1.0)
        _float(schedule, "cosine_s", "schedule.", 0.0, 1.0)
    ae = _section(config, "autoencoder")
    if ae is not None:
        _int_list(ae, "channels", "channels", "autoencoder.")
        _int(ae, "latent_channels", "in_channels", "autoencoder.")
        _int(ae, "blocks", "blocks", "autoencoder.")
        _int(ae, "groups", "groups", "autoencoder.")
        _float(ae, "latent_noise", "autoencoder.", 0.0, 10.0)
    up = _section(config, "upscaler")
    if up is not None:
        _int(up, "scale", "unshuffle", "upscaler.")
        _int(up, "channels", "channels", "upscaler.")
        _int(up, "num_blocks", "blocks", "upscaler.")
    for key in ("cond_dim", "text_dim"):
        _int(config, key, "embedding", "", low=0 if key == "text_dim" else None)
    vocab = config.get("vocab")
    if vocab is not None:
        if not isinstance(vocab, dict):
            raise ValueError(f"vocab must be an object of value lists, got {vocab!r}")
        for a, values in vocab.items():
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise ValueError(f"vocab.{a} must be a list of strings")
            limits.check("vocab_size", len(values), f"the number of values of vocab.{a}")


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
