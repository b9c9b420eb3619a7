"""Image features for projections: downsampled pixels, or a trained classifier's features when one exists."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..data import to_float


def pixel_features(images: torch.Tensor, size: int = 16) -> np.ndarray:
    """uint8 images (N, 3, R, R) -> area-downsampled pixels in [0, 1], flattened (N, 3 * size * size)."""
    x = images.float() / 255.0
    if x.shape[-1] != size:
        x = F.adaptive_avg_pool2d(x, size)
    return x.flatten(1).numpy().astype(np.float32)


def load_classifier(folder: str | Path) -> Any | None:
    """The classifier checkpoint in folder (lwgen.evaluation.Classifier), or None when absent or unusable."""
    if not (Path(folder) / "config.json").is_file():
        return None
    try:
        from ..evaluation import Classifier

        return Classifier.from_checkpoint(folder)
    except Exception:  # any failure (module missing, other kind, bad weights) means "pixels only", never a crash
        return None


@torch.no_grad()
def classifier_features(classifier: Any, images: torch.Tensor, batch: int = 128) -> np.ndarray:
    """uint8 images (N, 3, R, R) -> the classifier's pooled features (N, F) as float32."""
    if hasattr(classifier, "embed"):
        return classifier.embed(images, batch=batch)[0].float().numpy()
    outs = [torch.as_tensor(classifier.features(to_float(chunk))).float().flatten(1)
            for chunk in images.split(batch)]
    return torch.cat(outs).numpy() if outs else np.zeros((0, 0), np.float32)
