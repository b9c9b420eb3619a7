"""Generate: one condition, many seeds; download the grid, the images and the command that reproduces them.

The widgets come from the checkpoint's config.json, so the page is drawn before torch and the weights load (the
first visit of a process waits seconds for them); what needs the model is in the functions below, which import
it when called.
"""
from typing import Any

import streamlit as st

from lwgen.app import ui
from lwgen.app.catalog import Entry, of_kind
from lwgen.app.conditions import starting_condition
from lwgen.app.info import weak_values

entries, diffusion = ui.start_page("Generate")


def loaded_or_stop(entry: Entry) -> Any:
    """The loaded checkpoint (torch and its weights, once per process), or an error and the end of this run."""
    loaded = ui.load_or_error(entry)
    if loaded is None:
        st.stop()
    return loaded


def show_estimate(loaded: Any, count: int, steps: int, guidance: float, up_entry: Entry | None) -> None:
    from lwgen.app.estimates import estimate

    expected = estimate(loaded.model, count, steps, guidance, upscaler=up_entry)
    if expected.seconds >= ui.ESTIMATE_FROM:
        st.caption(f"{count} images x {steps} steps: {expected.text()}.")


def generate(entry: Entry, loaded: Any, values: dict[str, str], prompt: str, read: bool, sampler: str, steps: int,
             guidance: float, seed: int, count: int, up_entry: Entry | None) -> None:
    from lwgen.app.command import sample_command
    from lwgen.app.runner import condition_of, generate_images, read_values

    with ui.guard(f"Generating with {entry.name}"), ui.cancellable("gen") as cancel:
        up = ui.load_or_error(up_entry) if up_entry is not None else None
        if up_entry is None or up is not None:
            seeds = list(range(seed, seed + count))
            _, report = ui.progress_reporter(f"{count} images, {steps} {sampler} steps:")
            model = loaded.model
            given, readings = read_values(model, values, prompt) if read else (dict(values), [])
            cond = condition_of(model, given, prompt)
            images = generate_images(model, cond, seeds, steps, sampler, guidance, report, loaded.lock,
                                     up.model if up is not None else None, cancel=cancel, batcher=loaded.batcher)
            st.session_state["gen:result"] = {
                "images": images, "seeds": seeds, "values": dict(values), "prompt": prompt,
                "read": [(r.attribute, r.value, r.probability) for r in readings], "checkpoint": entry.name,
                "command": sample_command(entry.path, values, count, steps, sampler, guidance, seed,
                                          up_entry.path if up is not None else None, prompt=prompt,
                                          read_prompt=read or getattr(model, "prompt_reader", None) is None)}


def show_result(result: dict) -> None:
    from lwgen.app.conditions import describe
    from lwgen.app.images import grid_png, zip_pngs

    images = result["images"]
    st.markdown(f"**{result['checkpoint']}** · {describe(result['values'], result.get('prompt'))} · "
                f"{len(images)} images, {images.shape[-1]} px")
    if result.get("read"):
        st.caption(ui.readings_text(result["read"]))
    ui.image_grid(images, [f"seed {s}" for s in result["seeds"]])
    d1, d2 = st.columns(2)
    d1.download_button("Download grid (PNG)", lambda: grid_png(images), "grid.png", "image/png",
                       on_click="ignore", width="stretch")  # encoded when pressed, not on every rerun
    names = [f"seed{s:06d}.png" for s in result["seeds"]]
    d2.download_button("Download images (zip)", lambda: zip_pngs(images, names), "images.zip",
                       "application/zip", on_click="ignore", width="stretch")
    st.caption("Reproduce on the command line:")
    st.code(result["command"], language="bash", wrap_lines=True)


left, right = st.columns([1, 2], gap="large")
with left:
    entry = ui.pick_checkpoint(diffusion, "Checkpoint", "gen:checkpoint")
    info = ui.generator_info_or_error(entry)
    if info is None:
        st.stop()
    loaded = None
    combos = info.combinations
    if combos is None:  # a config that lists no combinations: the checkpoint's gallery knows its classes
        from lwgen.app import state

        loaded = loaded_or_stop(entry)
        combos = state.combinations(entry, loaded.model)
    st.subheader("Condition")
    values = ui.condition_inputs(info.vocab, combos, f"gen:{entry.name}", columns=1,  # full width: long values
                                 defaults=starting_condition(info.vocab))
    weak = weak_values(entry.path, "group")
    if weak:
        st.caption("Given a group alone, this model is still weak at: " + ", ".join(
            f"{g} ({100 * a:.0f} % recognised, real images {100 * r:.0f} %)" for g, (a, r) in weak.items())
            + ". A subgroup or a prompt steers it better.")
    prompt = ui.prompt_input(info.takes_text, "gen:prompt")
    read = ui.prompt_reading_toggle([entry.path], prompt, "gen:read")
    st.subheader("Sampling")
    sampler, steps, guidance = ui.sampling_inputs("gen")
    c1, c2 = st.columns(2)
    seed = int(c1.number_input("Seed", 0, 2**31 - 1, 0, key="gen:seed", help="image i uses seed + i"))
    count = int(c2.number_input("Images", 1, 64, 16, key="gen:count"))
    upscalers = [e for e in of_kind(entries, "upscaler") if e.ok]
    up_entry = None
    if upscalers:
        if st.toggle(f"Up-scale x4 to {4 * info.resolution} px", key="gen:upscale"):
            up_entry = ui.pick_checkpoint(upscalers, "Up-scaler", "gen:upscaler", prefer=("x4",))
    else:
        st.caption("No up-scaler checkpoint found: x4 up-scaling is off.")
    go = st.button("Generate", type="primary", width="stretch")
    loaded = loaded or loaded_or_stop(entry)  # everything above was drawn without it
    show_estimate(loaded, count, steps, guidance, up_entry)

with right:
    ui.say_if_cancelled("gen")
    if go:
        generate(entry, loaded, values, prompt, read, sampler, steps, guidance, seed, count, up_entry)
    result = st.session_state.get("gen:result")
    if result is None:
        st.info("Choose a condition (attributes and, for a generator trained with text, a prompt) and press "
                "**Generate**. Every image shows its seed; the same seed and settings give the same image, here "
                "and on the command line.")
    else:
        show_result(result)
