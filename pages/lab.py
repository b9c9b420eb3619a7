"""Embedding lab: walk between two conditions or two prompts, and generate from any point of the condition map."""
import streamlit as st

from lwgen.app import state, ui
from lwgen.app.conditions import describe, starting_condition, takes_text
from lwgen.app.figures import condition_map
from lwgen.app.lab import click_grid, nearest, prompt_walk, vector_at
from lwgen.app.runner import condition_of, generate_images, walk_images
from lwgen.app.selection import clicked_position, outside_known
from lwgen.projection import fit_plane, walk
from lwgen.projection.interpolate import MODES
from lwgen.projection.text import condition_points

_, diffusion = ui.start_page("Embedding lab")
entry = ui.pick_checkpoint(diffusion, "Checkpoint", "lab:checkpoint")
loaded = ui.load_or_error(entry)
if loaded is None:
    st.stop()
model = loaded.model
combos = state.combinations(entry, model)
attrs = list(model.vocab)

st.subheader("Walk between two conditions")
st.caption("Condition vectors are sums of learned attribute embeddings, so every point between two of them is "
           "a valid condition. The walk keeps the starting noise fixed: only the condition changes.")
ca, cb = st.columns(2, gap="large")
with ca:
    st.markdown("**A**")
    values_a = ui.condition_inputs(model.vocab, combos, f"lab:A:{entry.name}",
                                   defaults=starting_condition(model.vocab, 0))
with cb:
    st.markdown("**B**")
    values_b = ui.condition_inputs(model.vocab, combos, f"lab:B:{entry.name}",
                                   defaults=starting_condition(model.vocab, 1))
c1, c2, c3 = st.columns([1, 1, 1])
frames = int(c1.slider("Frames", 3, 16, 8, key="lab:frames"))
mode = c2.radio("Interpolation", MODES, horizontal=True, key="lab:mode",
                help="slerp: along the great circle, norm interpolated linearly; lerp: straight line")
seed = int(c3.number_input("Seed", 0, 2**31 - 1, 0, key="lab:seed"))
sampler, steps, guidance = ui.sampling_inputs("lab")
if st.button("Walk", type="primary"):
    with ui.guard(f"Walking with {entry.name}"):
        a = condition_of(model, values_a)[0]
        b = condition_of(model, values_b)[0]
        vectors = walk(a, b, frames, mode)
        _, report = ui.progress_reporter(f"{frames} frames:")
        images = walk_images(model, vectors, seed, steps, sampler, guidance, report, loaded.lock)
        st.session_state["lab:walk"] = {"images": images, "vectors": vectors, "checkpoint": entry.name,
                                        "title": f"{describe(values_a)} → {describe(values_b)} ({mode}, seed {seed})"}


def show_walk(key: str) -> dict | None:
    """Show the last walk stored under `key` (title and frames) and return it; None when there is none made
    with this checkpoint."""
    result = st.session_state.get(key)
    if result is None or result["checkpoint"] != entry.name:
        return None
    st.markdown(result["title"])
    n = len(result["images"])
    ui.image_grid(result["images"], [f"t = {k / (n - 1):.2f}" for k in range(n)], widest=16)
    return result


walked = show_walk("lab:walk")

st.subheader("Walk between two prompts")
if not takes_text(model):
    st.caption(f"`{entry.name}` was trained without text, so it takes no prompt; a generator trained with a text "
               "column can walk from one description to another here.")
