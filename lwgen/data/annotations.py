"""Read and validate an annotation CSV: columns, split filter and 1-based row numbers."""
from __future__ import annotations

import csv as _csv
import os
from pathlib import Path

import pandas as pd

from .images import DataError

UNKNOWN = "unknown"


def resolve_csv(root: Path, csv: str | os.PathLike) -> Path:
    """Return the CSV path: absolute as given, else relative to root."""
    path = Path(csv).expanduser()
    return path if path.is_absolute() else root / path


def read_csv(path: Path) -> pd.DataFrame:
    """Read a CSV with every cell as a stripped string (empty cells are '')."""
    if not path.is_file():
        raise DataError(f"annotation CSV not found: {path}")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise DataError(f"annotation CSV {path} is empty (no header row)") from None
    except (pd.errors.ParserError, _csv.Error) as e:
        raise DataError(f"annotation CSV {path} cannot be parsed: {e}") from None
    except UnicodeDecodeError as e:
        raise DataError(f"annotation CSV {path} is not UTF-8 text: {e}") from None
    except OSError as e:
        raise DataError(f"annotation CSV {path} cannot be read: {e}") from None
    df.columns = [str(c).strip() for c in df.columns]
    df = df.fillna("").astype(str)
    return df.apply(lambda s: s.str.strip()) if len(df) else df


def require_columns(df: pd.DataFrame, path: Path, needed: list[str]) -> None:
    """Raise DataError naming the missing columns and listing the existing ones."""
    missing = [c for c in needed if c not in df.columns]
    if missing:
        names = ", ".join(repr(c) for c in missing)
        existing = ", ".join(repr(c) for c in df.columns)
        raise DataError(f"annotation CSV {path}: column {names} not found; columns are: {existing}")


def read_annotations(
    root: Path, csv: str | os.PathLike, file_column: str, attributes: list[str], split: str | None
) -> tuple[Path, pd.DataFrame, list[int]]:
    """Load and validate the CSV; return (csv path, rows kept by the split filter, their CSV row numbers)."""
    if not root.is_dir():
        raise DataError(f"data folder not found: {root}")
    path = resolve_csv(root, csv)
    df = read_csv(path)
    if len(set(attributes)) != len(attributes):
        raise DataError(f"attributes must be distinct, got {attributes}")
    require_columns(df, path, [file_column, *attributes])
    if split is not None and "split" not in df.columns:
        existing = ", ".join(repr(c) for c in df.columns)
        raise DataError(f"annotation CSV {path}: no 'split' column to keep the rows with split == {split!r} "
                        f"(columns are: {existing}); pass --split '' to use all rows")
    if len(df) == 0:
        raise DataError(f"annotation CSV {path} has a header but no data rows")
    rows = list(range(2, len(df) + 2))
    if split is not None:
        keep = (df["split"] == split).to_numpy()
        if not keep.any():
            present = ", ".join(repr(v) for v in sorted(df["split"].unique()))
            raise DataError(f"annotation CSV {path}: no rows with split == {split!r}; split values are: {present}")
        rows = [r for r, k in zip(rows, keep) if k]
        df = df[keep]
    return path, df.reset_index(drop=True), rows


def cell_value(value: str) -> str:
    """Map an attribute cell to its vocabulary value (empty -> 'unknown')."""
    return value if value != "" else UNKNOWN
