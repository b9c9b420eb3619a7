"""Data loading, caching and demo data builders."""
from .dataset import ImageTable, class_balanced_weights
from .emoji import build_emoji
from .images import DataError, downsample, image_grid, load_image, to_float, to_tensor, to_uint8
from .synthetic import make_shapes

__all__ = [
    "DataError",
    "load_image",
    "to_tensor",
    "downsample", "image_grid", "to_float", "to_uint8",
    "ImageTable",
    "class_balanced_weights",
    "build_emoji",
    "make_shapes",
]
