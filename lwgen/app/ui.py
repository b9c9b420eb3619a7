"""Streamlit widgets shared by the pages: checkpoint pickers, condition inputs, progress, image grids, errors.

Importing this module does not import torch: the Generate page draws its widgets before the model loads.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import streamlit as st

from ..checkpoint import CheckpointError
from ..conditioning import DEFAULT_GUIDANCE, PROMPT_READER_FILE
from .catalog import Entry, of_kind, preferred
from .conditions import ANY, attribute_options
from .info import GeneratorInfo, generator_info
from .navigation import require_app
from .paths import TRAIN_HINT, catalog, display_path, searched_text

if TYPE_CHECKING:
    import torch

    from .state import Loaded

SAMPLERS = ("dpmpp", "ddim", "ddpm")
SAMPLER_HELP = ("dpmpp: DPM-Solver++(2M), sharp in 10-20 steps; ddim: deterministic DDIM; "
                "ddpm: ancestral (stochastic), needs more steps")


@contextmanager
def guard(what: str) -> Iterator[None]:
    """Turn any error inside into an st.error naming what failed (never a traceback)."""
    try:
        yield
    except Exception as e:  # noqa: BLE001 - the page must stay usable whatever went wrong
        st.error(f"{what}: {e}" if str(e) else f"{what}: {type(e).__name__}")


def start_page(title: str, caption: str = "") -> tuple[list[Entry], list[Entry]]:
    """Title a page and list (all, diffusion) checkpoints; with no diffusion checkpoint, show how to get one and
    stop."""
    require_app()
    st.title(title)
    if caption:
        st.caption(caption)
    entries = catalog()
    diffusion = of_kind(entries, "diffusion")
    if not diffusion:
        no_checkpoints()
        st.stop()
    return entries, diffusion


def no_checkpoints(kind: str | None = "diffusion") -> None:
    """Explain where checkpoints go and how to train one."""
    st.info(f"No {kind + ' ' if kind else ''}checkpoint found in {searched_text()} (each checkpoint is a folder "
            f"with `config.json` and `model.safetensors`; `LWGEN_CHECKPOINTS` adds folders). Train one with:")
    st.code(TRAIN_HINT, language="bash")


def pick_checkpoint(entries: list[Entry], label: str, key: str, prefer: Sequence[str] = ("cosine",)) -> Entry | None:
    """A selectbox of checkpoint names (broken ones marked); None when there are none."""
    if not entries:
        return None
    names = [e.name for e in entries]
    marks = {e.name: e.name if e.ok else f"{e.name} (cannot be loaded)" for e in entries}
    name = st.selectbox(label, names, index=preferred(entries, *prefer), key=key, format_func=marks.get)
    return entries[names.index(name)]


def _usable(entry: Entry) -> bool:
    """Whether the catalog found the checkpoint whole; else an st.error saying why not."""
    if not entry.ok:
        st.error(f"Checkpoint `{entry.name}` cannot be used: {entry.error}")
    return entry.ok


def load_or_error(entry: Entry) -> Loaded | None:
    """Load a checkpoint, or show an st.error naming it and return None."""
    if not _usable(entry):
        return None
    from .state import load  # torch: imported when the first model is needed

    try:
        return load(entry)
    except (CheckpointError, ValueError, OSError, RuntimeError, KeyError, TypeError) as e:
        st.error(f"Checkpoint `{entry.name}` ({display_path(entry.path)}) could not be loaded: {e}")
        return None


def generator_info_or_error(entry: Entry) -> GeneratorInfo | None:
    """What a generator's config.json says (its weights not loaded), or an st.error naming it and None."""
    if not _usable(entry):
        return None
    try:
        return generator_info(entry)
    except CheckpointError as e:
        if load_or_error(entry) is not None:  # else the loader has said what is wrong, weights included
            st.error(f"Checkpoint `{entry.name}` ({display_path(entry.path)}) could not be read: {e}")
        return None


def condition_inputs(vocab: dict[str, list[str]], combos: Any, key: str,
                     columns: int = 2, defaults: dict[str, str] | None = None) -> dict[str, str]:
    """One selectbox per attribute ("any" + values); each narrowed by the choices above it when combos are known."""
    selected: dict[str, str] = {}
    cols = st.columns(columns)
    for k, attr in enumerate(vocab):
        options = attribute_options(vocab, combos, selected)[attr]
        widget = f"{key}:{attr}"
        if widget not in st.session_state:
            st.session_state[widget] = (defaults or {}).get(attr, ANY)
        if st.session_state[widget] not in options:
            st.session_state[widget] = ANY
        narrowed = len(options) - 1 < len(vocab[attr])
        help_text = (f"{len(options) - 1} of {len(vocab[attr])} values occur with the choices above"
                     if narrowed else f"{len(vocab[attr])} values")
        with cols[k % columns]:
            selected[attr] = st.selectbox(attr, options, key=widget, help=help_text)
    return selected


PROMPT_HELP = ("describe the image in words; it is added to the attributes (leave them 'any' to steer by the words "
               "alone); empty = no text. The sentence encoder loads on the first prompt (a few seconds).")