else:
    st.caption("The condition vectors of prompt A and prompt B (every attribute 'any'), interpolated with the "
               "frames, interpolation, seed and sampling settings above: one starting noise, only the words change.")
    pa, pb = st.columns(2, gap="large")
    prompt_a = pa.text_input("Prompt A", key="lab:prompt:A", placeholder="e.g. a smiling face", max_chars=300,
                             help=ui.PROMPT_HELP)
    prompt_b = pb.text_input("Prompt B", key="lab:prompt:B", placeholder="e.g. a sleeping cat", max_chars=300,
                             help=ui.PROMPT_HELP)
    if st.button("Walk between the prompts", type="primary"):
        if not prompt_a.strip() and not prompt_b.strip():
            st.info("Type prompt A and prompt B first (an empty one means no text).")
        else:
            with ui.guard(f"Walking between prompts with {entry.name}"):
                vectors = prompt_walk(model, prompt_a, prompt_b, frames, mode)
                _, report = ui.progress_reporter(f"{frames} frames:")
                images = walk_images(model, vectors, seed, steps, sampler, guidance, report, loaded.lock)
                st.session_state["lab:prompt_walk"] = {
                    "images": images, "checkpoint": entry.name,
                    "title": f"{describe({}, prompt_a)} → {describe({}, prompt_b)} ({mode}, seed {seed})"}
    show_walk("lab:prompt_walk")

st.subheader("Map of condition vectors")
st.caption("PCA of every single attribute value and every known combination. Click anywhere on the map (or "
           "type a position) to generate from the condition vector at that point: the PCA inverse of the "
           "position, i.e. the mean vector plus the two principal directions.")
with ui.guard("Condition map"):
    vectors, frame = condition_points(model, combos)
    plane = fit_plane(vectors.numpy())
    xy = plane.transform(vectors.numpy())
    grid = click_grid(xy)
    path = plane.transform(walked["vectors"].numpy()) if walked is not None else None
    for axis, value in (("lab:x", 0.0), ("lab:y", 0.0)):
        st.session_state.setdefault(axis, value)
    color = st.selectbox("Colour by", ["attribute", "kind", *attrs], key="lab:color")
    marker = st.session_state.get("lab:marker")
    fig = condition_map(xy, frame, color, ["label"], grid, path, marker, plane.explained,
                        palette_order=attrs if color == "attribute" else model.vocab.get(color))
    event = st.plotly_chart(fig, on_select="rerun", selection_mode=("points", "box", "lasso"),
                            key=f"lab:map:{entry.name}")
    clicked = clicked_position(event)
    auto = clicked is not None and clicked != st.session_state.get("lab:last_click")
    if auto:
        st.session_state["lab:last_click"] = clicked
        st.session_state["lab:x"], st.session_state["lab:y"] = clicked
    c1, c2, c3, c4 = st.columns(4)
    x = c1.number_input("PC1", key="lab:x", format="%.3f")
    y = c2.number_input("PC2", key="lab:y", format="%.3f")
    count = int(c3.number_input("Images", 1, 8, 4, key="lab:count"))
    pressed = c4.button("Generate here", width="stretch")
    if outside_known(xy, (x, y)):
        st.warning(f"({x:.2f}, {y:.2f}) lies outside the known conditions (PC1 {xy[:, 0].min():.2f} to "
                   f"{xy[:, 0].max():.2f}, PC2 {xy[:, 1].min():.2f} to {xy[:, 1].max():.2f}): the model never saw "
                   "a condition like it, so expect noise or odd images, and no known condition is near.")
    else:
        close = nearest(xy, (x, y), 3)
        st.caption("Nearest known conditions: " + "; ".join(frame["label"].iloc[i] for i in close))
    if auto or pressed:
        _, report = ui.progress_reporter(f"at ({x:.2f}, {y:.2f}):")
        vec = vector_at(plane, (x, y))
        images = generate_images(model, vec, list(range(seed, seed + count)), steps, sampler, guidance, report,
                                 loaded.lock, batcher=loaded.batcher)
        st.session_state["lab:here"] = {"images": images, "position": (x, y), "checkpoint": entry.name,
                                        "seeds": list(range(seed, seed + count))}
        st.session_state["lab:marker"] = (x, y)
        if auto:
            st.rerun()
    here = st.session_state.get("lab:here")
    if here is not None and here["checkpoint"] == entry.name:
        px, py = here["position"]
        st.markdown(f"Generated at PC1 = {px:.3f}, PC2 = {py:.3f}")
        ui.image_grid(here["images"], [f"seed {s}" for s in here["seeds"]], widest=8)
