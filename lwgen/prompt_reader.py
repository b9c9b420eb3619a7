"""Attribute values read from a prompt: "red heart" also asks for subgroup heart.

A generator trained with text follows its attribute embeddings more closely than its projection of a sentence
embedding, most of all for words it never saw with an image. The reader is one linear probe per attribute
(multinomial logistic regression on the sentence embeddings of the training rows' texts and of their first
phrases, their names), saved beside the generator as `prompt-reader.safetensors`. Where it is sure of a value
(probability above `min_prob`), an attribute the user left at "any" is set to that value and the prompt is still
given (docs/experiments.md, section 14).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from .checkpoint import CheckpointError, read_tensors, write_tensors
from .conditioning import ANY, NULL
from .conditioning import PROMPT_READER_FILE as READER_FILE

DEFAULT_MIN_PROB = 0.5


@dataclass
class Reading:
    """One attribute value read from a prompt and the probe's probability for it."""

    attribute: str
    value: str
    probability: float


class PromptReader:
    """Linear probes from sentence embeddings (N, D) to each attribute's values."""

    def __init__(self, vocab: dict[str, list[str]], weight: dict[str, torch.Tensor], bias: dict[str, torch.Tensor],
                 report: dict | None = None):
        for a, values in vocab.items():
            if weight[a].shape[0] != len(values) or bias[a].shape != (len(values),):
                raise ValueError(f"prompt reader: attribute {a!r} has {len(values)} values but weights of shape "
                                 f"{tuple(weight[a].shape)} / {tuple(bias[a].shape)}")
        self.vocab = {a: list(v) for a, v in vocab.items()}
        self.weight, self.bias = weight, bias
        self.report = report or {}
        # attributes the words do not tell (held-out texts read little better than the majority guess): never read
        self.unreadable = set(self.report.get("unreadable") or [])
        self.combinations: torch.Tensor | None = None  # (C, A) label rows the training data holds, if known

    def probabilities(self, text: torch.Tensor) -> dict[str, torch.Tensor]:
        """{attribute: (N, V) probabilities} of sentence embeddings (N, D)."""
        text = text.float().reshape(-1, next(iter(self.weight.values())).shape[1])
        return {a: torch.softmax(text @ self.weight[a].T + self.bias[a], dim=1) for a in self.vocab}

    def read(self, text: torch.Tensor, min_prob: float = DEFAULT_MIN_PROB) -> list[Reading]:
        """The values the probes are sure of (probability above min_prob, see `fill`) for one sentence embedding
        (D,) or (1, D); none for the zero row of "no text"."""
        return self.fill_values({}, text, min_prob)[1]

    def _fits(self, row: torch.Tensor, attributes: list[str]) -> bool:
        """Whether a label row (NULL = any) agrees with some combination of values the training data holds."""
        if self.combinations is None or attributes != list(self.vocab):
            return True
        return bool(((self.combinations == row) | (row == NULL)).all(1).any())

    def fill(self, labels: torch.Tensor, attributes: list[str], text: torch.Tensor,
             min_prob: float = DEFAULT_MIN_PROB) -> torch.Tensor:
        """Label rows (N, A) of a generator whose attributes are `attributes`, with the NULL ("any") entries
        set to the values read from each row's text (N, D) where the probe is sure; rows without text and values
        the user chose stay as they are. Readings are taken surest first, and one that no combination of the
        training data agrees with (with the values chosen or read already) is dropped."""
        out = labels.clone()
        probs = self.probabilities(text)
        order = [a for a in self.vocab if a in attributes and a not in self.unreadable]
        for i in range(len(out)):
            if not bool(text[i].abs().sum() > 0):
                continue
            picks = []
            for a in order:
                prob, index = probs[a][i].max(0)
                if float(prob) > min_prob and int(out[i, attributes.index(a)]) == NULL:
                    picks.append((float(prob), attributes.index(a), int(index)))
            for _, j, index in sorted(picks, reverse=True):
                trial = out[i].clone()
                trial[j] = index
                if self._fits(trial, attributes):
                    out[i] = trial
        return out

    def fill_values(self, values: dict[str, str], text: torch.Tensor,
                    min_prob: float = DEFAULT_MIN_PROB) -> tuple[dict[str, str], list[Reading]]:
        """{attribute: value or "any"} with the "any" ones set from the prompt where the probe is sure (see
        `fill`), and the readings used."""
        attributes = list(self.vocab)
        row = [NULL if values.get(a, ANY) in (ANY, None) else
               (self.vocab[a].index(values[a]) if values[a] in self.vocab[a] else -2)  # -2: unknown, left to the caller
               for a in attributes]
        text = text.reshape(1, -1)
        filled = self.fill(torch.tensor([row]), attributes, text, min_prob)[0]
        probs = self.probabilities(text)
        used = [Reading(a, self.vocab[a][int(filled[j])], round(float(probs[a][0, int(filled[j])]), 3))
                for j, a in enumerate(attributes) if row[j] == NULL and int(filled[j]) != NULL]
        return {**values, **{r.attribute: r.value for r in used}}, used

    def held_out_text(self) -> str:
        """How well it read held-out texts, e.g. "816 held-out texts: group_top1 80.0 %, ..."; "" if unscored."""
        held = self.report.get("held_out") or {}
        scores = ", ".join(f"{k} {100 * v:.1f} %" for k, v in held.items() if k.endswith(("_top1", "_top5")))
        skipped = f"; not read: {', '.join(sorted(self.unreadable))}" if self.unreadable else ""
        return f"{held['rows']} held-out texts: {scores}{skipped}" if scores else ""

    # --- files ------------------------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / READER_FILE
        tensors = {f"{a}.weight": self.weight[a] for a in self.vocab}
        tensors.update({f"{a}.bias": self.bias[a] for a in self.vocab})
        write_tensors(path, tensors, {"vocab": json.dumps(self.vocab), "report": json.dumps(self.report)})
        return path

    @classmethod
    def load(cls, folder: str | Path, vocab: dict[str, list[str]] | None = None,
             combinations: list[tuple[int, ...]] | None = None) -> PromptReader | None:
        """The reader saved in a checkpoint folder, None when there is none. With the generator's `vocab`, each
        attribute's values must be the generator's, in its order; `combinations` are the label rows its training
        data holds (config.json), which readings must agree with."""
        path = Path(folder) / READER_FILE
        if not path.is_file():
            return None
        tensors, meta = read_tensors(path)
        try:
            saved = json.loads(meta["vocab"])
            report = json.loads(meta.get("report") or "{}")
            reader = cls(saved, {a: tensors[f"{a}.weight"].float() for a in saved},
                         {a: tensors[f"{a}.bias"].float() for a in saved}, report)
        except (KeyError, ValueError, TypeError) as e:
            raise CheckpointError(f"{path}: not a prompt reader ({e})") from None
        if vocab is not None:
            for a, values in saved.items():
                if vocab.get(a) != values:
                    raise CheckpointError(f"{path}: the values of {a!r} are not the generator's")
        if combinations and all(len(c) == len(saved) for c in combinations):
            reader.combinations = torch.tensor(combinations, dtype=torch.long)
        return reader


