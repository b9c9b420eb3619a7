"""ImageTable: decoded images + integer labels loaded from an image folder and annotation CSV."""
from __future__ import annotations

import os
import stat
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from ..io import atomic_write_text
from .annotations import UNKNOWN, cell_value, read_annotations
from .cache import CACHE_DIR, cache_path, read_cache, write_cache
from .images import BadImage, DataError, decode_image


def _bad_row(row: int, file: str, reason: str) -> str:
    """Format the standard message for a row whose image is unusable."""
    return f"row {row}: file '{file}': {reason}"


OUTSIDE = "path leads outside the data folder"


def _file_kind(mode: int) -> str:
    """What a path that is not a regular file is."""
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "a special file"


def within(root: Path, file: str) -> bool:
    """Whether root/file stays inside root: not absolute, and no '..' leads above it (resolved, with symbolic
    links inside the folder followed, and checked again after them)."""
    if Path(file).is_absolute() or Path(file).drive:
        return False
    parts = Path(os.path.normpath(file)).parts
    if parts and parts[0] == "..":
        return False
    base = root.resolve()
    target = (root / file).resolve()
    # a symbolic link placed in the data folder by its owner may point elsewhere; '..' after it may not
    return target.is_relative_to(base) or not any(p == ".." for p in Path(file).parts)


def _check_files(root: Path, files: list[str], rows: list[int], file_column: str, skip_bad: bool,
                 skipped: list[dict]) -> tuple[list[int], list[tuple[int, int]]]:
    """Quickly stat every file; return (indices of present files, their (mtime_ns, size)).

    A path must stay inside the data folder (no absolute path, no '../'): one that leads out is a bad row.
    """
    keep, stats = [], []
    for i, (f, r) in enumerate(zip(files, rows)):
        reason = None
        if f == "":
            reason = f"column '{file_column}' is empty"
            if not skip_bad:
                raise DataError(f"row {r}: {reason}")
        elif not within(root, f):
            reason = OUTSIDE
        else:
            try:
                st = os.stat(root / f)
                if not stat.S_ISREG(st.st_mode):
                    reason = f"not a regular file ({_file_kind(st.st_mode)})"
            except FileNotFoundError:
                reason = "file not found"
            except OSError as e:
                reason = f"cannot be read ({e.strerror or e})"
        if reason is not None:
            if not skip_bad:
                raise DataError(_bad_row(r, f, reason))
            skipped.append({"row": r, "file": f, "error": reason})
            continue
        keep.append(i)
        stats.append((st.st_mtime_ns, st.st_size))
    return keep, stats


def _decode_all(paths: list[Path], size: int, fit: str, progress: bool, workers: int,
                on_error) -> tuple[torch.Tensor, dict[int, str]]:
    """Decode images in order into one uint8 tensor; on_error(index, reason) may raise to stop early."""
    images = torch.empty((len(paths), 3, size, size), dtype=torch.uint8)
    failed: dict[int, str] = {}

    def one(path: Path) -> np.ndarray | str:
        try:
            return np.array(decode_image(path, size, fit))
        except BadImage as e:
            return str(e)

    pool = ThreadPoolExecutor(workers) if workers > 1 else None
    try:
        results = pool.map(one, paths) if pool else map(one, paths)
        n = 0
        with tqdm(total=len(paths), desc=f"decode images {size}px", disable=not progress, unit="img") as bar:
            for i, res in enumerate(results):
                if isinstance(res, str):
                    on_error(i, res)
                    failed[i] = res
                else:
                    images[n] = torch.from_numpy(res).permute(2, 0, 1)
                    n += 1
                bar.update(1)
    finally:
        if pool:
            pool.shutdown(wait=True, cancel_futures=True)
    return images[:n].clone() if failed else images, failed


def _write_skipped_report(root: Path, skipped: list[dict], total: int) -> None:
    """Write <root>/.lwgen-cache/skipped.csv and print a warning with its path."""
    path = root / CACHE_DIR / "skipped.csv"
    try:
        atomic_write_text(path, pd.DataFrame(skipped, columns=["row", "file", "error"]).to_csv(index=False))
        where = f"; report: {path}"
    except OSError as e:
        where = f" (could not write report {path}: {e})"
    print(f"warning: skipped {len(skipped)} of {total} rows with unusable image files{where}", file=sys.stderr)


