"""Models: a card per checkpoint with its size, cost, schedule, training record, loss curve, samples, metrics."""
from collections.abc import Sequence

import streamlit as st
import torch

from lwgen.app import state, ui
from lwgen.app.cards import GLOSSARY, eval_warnings, human_count, human_duration, metric_rows, one_per_class
from lwgen.app.catalog import Entry, of_kind
from lwgen.app.figures import loss_figure
from lwgen.app.images import resize
from lwgen.app.navigation import require_app
from lwgen.app.paths import SOURCE_TEXT, catalog, display_path
from lwgen.app.runner import conditions_for, generate_images
from lwgen.checkpoint import read_config
from lwgen.pipeline import DEFAULT_GUIDANCE


def diffusion_samples(entry: Entry, loaded: state.Loaded) -> None:
    """Gallery samples, or a button that generates 16 (one per class, seeds 0-15)."""
    model = loaded.model
    gallery = state.gallery_at(entry.path)
    if gallery is not None:
        idx = one_per_class(gallery.labels, 8)
        frame = gallery.frame()
        ui.image_grid(gallery.images[idx], [" · ".join(v for v in frame.iloc[i][list(model.vocab)] if v != "any")
                                            for i in idx], widest=4)
        return
    key = f"models:samples:{entry.name}:{entry.stamp}"
    if key not in st.session_state:
        if st.button("Generate samples", key=f"{key}:go"):
            with ui.guard(f"Sampling {entry.name}"):
                classes = state.classes(entry)
                rows = classes[one_per_class(classes, 16)]
                _, report = ui.progress_reporter(f"{len(rows)} samples:")
                st.session_state[key] = generate_images(model, conditions_for(model, rows), list(range(len(rows))),
                                                        20, "dpmpp", DEFAULT_GUIDANCE, report, loaded.lock)
        else:
            st.caption("No gallery in this checkpoint (`lwgen gallery` writes one).")
    if key in st.session_state:
        images = st.session_state[key]
        ui.image_grid(images, [f"seed {i}" for i in range(len(images))], widest=4)


def upscaler_samples(entry: Entry, loaded: state.Loaded, entries: list[Entry]) -> None:
    """Before/after pairs on gallery images of a diffusion checkpoint, when one has a gallery."""
    source = next((state.gallery_at(e.path) for e in of_kind(entries, "diffusion")
                   if e.ok and state.gallery_at(e.path) is not None), None)
    if source is None:
        st.caption("Examples appear here once a diffusion checkpoint has a gallery.")
        return
    key = f"models:up:{entry.name}:{entry.stamp}"
    if key not in st.session_state and st.button("Up-scale 4 gallery images", key=f"{key}:go"):
        with ui.guard(f"Up-scaling with {entry.name}"), loaded.lock:
            low = source.images[one_per_class(source.labels, 4)]
            high = loaded.model.upscale(low.float() / 127.5 - 1)
            st.session_state[key] = (low, ((high + 1) * 127.5).round().clamp(0, 255).to(torch.uint8))
    if key in st.session_state:
        low, high = st.session_state[key]
        size = high.shape[-1]
        pairs = torch.stack([resize(low, size), high], 1).flatten(0, 1)
        ui.image_grid(pairs, [f"{low.shape[-1]} px input (enlarged)" if k % 2 == 0 else f"x{size // low.shape[-1]} "
                              f"output ({size} px)" for k in range(len(pairs))], widest=4)


def metrics_table(rows: list[tuple[str, str]], warnings: Sequence[str] = ()) -> None:
    """The checkpoint's metrics as a two-column table, when it has any, and what they cannot be trusted for."""
    if rows:
        st.markdown("**Metrics**")
        st.dataframe({"metric": [r[0] for r in rows], "value": [r[1] for r in rows]}, hide_index=True)
    for warning in warnings:
        st.warning(warning[0].upper() + warning[1:] + ".")