def _fit_probe(x: torch.Tensor, y: torch.Tensor, n_values: int, l2: float,
               steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights (V, D) and bias (V,) of a multinomial logistic regression of y on x (L-BFGS, full batch)."""
    w = torch.zeros(n_values, x.shape[1], requires_grad=True)
    b = torch.zeros(n_values, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=steps, history_size=20, line_search_fn="strong_wolfe")

    def loss_fn() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(x @ w.T + b, y) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(loss_fn)
    return w.detach(), b.detach()


def fit_reader(text: torch.Tensor, labels: torch.Tensor, vocab: dict[str, list[str]], l2: float = 1e-4,
               steps: int = 100) -> PromptReader:
    """Fit one probe per attribute on sentence embeddings (N, D) and label rows (N, A) in the order of `vocab`;
    rows whose text is the zero row or whose label is NULL are left out of that attribute's fit. An attribute no
    row names gets a probe that never takes a side."""
    text = text.float()
    has_text = text.abs().sum(1) > 0
    weight, bias, report = {}, {}, {}
    for j, (a, values) in enumerate(vocab.items()):
        keep = has_text & (labels[:, j] != NULL)
        x, y = text[keep], labels[keep, j]
        if len(y):
            weight[a], bias[a] = _fit_probe(x, y, len(values), l2, steps)
            train = float(((x @ weight[a].T + bias[a]).argmax(1) == y).float().mean())
        else:
            weight[a], bias[a], train = torch.zeros(len(values), text.shape[1]), torch.zeros(len(values)), None
        report[a] = {"rows": int(len(y)), "train_top1": None if train is None else round(train, 4)}
    return PromptReader(vocab, weight, bias, {"l2": l2, "attributes": report})


def train_reader(texts: list[str], labels: torch.Tensor, vocab: dict[str, list[str]],
                 cache_dir: Path | None = None, progress: bool = False) -> PromptReader:
    """A reader fitted on rows' texts (the sentence encoder embeds them, cached in cache_dir) and their first
    phrases, the names people type, with the rows' label rows (N, A) in the order of `vocab`."""
    from .text import cached_encode, lead_phrase  # lazy: the sentence encoder loads here

    text = cached_encode(texts, cache_dir, progress=progress)
    leads = [lead_phrase(t) if t else "" for t in texts]
    if leads != list(texts):
        text = torch.cat([text, cached_encode(leads, cache_dir, progress=progress)])
        labels = torch.cat([labels, labels])
    return fit_reader(text, labels, vocab)


def held_out_accuracy(reader: PromptReader, text: torch.Tensor, labels: torch.Tensor,
                      attributes: list[str]) -> dict[str, float]:
    """Top-1 and top-5 of each probe on held-out rows (text (N, D), label rows (N, A) over `attributes`), and the
    share of the most common value (what always guessing it gets right)."""
    out = {}
    has_text = text.abs().sum(1) > 0
    for a, p in reader.probabilities(text).items():
        if a not in attributes:
            continue
        y = labels[:, attributes.index(a)]
        keep = has_text & (y != NULL)
        if keep.any():
            top = p[keep].topk(min(5, p.shape[1]), dim=1).indices
            out[f"{a}_top1"] = round(float((top[:, 0] == y[keep]).float().mean()), 4)
            out[f"{a}_top5"] = round(float((top == y[keep, None]).any(1).float().mean()), 4)
            out[f"{a}_majority"] = round(float(y[keep].bincount().max()) / int(keep.sum()), 4)
    return out


def table_rows(folder: Path, csv: str, file_column: str, split: str | None, vocab: dict[str, list[str]],
               text_column: str) -> tuple[list[str], torch.Tensor]:
    """The texts and label rows (N, A) of one split of an annotation CSV (values outside `vocab`: NULL). The text
    is the `text_column` cell where the CSV has that column, else the row's values, as training embeds it."""
    from .data.annotations import cell_value, read_annotations  # lazy: the pipeline imports this module
    from .text import template

    attributes = list(vocab)
    _, df, _ = read_annotations(Path(folder), csv, file_column, attributes, split or None)
    index = {a: {v: i for i, v in enumerate(vocab[a])} for a in attributes}
    cells = [[cell_value(str(v)) for v in df[a]] for a in attributes]
    labels = torch.tensor([[index[a].get(col[r], NULL) for a, col in zip(attributes, cells)]
                           for r in range(len(df))], dtype=torch.long).reshape(len(df), len(attributes))
    if text_column and text_column in df.columns:
        texts = df[text_column].astype(str).tolist()
    else:
        texts = [template({a: col[r] for a, col in zip(attributes, cells)}) for r in range(len(df))]
    return texts, labels


def build_reader(folder: Path, csv: str, file_column: str, split: str | None, vocab: dict[str, list[str]],
                 text_column: str, progress: bool = False) -> PromptReader:
    """Fit a reader on the `split` rows of a data folder and, when that split is 'train' and the CSV has 'val'
    rows, score it on them (`report["held_out"]`, top-1 / top-5 per attribute)."""
    from .data import DataError
    from .data.cache import CACHE_DIR

    cache = Path(folder) / CACHE_DIR
    texts, labels = table_rows(folder, csv, file_column, split, vocab, text_column)
    reader = train_reader(texts, labels, vocab, cache, progress)
    if split == "train":
        try:
            val_texts, val_labels = table_rows(folder, csv, file_column, "val", vocab, text_column)
        except DataError:
            return reader
        from .text import cached_encode

        held = held_out_accuracy(reader, cached_encode(val_texts, cache, progress=progress), val_labels, list(vocab))
        reader.report["held_out"] = {"rows": len(val_texts), **held}
        reader.report["unreadable"] = unreadable(held, list(vocab))
        reader.unreadable = set(reader.report["unreadable"])
    return reader


def unreadable(held: dict[str, float], attributes: list[str]) -> list[str]:
    """The attributes whose held-out texts the probe reads no better than the majority guess does by the
    evaluation's margin (`beats_majority`), as a style that the words never mention."""
    from .evaluation.metrics import beats_majority  # lazy: evaluation imports the pipeline, which imports this

    out = []
    for a in attributes:
        top1, majority = held.get(f"{a}_top1"), held.get(f"{a}_majority")
        if top1 is not None and majority is not None and not beats_majority(top1, majority):
            out.append(a)
    return out
