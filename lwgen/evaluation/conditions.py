"""What a generator is asked for in evaluation: whole held-out rows, one attribute alone (the way people use the
app: "a group", "a subgroup"), or a row's text alone; and how much the condition, not the seed, decides the image."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..data import DataError, ImageTable
from ..data.annotations import cell_value

ROWS, TEXT = "rows", "text"


@dataclass
class Conditions:
    """n requests: the values the classifier should find (`values`), what the generator is given (`given`: the
    attribute values, and `prompts` for text), a seed each, and for one-attribute requests which value
    (`value_ids`) each sample is, with the same seeds repeated for every value."""

    mode: str
    values: list[dict[str, str]]
    given: list[dict[str, str]]
    seeds: list[int]
    scored: set[str]
    prompts: list[str] = field(default_factory=list)
    value_ids: list[int] = field(default_factory=list)
    value_names: list[str] = field(default_factory=list)


def row_values(table: ImageTable, rows: list[int] | torch.Tensor, attributes: list[str]) -> list[dict[str, str]]:
    """{attribute: value} per selected row, for the attributes that are CSV columns of the table."""
    columns = [a for a in attributes if a in table.extra.columns]
    frame = table.extra.iloc[rows.tolist() if torch.is_tensor(rows) else list(rows)]
    return [{a: cell_value(str(r[a])) for a in columns} for _, r in frame.iterrows()]


def condition_rows(n_rows: int, n: int, seed: int = 0) -> torch.Tensor:
    """n row indices that repeat shuffled passes over all rows, so the class mix follows the table."""
    if n_rows < 1 or n < 1:
        raise ValueError(f"need at least one row and one sample, got {n_rows} rows and n={n}")
    g = torch.Generator().manual_seed(seed)
    passes = [torch.randperm(n_rows, generator=g) for _ in range(-(-n // n_rows))]
    return torch.cat(passes)[:n]


def implied(table: ImageTable, attribute: str, others: list[str], share: float = 0.9) -> dict[str, dict[str, str]]:
    """For each other attribute that `attribute` determines in `table` (as a subgroup determines its group):
    {other: {value: its value}}. It determines it when at least `share` of its values occur with a single value
    of the other; the values that occur with several are left out (not scored)."""
    out = {}
    for other in others:
        if other == attribute or other not in table.extra.columns:
            continue
        pairs = table.extra[[attribute, other]].astype(str).drop_duplicates()
        single = ~pairs[attribute].duplicated(keep=False)
        if single.sum() >= share * pairs[attribute].nunique():
            kept = pairs[single]
            out[other] = {cell_value(a): cell_value(b) for a, b in zip(kept[attribute], kept[other])}
    return out


def build(mode: str, table: ImageTable, vocab: dict[str, list[str]], scored: list[str], n: int, seed: int = 0,
          text_column: str = "text") -> Conditions:
    """The requests of one evaluation mode: ROWS, TEXT, or the name of one attribute of the generator."""
    every = list(dict.fromkeys([*vocab, *scored]))
    if mode in (ROWS, TEXT):
        rows = condition_rows(len(table), n, seed).tolist()
        values = row_values(table, rows, every)
        seeds = [seed + i for i in range(n)]
        if mode == ROWS:
            return Conditions(mode, values, values, seeds, set(vocab))
        if text_column not in table.extra.columns:
            raise DataError(f"--condition text needs a {text_column!r} column in the annotation CSV")
        prompts = [str(table.extra[text_column].iloc[r]) for r in rows]
        return Conditions(mode, values, [{} for _ in rows], seeds, set(scored), prompts=prompts)
    if mode not in vocab:
        raise ValueError(f"--condition must be rows, text or one of the generator's attributes "
                         f"({', '.join(vocab)}), got {mode!r}")
    if mode not in table.extra.columns:
        raise DataError(f"the real images' CSV has no {mode!r} column")
    present = set(table.extra[mode].astype(str).map(cell_value))
    names = [v for v in vocab[mode] if v in present]
    if not names:
        raise DataError(f"no value of {mode!r} that the generator knows occurs in the real images")
    per_value = max(2, -(-n // len(names)))
    follows = implied(table, mode, scored)
    values, given, seeds, ids = [], [], [], []
    for i, name in enumerate(names):
        for s in range(per_value):
            values.append({mode: name, **{o: m[name] for o, m in follows.items() if name in m}})
            given.append({mode: name})
            seeds.append(seed + s)  # the same seeds for every value: the steering pairs
            ids.append(i)
    return Conditions(mode, values, given, seeds, {mode, *follows}, value_ids=ids, value_names=names)


def _mean_pair_similarity(f: torch.Tensor) -> float:
    """Mean cosine similarity over all pairs of distinct rows of unit-length features (n, d)."""
    n = f.shape[0]
    if n < 2:
        return float("nan")
    s = f.sum(0)
    return float((s @ s - n) / (n * (n - 1)))


def steering(features: torch.Tensor, value_ids: list[int], seeds: list[int]) -> dict[str, float]:
    """How much the condition rather than the seed decides a sample (classifier features, cosine similarity).

    same_condition: pairs of one value, different seeds; same_seed: pairs of one seed, different values.
    steering = same_condition - same_seed: above 0 the condition decides more than the seed does.
    """
    f = F.normalize(features.float(), dim=1)
    ids, sd = torch.tensor(value_ids), torch.tensor(seeds)
    within = [_mean_pair_similarity(f[ids == v]) for v in ids.unique()]
    across = [_mean_pair_similarity(f[sd == s]) for s in sd.unique()]
    same_condition = sum(within) / len(within)
    same_seed = sum(across) / len(across)
    return {"same_condition": same_condition, "same_seed": same_seed, "steering": same_condition - same_seed}


def real_steering(features: torch.Tensor, labels: list[str]) -> dict[str, float]:
    """The same gap for real images: pairs of one value against pairs of different values."""
    f = F.normalize(features.float(), dim=1)
    names = sorted(set(labels))
    index = torch.tensor([names.index(v) for v in labels])
    within = [_mean_pair_similarity(f[index == i]) for i in range(len(names)) if int((index == i).sum()) > 1]
    same = sum(within) / len(within)
    total = f.sum(0)
    all_pairs = float(total @ total - len(f))
    same_pairs = sum(float(f[index == i].sum(0) @ f[index == i].sum(0) - int((index == i).sum()))
                     for i in range(len(names)))
    n_all = len(f) * (len(f) - 1)
    n_same = sum(int((index == i).sum()) * (int((index == i).sum()) - 1) for i in range(len(names)))
    different = (all_pairs - same_pairs) / max(n_all - n_same, 1)
    return {"same_value": same, "different_value": different, "steering": same - different}


def per_value_top1(logits: torch.Tensor, targets: torch.Tensor, names: list[str]) -> dict[str, float | None]:
    """Top-1 accuracy per target value (logits (n, V), targets (n,) with -1 = not scored)."""
    pred = logits.argmax(1)
    out: dict[str, float | None] = {}
    for i, name in enumerate(names):
        mask = targets == i
        out[name] = round(float((pred[mask] == i).float().mean()), 4) if bool(mask.any()) else None
    return out