def _as_indices(selection: Any, n: int) -> torch.Tensor:
    """Turn a boolean mask or integer indices (list, array, tensor, range) into an int64 index tensor."""
    if isinstance(selection, (pd.Series, pd.Index)):
        selection = selection.to_numpy()
    if isinstance(selection, range):
        selection = list(selection)
    t = selection if isinstance(selection, torch.Tensor) else torch.as_tensor(np.asarray(selection))
    if t.numel() == 0:
        return torch.zeros(0, dtype=torch.long)
    if t.dtype == torch.bool:
        if t.shape != (n,):
            raise ValueError(f"boolean mask must have shape ({n},), got {tuple(t.shape)}")
        return t.nonzero().flatten()
    if t.is_floating_point() or t.dim() != 1:
        raise ValueError("selection must be a 1-D boolean mask or integer indices")
    t = t.long()
    if (t >= n).any() or (t < -n).any():
        raise IndexError(f"index out of range for a table of {n} rows")
    return t % n


@dataclass
class ImageTable:
    """Decoded images, integer labels per attribute and the CSV rows they came from."""

    root: Path
    files: list[str]
    rows: list[int]
    attributes: list[str]
    vocab: dict[str, list[str]]
    labels: torch.Tensor
    images: torch.Tensor
    skipped: list[dict] = field(default_factory=list)
    extra: pd.DataFrame = field(default_factory=pd.DataFrame)

    @classmethod
    def load(
        cls,
        root: str | os.PathLike,
        attributes: Sequence[str],
        size: int = 64,
        csv: str | os.PathLike = "annotations.csv",
        file_column: str = "file",
        fit: str = "pad",
        skip_bad: bool = False,
        vocab: dict[str, list[str]] | None = None,
        cache: bool = True,
        progress: bool = True,
        split: str | None = None,
        workers: int = 2,
        report: bool = True,
    ) -> ImageTable:
        """Load images (size x size, uint8) and labels for the given attribute columns of root/csv.

        With `skip_bad`, unusable rows are listed in `skipped` (and, with `report`, in .lwgen-cache/skipped.csv);
        when no row is usable the DataError carries that list as `.skipped`.
        """
        root = Path(root).expanduser()
        attributes = list(attributes)
        if fit not in ("pad", "crop"):
            raise ValueError(f"fit must be 'pad' or 'crop', got {fit!r}")
        csv_path, df, rows = read_annotations(root, csv, file_column, attributes, split)
        files = df[file_column].tolist()
        values = {a: [cell_value(v) for v in df[a]] for a in attributes}
        if vocab is not None:
            values = _apply_vocab(values, vocab, rows)
        skipped: list[dict] = []
        keep, stats = _check_files(root, files, rows, file_column, skip_bad, skipped)
        k_files = [files[i] for i in keep]
        images, failed = _load_images(root, csv_path, file_column, size, fit, k_files, stats,
                                      [rows[i] for i in keep], skip_bad, cache, progress, workers)
        for j, reason in failed.items():
            skipped.append({"row": rows[keep[j]], "file": files[keep[j]], "error": reason})
        kept = [keep[j] for j in range(len(keep)) if j not in failed]
        skipped.sort(key=lambda s: s["row"])
        if skipped and report:
            _write_skipped_report(root, skipped, len(files))
        if not kept:
            error = DataError(f"annotation CSV {csv_path}: no rows with a usable image file")
            error.skipped = skipped
            raise error
        if vocab is None:
            vocab = {a: sorted(set(values[a][i] for i in kept)) for a in attributes}
        else:
            vocab = {a: list(vocab[a]) for a in attributes}
        lookup = {a: {v: k for k, v in enumerate(vocab[a])} for a in attributes}
        labels = torch.tensor([[lookup[a][values[a][i]] for a in attributes] for i in kept],
                              dtype=torch.int64).reshape(len(kept), len(attributes))
        return cls(root=root, files=[files[i] for i in kept], rows=[rows[i] for i in kept],
                   attributes=attributes, vocab=vocab, labels=labels, images=images, skipped=skipped,
                   extra=df.iloc[kept].reset_index(drop=True))

    def __len__(self) -> int:
        """Number of kept rows."""
        return len(self.files)

    def subset(self, mask_or_indices: Any) -> ImageTable:
        """Return the rows selected by a boolean mask or integer indices, with the same vocab."""
        idx = _as_indices(mask_or_indices, len(self))
        pick = idx.tolist()
        return ImageTable(root=self.root, files=[self.files[i] for i in pick], rows=[self.rows[i] for i in pick],
                          attributes=list(self.attributes), vocab={a: list(v) for a, v in self.vocab.items()},
                          labels=self.labels[idx], images=self.images[idx], skipped=list(self.skipped),
                          extra=self.extra.iloc[pick].reset_index(drop=True))

    def encode(self, values: dict[str, str]) -> list[int]:
        """Map {attribute: value name} for every attribute to label indices (attribute order)."""
        unknown = [k for k in values if k not in self.attributes]
        if unknown:
            raise DataError(f"unknown attribute {', '.join(map(repr, unknown))}; attributes are: "
                            f"{', '.join(map(repr, self.attributes))}")
        missing = [a for a in self.attributes if a not in values]
        if missing:
            raise DataError(f"missing value for attribute {', '.join(map(repr, missing))}; "
                            f"all of {', '.join(map(repr, self.attributes))} are needed")
        out = []
        for a in self.attributes:
            v = str(values[a])
            if v not in self.vocab[a]:
                raise DataError(f"unknown value {v!r} for attribute {a!r}; valid values are: "
                                f"{', '.join(map(repr, self.vocab[a]))}")
            out.append(self.vocab[a].index(v))
        return out

    def decode(self, label: Sequence[int] | torch.Tensor) -> dict[str, str]:
        """Map one label row (indices in attribute order) back to {attribute: value name}."""
        idx = [int(i) for i in label]
        if len(idx) != len(self.attributes):
            raise ValueError(f"expected {len(self.attributes)} label indices, got {len(idx)}")
        return {a: self.vocab[a][i] for a, i in zip(self.attributes, idx)}


