"""Cache of decoded uint8 images as safetensors under <root>/.lwgen-cache/."""
from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..io import atomic_write_text, temp_path_for

CACHE_DIR = ".lwgen-cache"
FORMAT = "lwgen-images-1"


def cache_path(root: Path, csv_path: Path, file_column: str, size: int, fit: str, files: list[str],
               stats: list[tuple[int, int]]) -> Path:
    """Return the cache file for these inputs (key hashes CSV identity, options and every file's mtime+size)."""
    st = csv_path.stat()
    ident = {
        "format": FORMAT,
        "csv": str(csv_path.resolve()),
        "csv_stat": [st.st_mtime_ns, st.st_size],
        "file_column": file_column,
        "size": size,
        "fit": fit,
        "files": files,
        "stats": stats,
    }
    key = hashlib.sha1(json.dumps(ident, separators=(",", ":")).encode("utf-8")).hexdigest()[:20]
    return root / CACHE_DIR / f"{size}px-{fit}-{key}.safetensors"


def read_cache(path: Path, files: list[str], size: int) -> tuple[torch.Tensor, dict[int, str]] | None:
    """Return (images of the decodable files, {index: error} of the others), or None if absent or invalid."""
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != FORMAT or json.loads(meta["files"]) != files:
                raise ValueError("cache does not match the file list")
            failed = {int(k): str(v) for k, v in json.loads(meta["failed"]).items()}
            images = f.get_tensor("images")
        if images.dtype != torch.uint8 or tuple(images.shape) != (len(files) - len(failed), 3, size, size):
            raise ValueError(f"unexpected cached tensor {images.dtype} {tuple(images.shape)}")
        return images, failed
    except Exception as e:  # any unreadable cache is rebuilt
        print(f"warning: ignoring unusable image cache {path} ({type(e).__name__}: {e})", file=sys.stderr)
        return None


def write_cache(path: Path, images: torch.Tensor, files: list[str], failed: dict[int, str], csv_path: Path) -> None:
    """Atomically write the cache file and its json file list; failures only warn."""
    meta = {"format": FORMAT, "files": json.dumps(files), "failed": json.dumps({str(k): v for k, v in failed.items()})}
    tmp = None
    try:
        tmp = temp_path_for(path)
        save_file({"images": images.contiguous()}, str(tmp), metadata=meta)
        os.replace(tmp, path)
        info = {"csv": str(csv_path), "count": len(files), "failed": len(failed), "files": files}
        atomic_write_text(path.with_suffix(".json"), json.dumps(info, indent=1))
    except OSError as e:
        print(f"warning: could not write image cache {path}: {e}", file=sys.stderr)
        if tmp is not None and tmp.exists():
            tmp.unlink()