def config_card(entry: Entry) -> None:
    """What config.json alone says about a checkpoint of another kind (classifier, autoencoder...)."""
    cfg = read_config(entry.path)
    if entry.kind == "classifier":
        st.caption("A classifier: the Explore page can project its features.")
    progress = cfg.get("progress") or {}
    if progress:
        cols = st.columns(6)
        cols[0].metric("Training steps", human_count(progress.get("step")))
        cols[1].metric("Training time", human_duration(progress.get("wall_time_s")))
        if progress.get("loss_history"):
            st.plotly_chart(loss_figure(progress["loss_history"]), key=f"models:loss:{entry.name}")
    metrics_table(metric_rows(cfg, entry.path))


def glossary() -> None:
    """One line per metric: what it measures and which way is better."""
    with st.expander("What the metrics mean"):
        st.markdown("\n".join(f"- **{name}** ({better} is better): {meaning}" for name, meaning, better in GLOSSARY))


def card(entry: Entry, entries: list[Entry]) -> None:
    """One bordered card for one checkpoint folder."""
    with st.container(border=True):
        st.subheader(entry.name)
        st.caption(f"{entry.kind} · {SOURCE_TEXT.get(entry.source, entry.source)} · `{display_path(entry.path)}`")
        if not entry.ok:
            st.error(f"Checkpoint `{entry.name}` cannot be used: {entry.error}")
            return
        if entry.kind not in ("diffusion", "upscaler"):
            config_card(entry)
            return
        loaded = ui.load_or_error(entry)
        if loaded is None:
            return
        s = state.summary(str(entry.path), entry.stamp)
        cfg = loaded.model.checkpoint_config
        cols = st.columns(6)
        cols[0].metric("Parameters", human_count(s["parameters"]))
        cols[1].metric("GMAC / forward", f"{s['gmacs']:.3f}", help="multiply-accumulates of one network "
                       "forward per image (a sampler step with guidance runs two)" if entry.kind == "diffusion"
                       else "per 64 px input image")
        if entry.kind == "diffusion":
            latent = s["latent"]
            cols[2].metric("Resolution", f"{s['resolution']} px",
                           help=f"diffuses a {latent[1]}x{latent[1]}x{latent[0]} latent, decoded by a "
                                f"{human_count(s['autoencoder_parameters'])}-parameter autoencoder"
                           if latent else "diffuses pixels")
            cols[3].metric("Schedule", s["schedule"], help=f"{s['prediction']}-prediction")
        else:
            cols[2].metric("Scale", f"x{s['scale']}")
        cols[4].metric("Training steps", human_count(s["steps"]),
                       help=f"{human_count(s['images_seen'])} images seen" if s["images_seen"] else None)
        cols[5].metric("Training time", human_duration(s["seconds"]),
                       help=f"including the training of {s['started_from']}, which this run continued"
                       if s.get("started_from") else None)
        left, right = st.columns([1, 1], gap="large")
        with left:
            history = (cfg.get("progress") or {}).get("loss_history") or []
            if history:
                st.plotly_chart(loss_figure(history), key=f"models:loss:{entry.name}")
            else:
                st.caption("No loss history recorded.")
            if entry.kind == "diffusion":
                st.caption("Attributes: " + ", ".join(f"{a} ({n} values)" for a, n in s["attributes"].items()))
        with right, ui.guard(f"Samples of {entry.name}"):
            if entry.kind == "diffusion":
                diffusion_samples(entry, loaded)
            else:
                upscaler_samples(entry, loaded, entries)
        metrics_table(metric_rows(cfg, entry.path), eval_warnings(entry.path))
        with st.expander("Training configuration"):
            st.json({k: cfg[k] for k in ("train", "data", "schedule", "unet", "upscaler") if k in cfg},
                    expanded=False)


require_app()
st.title("Models")
entries = catalog()
if not entries:
    ui.no_checkpoints(None)
    st.stop()
st.caption(f"{len(entries)} checkpoints: " + ", ".join(
    f"{sum(e.source == src for e in entries)} {SOURCE_TEXT.get(src, src)}" for src in dict.fromkeys(
        e.source for e in entries)) + ". `lwgen eval --checkpoint DIR --out DIR/eval.json` adds scores to a card.")
glossary()
ORDER = {"diffusion": 0, "upscaler": 1}
for e in sorted(entries, key=lambda e: ORDER.get(e.kind, 2)):  # then in the catalog's order: by source, by path
    with ui.guard(f"Card of {e.name}"):
        card(e, entries)
