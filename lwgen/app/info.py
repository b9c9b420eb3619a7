"""What a page can show of a checkpoint from its config and result files alone, before its weights load and
without importing torch: the Generate page draws its pickers from this while torch and the model load."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..checkpoint import CONFIG, CheckpointError, read_config
from ..io import read_json_object
from .catalog import Entry
from .conditions import config_combinations


@dataclass(frozen=True)
class GeneratorInfo:
    """A generator as its config.json describes it."""

    vocab: dict[str, list[str]]
    combinations: np.ndarray | None  # label rows (K, A) from the config; None for a config that lists none
    takes_text: bool
    resolution: int  # side of the generated images in pixels


@functools.lru_cache(maxsize=16)
def _generator_info(path: str, stamp: str) -> GeneratorInfo:
    config = read_config(Path(path))
    try:
        vocab = {str(a): [str(v) for v in values] for a, values in config["vocab"].items()}
        side = int(config["unet"]["resolution"])
        autoencoder = config.get("autoencoder")
        if autoencoder:  # the autoencoder halves the side once per level after the first (AutoencoderConfig.factor)
            side *= 2 ** (len(autoencoder["channels"]) - 1)
        takes_text = int(config.get("text_dim") or 0) > 0
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{Path(path) / CONFIG}: not a generator's config ({type(e).__name__}: {e})") from None
    return GeneratorInfo(vocab, config_combinations(config), takes_text, side)


def generator_info(entry: Entry) -> GeneratorInfo:
    """A diffusion checkpoint's vocabulary, combinations, text input and image side, read once per file version;
    CheckpointError when its config cannot say them."""
    return _generator_info(str(entry.path), entry.stamp)


def weak_values(folder: str | Path, attribute: str, ratio: float = 0.75) -> dict[str, tuple[float, float]]:
    """Values of `attribute` whose samples, given that value alone, the classifier recognises less than `ratio`
    times as often as real images of it ({value: (sample top-1, real top-1)}), from eval-ATTRIBUTE.json."""
    data = read_json_object(Path(folder) / f"eval-{attribute}.json") or {}
    per = data.get(f"per_{attribute}") or {}
    weak = {}
    for value, acc in per.items():
        if not isinstance(acc, dict):
            continue
        sample, real = acc.get("sample_top1"), acc.get("real_top1")
        if isinstance(sample, (int, float)) and isinstance(real, (int, float)) and real > 0 and sample < ratio * real:
            weak[value] = (float(sample), float(real))
    return weak
