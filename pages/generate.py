"""Generate: one condition, many seeds; download the grid, the images and the command that reproduces them."""
import streamlit as st

from lwgen.app import state, ui
from lwgen.app.cards import weak_values
from lwgen.app.catalog import of_kind
from lwgen.app.command import sample_command
from lwgen.app.conditions import describe, starting_condition, takes_text
from lwgen.app.estimates import estimate
from lwgen.app.images import grid_png, zip_pngs
from lwgen.app.runner import condition_of, generate_images

entries, diffusion = ui.start_page("Generate")

left, right = st.columns([1, 2], gap="large")
with left:
    entry = ui.pick_checkpoint(diffusion, "Checkpoint", "gen:checkpoint")
    loaded = ui.load_or_error(entry)
    if loaded is None:
        st.stop()
    model = loaded.model
    combos = state.combinations(entry, model)
    st.subheader("Condition")
    values = ui.condition_inputs(model.vocab, combos, f"gen:{entry.name}", columns=1,  # full width: long values
                                 defaults=starting_condition(model.vocab))
    weak = weak_values(entry.path, "group")
    if weak:
        st.caption("Given a group alone, this model is still weak at: " + ", ".join(
            f"{g} ({100 * a:.0f} % recognised, real images {100 * r:.0f} %)" for g, (a, r) in weak.items())
            + ". A subgroup or a prompt steers it better.")
    prompt = ui.prompt_input(takes_text(model), "gen:prompt")
    st.subheader("Sampling")
    sampler, steps, guidance = ui.sampling_inputs("gen")
    c1, c2 = st.columns(2)
    seed = int(c1.number_input("Seed", 0, 2**31 - 1, 0, key="gen:seed", help="image i uses seed + i"))
    count = int(c2.number_input("Images", 1, 64, 16, key="gen:count"))
    upscalers = [e for e in of_kind(entries, "upscaler") if e.ok]
    up_entry = None
    if upscalers:
        if st.toggle(f"Up-scale x4 to {4 * model.resolution} px", key="gen:upscale"):
            up_entry = ui.pick_checkpoint(upscalers, "Up-scaler", "gen:upscaler", prefer=("x4",))
    else:
        st.caption("No up-scaler checkpoint found: x4 up-scaling is off.")
    go = st.button("Generate", type="primary", width="stretch")
    expected = estimate(model, count, steps, guidance, upscaler=up_entry)
    if expected.seconds >= ui.ESTIMATE_FROM:
        st.caption(f"{count} images x {steps} steps: {expected.text()}.")

with right:
    ui.say_if_cancelled("gen")
    if go:
        with ui.guard(f"Generating with {entry.name}"), ui.cancellable("gen") as cancel:
            up = ui.load_or_error(up_entry) if up_entry is not None else None
            if up_entry is None or up is not None:
                seeds = list(range(seed, seed + count))
                _, report = ui.progress_reporter(f"{count} images, {steps} {sampler} steps:")
                cond = condition_of(model, values, prompt)
                images = generate_images(model, cond, seeds, steps, sampler, guidance, report, loaded.lock,
                                         up.model if up is not None else None, cancel=cancel,
                                         batcher=loaded.batcher)
                st.session_state["gen:result"] = {
                    "images": images, "seeds": seeds, "values": dict(values), "prompt": prompt,
                    "checkpoint": entry.name,
                    "command": sample_command(entry.path, values, count, steps, sampler, guidance, seed,
                                              up_entry.path if up is not None else None, prompt=prompt)}
    result = st.session_state.get("gen:result")
    if result is None:
        st.info("Choose a condition (attributes and, for a generator trained with text, a prompt) and press "
                "**Generate**. Every image shows its seed; the same seed and settings give the same image, here "
                "and on the command line.")
    else:
        images = result["images"]
        st.markdown(f"**{result['checkpoint']}** · {describe(result['values'], result.get('prompt'))} · "
                    f"{len(images)} images, {images.shape[-1]} px")
        ui.image_grid(images, [f"seed {s}" for s in result["seeds"]])
        d1, d2 = st.columns(2)
        d1.download_button("Download grid (PNG)", lambda: grid_png(images), "grid.png", "image/png",
                           on_click="ignore", width="stretch")  # encoded when pressed, not on every rerun
        names = [f"seed{s:06d}.png" for s in result["seeds"]]
        d2.download_button("Download images (zip)", lambda: zip_pngs(images, names), "images.zip",
                           "application/zip", on_click="ignore", width="stretch")
        st.caption("Reproduce on the command line:")
        st.code(result["command"], language="bash", wrap_lines=True)