def _apply_vocab(values: dict[str, list[str]], vocab: dict[str, list[str]], rows: list[int]) -> dict[str, list[str]]:
    """Map values outside a given vocab to 'unknown' (if in it) or raise DataError naming the row."""
    missing = [a for a in values if a not in vocab]
    if missing:
        raise DataError(f"vocab has no entry for attribute {', '.join(map(repr, missing))}; "
                        f"it has: {', '.join(map(repr, vocab))}")
    out = {}
    for a, col in values.items():
        known = set(vocab[a])
        fixed = []
        for r, v in zip(rows, col):
            if v not in known:
                if UNKNOWN not in known:
                    raise DataError(f"row {r}: column '{a}': value {v!r} is not in the vocabulary "
                                    f"({', '.join(map(repr, vocab[a]))})")
                v = UNKNOWN
            fixed.append(v)
        out[a] = fixed
    return out


def _load_images(root: Path, csv_path: Path, file_column: str, size: int, fit: str, files: list[str],
                 stats: list[tuple[int, int]], rows: list[int], skip_bad: bool, cache: bool, progress: bool,
                 workers: int) -> tuple[torch.Tensor, dict[int, str]]:
    """Decoded images of files (from the cache when valid) and {index: reason} for undecodable ones."""
    path = cache_path(root, csv_path, file_column, size, fit, files, stats) if cache else None
    hit = read_cache(path, files, size) if path is not None else None
    if hit is None:
        def on_error(i: int, reason: str) -> None:
            if not skip_bad:
                raise DataError(_bad_row(rows[i], files[i], reason))

        hit = _decode_all([root / f for f in files], size, fit, progress, workers, on_error)
        if path is not None:
            write_cache(path, hit[0], files, hit[1], csv_path)
    images, failed = hit
    if failed and not skip_bad:
        i = min(failed)
        raise DataError(_bad_row(rows[i], files[i], failed[i]))
    return images, failed


def class_balanced_weights(labels: torch.Tensor, column: int = 0, power: float = 0.5) -> torch.Tensor:
    """Per-sample weights proportional to count(class)**-power, normalised to sum to 1."""
    y = labels if labels.dim() == 1 else labels[:, column]
    if y.numel() == 0:
        raise ValueError("labels is empty")
    y = y.long()
    counts = torch.bincount(y).to(torch.float64)
    w = counts[y].pow(-power)
    return (w / w.sum()).to(torch.float32)
