"""How a condition is named, without torch: the "any" value, its label index, label rows from value names, and
the default guidance scale. The app's first page draws its condition pickers from these before torch loads."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

ANY = "any"  # the value that leaves an attribute unset
NULL = -1  # label index meaning "attribute not given" (classifier-free guidance / "any")
PROMPT_READER_FILE = "prompt-reader.safetensors"  # beside a generator trained with text (lwgen/prompt_reader.py)
DEFAULT_GUIDANCE = 10.0  # classifier-free guidance scale of the CLI, the app and evaluation (docs/experiments.md, 10)


def _label(value: Any, lookup: dict[str, int], size: int) -> int | None:
    """One cell (value name, index or "any") -> label index, or None when unknown."""
    if value is None or value == ANY:
        return NULL
    if isinstance(value, int) and not isinstance(value, bool):
        return value if NULL <= value < size else None
    return lookup.get(value) if isinstance(value, str) else None


def label_rows(rows: Iterable[Any], vocab: dict[str, list[str]]) -> list[tuple[int, ...]]:
    """Rows of value names, label indices or {attribute: value} dicts -> the distinct label rows, sorted; rows
    with an unknown value or the wrong length are dropped."""
    attrs = list(vocab)
    lookup = [{v: i for i, v in enumerate(vocab[a])} for a in attrs]
    out = set()
    for row in rows:
        if isinstance(row, dict):
            row = [row.get(a, ANY) for a in attrs]
        if not isinstance(row, (list, tuple)) or len(row) != len(attrs):
            continue
        labels = tuple(_label(value, lookup[a], len(vocab[attrs[a]])) for a, value in enumerate(row))
        if None not in labels:
            out.add(labels)
    return sorted(out)  # type: ignore[arg-type]  # None was filtered out above


def config_label_rows(config: dict[str, Any]) -> list[tuple[int, ...]] | None:
    """The `combinations` a checkpoint config lists, as label rows (see label_rows); None when it lists none."""
    rows, vocab = config.get("combinations"), config.get("vocab")
    if not isinstance(rows, list) or not isinstance(vocab, dict):
        return None
    return label_rows(rows, vocab) or None
