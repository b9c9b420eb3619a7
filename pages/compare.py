"""Compare: the same condition and starting noise through two models or sampler settings, side by side."""
import streamlit as st
import torch

from lwgen.app import state, ui
from lwgen.app.conditions import describe, prompt_for, starting_condition, takes_text
from lwgen.app.estimates import Estimate, estimate
from lwgen.app.images import to_numpy
from lwgen.app.runner import condition_of, frame_steps, noise_shape, read_values, traced_sample

_, diffusion = ui.start_page(
    "Compare", "One condition, one seed: both runs start from the same noise, so every difference comes from the "
    "model (noise schedule) or the sampler settings. The strips show each run's clean-image prediction x0 at "
    "evenly spaced steps.")

sides = {}
cols = st.columns(2, gap="large")
for side, col, prefer in (("A", cols[0], ("linear",)), ("B", cols[1], ("cosine",))):
    with col:
        st.subheader(f"Run {side}")
        entry = ui.pick_checkpoint(diffusion, "Checkpoint", f"cmp:{side}:checkpoint", prefer=prefer)
        loaded = ui.load_or_error(entry)
        sampler, steps, guidance = ui.sampling_inputs(f"cmp:{side}")
        sides[side] = (entry, loaded, sampler, steps, guidance)
if any(s[1] is None for s in sides.values()):
    st.stop()

first = sides["A"][1].model
st.subheader("Condition")
combos = state.combinations(sides["A"][0], first)
values = ui.condition_inputs(first.vocab, combos, f"cmp:{sides['A'][0].name}", columns=4,
                             defaults=starting_condition(first.vocab))
with_text = [side for side, s in sides.items() if takes_text(s[1].model)]
prompt = ui.prompt_input(bool(with_text), "cmp:prompt", note="No prompt: neither checkpoint was trained with text, "
                                                             "so only the attributes steer them.")
if prompt and len(with_text) < len(sides):
    st.caption(f"Run {' and '.join(sorted(set(sides) - set(with_text)))} was trained without text: it ignores the "
               "prompt and uses the attributes alone.")
read = ui.prompt_reading_toggle([s[0].path for s in sides.values()], prompt, "cmp:read")
c1, c2, c3 = st.columns([1, 1, 2])
seed = int(c1.number_input("Seed", 0, 2**31 - 1, 0, key="cmp:seed"))
longest = max(s[3] for s in sides.values())
snapshots = int(c2.slider("Snapshots of x0", 0, min(12, longest), min(6, longest), key="cmp:snapshots",
                          help="how many clean-image predictions to keep, at evenly spaced steps of the longer run "
                               "(a shorter run keeps those it reaches)"))
shown = [i + 1 for i in frame_steps(longest, snapshots)] if snapshots else []
c2.caption("after steps " + ", ".join(map(str, shown)) if shown else "no snapshots")
run = c3.button("Run both", type="primary", width="stretch")
both = [estimate(s[1].model, 1, s[3], s[4]) for s in sides.values()]
expected = Estimate(sum(e.seconds for e in both), all(e.measured for e in both))
if expected.seconds >= ui.ESTIMATE_FROM:
    c3.caption(f"Both runs: {expected.text()}.")
ui.say_if_cancelled("cmp")

if run:
    with ui.guard("Comparing"), ui.cancellable("cmp") as cancel:
        shapes = {noise_shape(s[1].model) for s in sides.values()}
        if len(shapes) > 1:
            raise ValueError(f"{sides['A'][0].name} and {sides['B'][0].name} denoise different shapes ("
                             + " vs ".join("x".join(map(str, s)) for s in shapes) + "), so they cannot share noise")
        _, report = ui.progress_reporter("Sampling:")
        traces, readings = {}, {}
        for k, (side, (entry, loaded, sampler, steps, guidance)) in enumerate(sides.items()):
            model = loaded.model
            given, readings[side] = read_values(model, values, prompt_for(model, prompt)) if read else (values, [])
            cond = condition_of(model, given, prompt_for(model, prompt))
            keep = [i - 1 for i in shown if i <= steps]
            traces[side] = traced_sample(model, cond, seed, steps, sampler, guidance, keep, lock=loaded.lock,
                                         label=f"run {side} ({entry.name}), ", cancel=cancel,
                                         progress=lambda f, m, k=k: report((k + f) / 2, m))
        settings = {side: (entry.name, sampler, steps, guidance, bool(prompt_for(loaded.model, prompt)),
                           [(r.attribute, r.value, r.probability) for r in readings[side]])
                    for side, (entry, loaded, sampler, steps, guidance) in sides.items()}
        st.session_state["cmp:result"] = {"traces": traces, "values": dict(values), "prompt": prompt, "seed": seed,
                                          "settings": settings}

result = st.session_state.get("cmp:result")
if result is None:
    st.info("Pick two checkpoints (or one checkpoint with two sampler settings) and press **Run both**.")
    st.stop()
st.markdown(f"**{describe(result['values'], result.get('prompt'))}** · seed {result['seed']}")
out = st.columns(2, gap="large")
for side, col in zip(("A", "B"), out):
    trace = result["traces"][side]
    name, sampler, steps, guidance, used_prompt, side_readings = result["settings"][side]
    with col:
        unused = " · prompt ignored (no text)" if result.get("prompt") and not used_prompt else ""
        st.markdown(f"**Run {side}: {name}** · {sampler}, {steps} steps, guidance {guidance:g}{unused}")
        if side_readings:
            st.caption(ui.readings_text(side_readings))
        st.metric("Sampling time", f"{trace.seconds:.2f} s",
                  help="wall time of the run on this machine's CPU cores, shared with every other session and "
                       "program: under load the same run can take twice as long, so compare times measured one "
                       "after another, and repeat a run before trusting a difference")
        st.image(to_numpy(trace.image), caption=f"{name}: final image", width=256)
        if trace.frames:
            st.caption("Clean-image prediction x0 during sampling")
            ui.image_grid(torch.stack([f[2] for f in trace.frames]),
                          [f"step {i + 1} · t={t}" for i, t, _ in trace.frames], widest=6)
st.caption("Sampling times are wall times on CPU cores that every session and program here shares: the same run "
           "can take twice as long under load, so repeat a run before reading much into a difference.")