def prompt_input(takes_text: bool, key: str, label: str = "Prompt",
                 placeholder: str = "e.g. a smiling face with hearts",
                 note: str = "No prompt: this checkpoint was trained without text, so only the attributes steer "
                             "it.") -> str:
    """A prompt box for a generator trained with text ("" when empty); for one without, a short note and ""."""
    if not takes_text:
        st.caption(note)
        return ""
    return st.text_input(label, key=key, placeholder=placeholder, max_chars=300, help=PROMPT_HELP).strip()


READ_HELP = ("the checkpoint's prompt reader names the attribute values it is sure the words mean (e.g. subgroup "
             "heart for 'red heart') and the generator is given those too, as `lwgen sample` does: they steer "
             "more than the words alone. Attributes you chose stay as they are. Off: the words alone.")


def prompt_reading_toggle(folders: Sequence[Any], prompt: str, key: str) -> bool:
    """For a typed prompt and checkpoint folders of which one has a prompt reader: a toggle, on by default, that
    lets the prompt set the attributes left at "any"; False otherwise."""
    from pathlib import Path

    if not prompt or not any((Path(f) / PROMPT_READER_FILE).is_file() for f in folders):
        return False
    return st.toggle("Let the prompt choose the attributes left at any", value=True, key=key, help=READ_HELP)


def readings_text(readings: Sequence[tuple[str, str, float]]) -> str:
    """[("subgroup", "food-fruit", 0.93)] -> "Read from the prompt: subgroup food-fruit (93 %)"; "" for none."""
    if not readings:
        return ""
    return "Read from the prompt: " + ", ".join(f"{a} {v} ({100 * p:.0f} %)" for a, v, p in readings)


def sampling_inputs(key: str, steps: int = 20, guidance: float = DEFAULT_GUIDANCE) -> tuple[str, int, float]:
    """Sampler, steps and guidance widgets."""
    c1, c2, c3 = st.columns([4, 3, 3])
    sampler = c1.selectbox("Sampler", SAMPLERS, key=f"{key}:sampler", help=SAMPLER_HELP)
    n = c2.number_input("Steps", 1, 1000, steps, key=f"{key}:steps")
    g = c3.number_input("Guidance", 0.0, 20.0, guidance, 0.5, key=f"{key}:guidance", help=GUIDANCE_HELP)
    return sampler, int(n), float(g)


GUIDANCE_HELP = ("classifier-free guidance scale. 0 = unconditional: the condition (attributes and prompt) is "
                 "ignored; 1 = the condition without guidance; higher = follows the condition more strongly "
                 "(each step then runs the network twice)")
ESTIMATE_FROM = 3.0  # seconds: a time estimate is shown beside work expected to take at least this long
CANCELLED = ("Cancelled: that run's images were dropped (pressing Cancel, or changing a setting while it ran, "
             "stops sampling after the current step).")


_CANCEL: dict[tuple[str, str], threading.Event] = {}  # (session id, page key) -> the event its Cancel sets
_CANCEL_LOCK = threading.Lock()


def cancel_event(key: str) -> threading.Event:
    """This session's cancel event for a page (kept outside st.session_state, which must stay copyable)."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    with _CANCEL_LOCK:
        return _CANCEL.setdefault((getattr(ctx, "session_id", ""), key), threading.Event())


def _press_cancel(key: str) -> None:
    cancel_event(key).set()


@contextmanager
def cancellable(key: str) -> Iterator[threading.Event]:
    """Long work with a Cancel button above it; yields the event to pass on, which is set when Cancel is pressed.

    Pressing Cancel (or any widget) restarts the page, which interrupts the work at its next progress report;
    the work must also stop with Cancelled once the event is set. The next run then says "cancelled"
    (say_if_cancelled). The button disappears when the work ends.
    """
    from .runner import Cancelled

    cancel = cancel_event(key)
    cancel.clear()
    slot = st.empty()
    slot.button("Cancel", key=f"{key}:cancel", icon=":material/stop_circle:", on_click=_press_cancel, args=(key,),
                help="stop after the current sampler step")
    st.session_state[f"{key}:running"] = True
    try:
        yield cancel
    except Cancelled:
        st.warning(CANCELLED)
    except Exception:
        st.session_state.pop(f"{key}:running", None)
        slot.empty()
        raise
    # a Streamlit rerun (a BaseException) skips this and leaves the flag for the next run to report
    st.session_state.pop(f"{key}:running", None)
    slot.empty()


def say_if_cancelled(key: str) -> None:
    """Say "cancelled" when the previous run of this page stopped inside cancellable(key)."""
    if st.session_state.pop(f"{key}:running", False):
        st.warning(CANCELLED)


def progress_reporter(text: str = "Generating...") -> tuple[Any, Callable[[float, str], None]]:
    """An st.progress bar and a callback(fraction, message) that moves it."""
    bar = st.progress(0.0, text=text)

    def report(fraction: float, message: str) -> None:
        bar.progress(min(max(fraction, 0.0), 1.0), text=f"{text} {message}")

    return bar, report


def image_grid(images: torch.Tensor, captions: Sequence[str], widest: int = 8) -> None:
    """uint8 images (N, 3, H, W) in rows of columns, each with its caption."""
    from .images import columns_for, to_numpy

    n = len(images)
    per_row = columns_for(n, widest)
    for start in range(0, n, per_row):
        cols = st.columns(per_row)
        for j, i in enumerate(range(start, min(n, start + per_row))):
            cols[j].image(to_numpy(images[i]), caption=captions[i], width="stretch")
