"""Embedding spaces made visible: galleries of generated images, features, 2-D projections, interpolation."""
from .combinations import (
    combinations_from_config,
    combinations_from_data,
    default_classes,
    labels_from_rows,
)
from .features import pixel_features
from .gallery import Gallery, build_gallery, load_gallery, save_gallery, weights_hash
from .interpolate import lerp, slerp, walk
from .reduce import METHODS, PlaneMap, fit_plane, project
from .text import condition_points, search, text_embeddings

__all__ = [
    "combinations_from_config", "combinations_from_data", "default_classes", "labels_from_rows", "pixel_features",
    "Gallery", "build_gallery", "load_gallery", "save_gallery", "weights_hash", "lerp", "slerp", "walk", "METHODS",
    "PlaneMap", "fit_plane", "project", "condition_points", "search", "text_embeddings",
]
