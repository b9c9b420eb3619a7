"""Data loading, caching and demo data builders."""
from .dataset import ImageTable, class_balanced_weights
from .emoji import build_emoji
from .images import DataError, downsample, load_image, to_tensor
from .synthetic import make_shapes

__all__ = [
    "DataError",
    "load_image",
    "to_tensor",
    "downsample",
    "ImageTable",
    "class_balanced_weights",
    "build_emoji",
    "make_shapes",
]
