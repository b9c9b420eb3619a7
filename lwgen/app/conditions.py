"""Condition choices: the values offered per attribute, narrowed by the combinations a model was trained on."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..conditioning import ANY, NULL, config_label_rows

# Conditions the pages start from when the model knows them (the emoji demo), else the first/last value.
STARTING = ({"group": "smileys-emotion", "subgroup": "face-smiling"},
            {"group": "animals-nature", "subgroup": "animal-mammal"})


def config_combinations(config: dict[str, Any]) -> np.ndarray | None:
    """The `combinations` of a checkpoint config as label rows (K, A), sorted; None when it lists none."""
    found = config_label_rows(config)
    return np.array(found, dtype=np.int64).reshape(-1, len(config["vocab"])) if found else None


def known_combinations(config: dict[str, Any], gallery_labels: Any = None) -> np.ndarray | None:
    """Combinations (K, A) from the checkpoint config, else the classes of its gallery (labels as an array or a
    tensor), else None."""
    found = config_combinations(config)
    if found is None and gallery_labels is not None and len(gallery_labels):
        found = np.unique(np.asarray(gallery_labels, dtype=np.int64), axis=0)
    return found


def attribute_options(vocab: dict[str, list[str]], combos: Any,
                      selected: dict[str, str]) -> dict[str, list[str]]:
    """["any", values...] per attribute; each attribute keeps the values that occur with the choices above it.

    An attribute is not narrowed when the combinations never name it (a gallery built per first attribute) or
    when no combination matches the choices above it.
    """
    attrs = list(vocab)
    out: dict[str, list[str]] = {}
    combos = None if combos is None else np.asarray(combos)
    keep = np.ones(len(combos), dtype=bool) if combos is not None else None
    for k, a in enumerate(attrs):
        values = list(vocab[a])
        if combos is not None and len(combos):
            col = combos[:, k]
            rows = keep & (col != NULL)
            if bool(rows.any()):
                present = set(col[rows].tolist())
                values = [v for i, v in enumerate(vocab[a]) if i in present]
            choice = selected.get(a, ANY)
            if choice != ANY and choice in vocab[a] and (col != NULL).any():
                keep = keep & ((col == vocab[a].index(choice)) | (col == NULL))
        out[a] = [ANY] + values
    return out


def describe(values: dict[str, str], prompt: str | None = None) -> str:
    """{group: flags, style: any} and "a red flag" -> 'group=flags, "a red flag"'; "no condition" when every
    attribute is "any" and there is no prompt."""
    parts = [f"{a}={v}" for a, v in values.items() if v not in (ANY, None, "")]
    if prompt and prompt.strip():
        parts.append(f'"{prompt.strip()}"')
    return ", ".join(parts) or "no condition"


def takes_text(model: Any) -> bool:
    """Whether a generator takes prompts (False for one trained without text)."""
    return bool(getattr(model, "takes_text", False))


def prompt_for(model: Any, prompt: str | None) -> str:
    """The prompt a model can use: the stripped prompt for a generator trained with text, else ""."""
    return (prompt or "").strip() if takes_text(model) else ""


def starting_condition(vocab: dict[str, list[str]], which: int = 0) -> dict[str, str]:
    """A sensible first condition: a demo one the model knows, else the first (which=0) or last value of the
    first attribute."""
    demo = STARTING[which % len(STARTING)]
    if all(v in vocab.get(a, []) for a, v in demo.items()):
        return dict(demo)
    if not vocab:
        return {}
    first = next(iter(vocab))
    return {first: vocab[first][0 if which == 0 else -1]} if vocab[first] else {}
