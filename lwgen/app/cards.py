"""What a Models-page card says about a checkpoint: size, cost, schedule, training record and metrics."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..io import read_json_object
from ..models import count_parameters, forward_gmacs
from ..record import CheckpointRecord


def model_summary(model: Any) -> dict[str, Any]:
    """Parameters, GMAC per forward (per sample), resolution, schedule and training progress of a loaded model."""
    record = CheckpointRecord.of(model)
    out: dict[str, Any] = {"kind": record.kind}
    if out["kind"] == "diffusion":
        u = model.unet.config
        x = torch.zeros(1, u.in_channels, u.resolution, u.resolution)
        t, c = torch.zeros(1, dtype=torch.long), torch.zeros(1, model.embedder.config.dim)
        ae = getattr(model, "autoencoder", None)
        out.update(parameters=count_parameters(model), gmacs=forward_gmacs(model.unet, x, t, c),
                   resolution=model.resolution, latent=(u.in_channels, u.resolution) if ae is not None else None,
                   autoencoder_parameters=count_parameters(ae) if ae is not None else 0,
                   schedule=model.schedule.name, prediction=model.schedule.prediction,
                   attributes={a: len(v) for a, v in model.vocab.items()})
    elif out["kind"] == "upscaler":
        out.update(parameters=count_parameters(model), gmacs=forward_gmacs(model.net, torch.zeros(1, 3, 64, 64)),
                   scale=model.net.config.scale)
    else:
        out.update(parameters=count_parameters(model) if isinstance(model, torch.nn.Module) else None)
    out.update(steps=record.total_steps, images_seen=record.total_images, seconds=record.total_seconds,
               final_loss=record.progress.final_loss)
    if record.continued is not None:  # continued from another checkpoint
        out["started_from"] = record.continued.checkpoint
    return out


def _flatten(prefix: str, value: Any, out: list[tuple[str, str]]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(value, float):
        out.append((prefix, f"{value:.4g}"))
    elif isinstance(value, list) and len(value) > 8:
        out.append((prefix, f"[{len(value)} values]"))
    else:
        out.append((prefix, str(value)))


_SKIP = {"checkpoint", "classifier", "kind", "warnings"}


def eval_files(folder: str | Path) -> dict[str, dict[str, Any]]:
    """The scores beside a checkpoint: {"": eval.json, "group": eval-group.json, ...} (`lwgen eval --condition X
    --out <checkpoint>/eval-X.json`), the readable ones only."""
    out = {}
    for path in sorted(Path(folder).glob("eval*.json")):
        stem = path.stem
        if stem == "eval" or stem.startswith("eval-"):
            data = read_json_object(path)
            if data is not None:
                out[stem[5:]] = data
    return out


def eval_warnings(folder: str | Path) -> list[str]:
    """The warnings of the scores beside a checkpoint (a classifier too weak to judge an attribute), each once."""
    out: list[str] = []
    for data in eval_files(folder).values():
        out += [w for w in data.get("warnings") or [] if isinstance(w, str) and w not in out]
    return out


def metric_rows(config: dict[str, Any], folder: str | Path | None = None) -> list[tuple[str, str]]:
    """(name, formatted value) rows of a checkpoint's scores: config `metrics` and `accuracy` (classifiers), and
    the folder's eval.json and eval-CONDITION.json files (rows named "CONDITION alone: ..."); [] when none."""
    sources: list[tuple[str, Any]] = [("", config.get(k)) for k in ("metrics", "accuracy")]
    if folder is not None:
        for condition, data in eval_files(folder).items():
            label = f"{data.get('condition', condition)} alone: " if condition else ""
            sources.append((label.replace("text alone", "held-out text alone"), data))
    rows: list[tuple[str, str]] = []
    for label, source in sources:
        if isinstance(source, dict):
            mine: list[tuple[str, str]] = []
            _flatten("", {k: v for k, v in source.items() if k not in _SKIP and not k.startswith("per_")}, mine)
            rows += [(label + name, value) for name, value in mine]
    return rows


# (metric, what it measures, which way is better): the Models page's glossary of the scores `lwgen eval` writes
GLOSSARY: list[tuple[str, str, str]] = [
    ("fid", ("Fréchet distance between the domain classifier's features of samples and of real held-out images "
             "(not Inception features: compare only with other lwgen scores on the same classifier)"), "lower"),
    ("kid", "kernel distance on the same features; unbiased for small sets, kid_std is its spread over subsets",
     "lower"),
    ("precision", "share of samples that land among real images in feature space: realism", "higher"),
    ("recall", "share of real images that samples come near: variety", "higher"),
    ("<attribute>_top1 / _top5", ("how often the classifier's first (first five) guesses for a sample hold the value "
                                  "it was asked for; real_<attribute>_top1 is the same on real images, the ceiling"),
     "higher"),
    ("steering", ("given one attribute alone: how much more alike samples of one value are than samples of one seed "
                  "(above 0 the condition decides more than the seed); steering_ratio compares it with real "
                  "images, 1 = as distinct as real ones"), "higher"),
    ("images_per_s", "images generated (or up-scaled) per second on the machine that scored it", "higher"),
    ("psnr / ssim", "up-scaler: closeness to the original 256 px image; gain_db is the PSNR gain over bicubic",
     "higher"),
]


def human_count(n: int | None) -> str:
    """1234567 -> "1.23 M"."""
    if n is None:
        return "?"
    for div, unit in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
        if n >= div:
            return f"{n / div:.3g}{unit}"
    return str(n)


def one_per_class(labels: torch.Tensor, n: int = 16) -> list[int]:
    """Up to n row indices, the first row of each distinct label row, spread evenly over the classes."""
    firsts: dict[tuple, int] = {}
    for i, row in enumerate(labels.tolist()):
        firsts.setdefault(tuple(row), i)
    picks = list(firsts.values())
    if len(picks) <= n:
        return picks
    return [picks[round(k * (len(picks) - 1) / (n - 1))] for k in range(n)] if n > 1 else picks[:1]


def human_duration(seconds: float | None) -> str:
    """Seconds as "42 s", "12.5 min" or "1.6 h"."""
    if seconds is None:
        return "?"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
