"""Train: a generator on your own images and CSV with `lwgen fit`, run as its own process, with live progress."""
import hashlib
import re
import shlex
from pathlib import Path

import pandas as pd
import streamlit as st

from lwgen.app import jobs, ui
from lwgen.app.figures import loss_figure
from lwgen.app.navigation import require_app
from lwgen.app.paths import display_path, runs_root
from lwgen.fit import budget, check_data, read_state
from lwgen.fit.cli import autoencoder_init
from lwgen.fit.plan import SCHEDULES
from lwgen.fit.state import identity
from lwgen.precision import cpu_bf16_native

REFRESH_S = 2.0
QUICK_MINUTES, DEFAULT_MINUTES = 5.0, 60.0
SOURCES = ("A folder on this server", "Upload a zip", "Demo: synthetic shapes")
NONE = "(none)"


def choose_data() -> Path | None:
    """The data folder from the chosen source, or None until there is one."""
    source = st.radio("Data", SOURCES, key="train:source", horizontal=True)
    if source == SOURCES[0]:
        text = st.text_input("Folder with the images and the annotation CSV", key="train:folder",
                             placeholder="/path/to/my_data")
        if not text.strip():
            return None
        folder = Path(text.strip()).expanduser()
        if not folder.is_dir():
            st.error(f"{folder}: no such folder on this server")
            return None
        return folder
    if source == SOURCES[1]:
        upload = st.file_uploader(f"A zip of images (PNG, JPEG, WebP, ...) and one CSV, at most {jobs.ZIP_LIMIT_MB} MB",
                                  type=["zip"], key="train:zip")
        if upload is None:
            return None
        data = upload.getvalue()
        digest = hashlib.sha1(data).hexdigest()[:12]
        key = f"train:unzipped:{digest}"
        if key not in st.session_state:
            try:
                st.session_state[key] = str(jobs.extract_zip(data, runs_root() / ".uploads" / digest))
            except jobs.JobError as e:
                st.error(f"{upload.name}: {e}")
                return None
        st.caption(f"Unpacked to `{display_path(st.session_state[key])}`.")
        return Path(st.session_state[key])
    folder = runs_root() / ".demo-shapes"
    if not (folder / "annotations.csv").is_file():
        st.caption("512 coloured shapes of 64 px (shape, color, size): `lwgen data shapes --out "
                   f"{display_path(folder)}`.")
        if not st.button("Make the demo data", key="train:demo"):
            return None
        with st.spinner("Drawing 512 shapes..."):
            jobs.demo_data(folder)
    return folder


def choose_columns(folder: Path) -> dict | None:
    """CSV, file column, attributes and text column; None until the choice is complete."""
    csvs = jobs.csv_files(folder)
    if not csvs:
        st.error(f"{folder}: no CSV file (the annotation table) in this folder")
        return None
    csv = st.selectbox("Annotation CSV", csvs, key="train:csv")
    columns = None
    with ui.guard("Reading the CSV"):
        columns = jobs.csv_columns(folder, csv)
    if not columns:
        return None
    c1, c2, c3 = st.columns([1, 2, 1])
    guess = next((c for c in columns if c.lower() in ("file", "path", "image", "filename")), columns[0])
    file_column = c1.selectbox("File column", columns, index=columns.index(guess), key="train:file")
    rest = [c for c in columns if c != file_column]
    default = [c for c in rest if c not in ("split", "text", "name", "hexcode")][:2]
    attributes = c2.multiselect("Condition on", rest, default=default, key="train:attributes",
                                help="the CSV columns whose values you will choose when generating")
    text_options = [NONE] + [c for c in rest if c not in attributes]
    text = c3.selectbox("Text column", text_options, key="train:text",
                        index=text_options.index("text") if "text" in text_options else 0,
                        help="words describing each image: the generator then also takes prompts")
    if not attributes:
        st.info("Choose at least one column to condition on.")
        return None
    return {"data": folder, "csv": csv, "file_column": file_column, "attributes": attributes,
            "text_column": "" if text == NONE else text}


def validation(choice: dict) -> object | None:
    """The data check of the current choice (run on request, kept for the session)."""
    key = "train:report:" + repr(sorted((k, str(v)) for k, v in choice.items()))
    if key not in st.session_state:
        if not st.button("Check the data", key="train:check", type="primary"):
            return None
        with st.spinner("Loading every image..."):
            try:
                st.session_state[key] = check_data(choice["data"], choice["attributes"], choice["csv"],
                                                   choice["file_column"], choice["text_column"])
            except Exception as e:  # noqa: BLE001 - a missing column, an empty CSV: said, not raised
                st.error(f"The data cannot be used: {e}")
                return None
    report = st.session_state[key]
    st.markdown(f"**{report.images} usable images** of {report.rows} rows in `{display_path(report.csv)}`")
    cols = st.columns(len(report.counts))
    for col, (attribute, counts) in zip(cols, report.counts.items()):
        col.dataframe(pd.DataFrame(sorted(counts.items(), key=lambda t: -t[1]), columns=[attribute, "images"]),
                      hide_index=True, height=min(36 * (len(counts) + 1) + 3, 300))
    if report.skipped:
        st.warning(f"{len(report.skipped)} bad rows: they stop the training unless you skip them.")
        st.dataframe(pd.DataFrame(report.skipped).rename(columns={"error": "reason"}), hide_index=True)
    return report


def start_form(choice: dict, report) -> None:
    """Budget, schedule and name; Start launches `lwgen fit` as its own process."""
    skip = False
    if report.skipped:
        skip = st.checkbox(f"Skip the {len(report.skipped)} bad rows", key="train:skip")
    c1, c2, c3 = st.columns(3)
    quick = c1.toggle(f"Quick preview ({QUICK_MINUTES:g} min)", key="train:quick")
    minutes = QUICK_MINUTES if quick else c1.number_input("Budget (minutes)", 1.0, 24 * 60.0, DEFAULT_MINUTES, 5.0,
                                                          key="train:minutes")
    if quick:  # one generator gets the whole budget, with the short-run settings (`lwgen fit` adds them)
        schedule = "linear"
        c2.caption("Quick preview: one generator (linear schedule) with the settings that learn fastest in short "
                   "runs.")
    else:
        schedule = c2.selectbox("Noise schedule", ("both", "cosine", "linear"), key="train:schedule",
                                help="both trains one generator per schedule, one after the other")
    name = c3.text_input("Output name", value=re.sub(r"[^A-Za-z0-9._-]+", "-", choice["data"].name).strip("-._")
                         + "-fit", key="train:name",
                         help="the fit is written to runs/NAME")
    with st.expander("Evaluation"):
        e1, e2 = st.columns(2)
        eval_n = e1.number_input("Images generated to score each generator", 8, 5000, 300, 50, key="train:eval_n",
                                 help="more images: steadier metrics, longer evaluation after training")
        grid_n = e2.number_input("Images per sample grid", 1, 64, 8, 1, key="train:grid_n")
    fine_tune = autoencoder_init("shipped") is not None
    shares = budget(minutes, SCHEDULES[schedule], fine_tune=fine_tune)
    st.caption("Budget per stage: " + ", ".join(f"{k} {v:.1f} min" for k, v in shares.items())
               + (" (the autoencoder fine-tunes the shipped one)" if fine_tune else "")
               + "; then each generator is scored and one sample grid per value of "
               + f"`{choice['attributes'][0]}` is drawn.")
    if not cpu_bf16_native():
        st.caption("This CPU has no bfloat16 instructions (AVX-512 BF16 or AMX), so training runs in float32: a "
                   "minute buys about a quarter of the steps of one that has them (README, Speed), and a budget "
                   "gives less than the README's figures for it.")
    problem, force = None, False
    try:
        out = jobs.run_folder(name)
    except jobs.JobError as e:
        problem, out = str(e), None
    if out is not None and out.is_dir() and any(p.name != "fit.log" for p in out.iterdir()):
        state = None
        with ui.guard(f"Reading {out}"):
            state = read_state(out)
        same = state is not None and state.get("identity") == identity(
            choice["data"], choice["csv"], choice["file_column"], choice["attributes"], choice["text_column"])
        if same:
            st.info(f"`{display_path(out)}` holds an earlier fit of this data: Start continues it (finished stages "
                    "are kept).")
        else:
            force = st.checkbox(f"`{display_path(out)}` holds something else: replace it", key="train:force")
            problem = None if force else f"{display_path(out)} is not empty; choose another name"
    if report.skipped and not skip:
        problem = "tick 'Skip the bad rows' or fix them"
    lock = jobs.read_lock()
    if lock is not None:
        problem = (f"another training is running ({display_path(lock.get('out', '?'))}, pid {lock.get('pid', '?')}); "
                   "one training at a time on this machine")
    argv = jobs.fit_argv(choice["data"], choice["attributes"], minutes, out or Path("runs/NAME"), schedule,
                         choice["csv"], choice["file_column"], choice["text_column"], skip, force,
                         extra=["--eval-n", str(int(eval_n)), "--grid-n", str(int(grid_n))])
    st.code(shlex.join(["lwgen", *argv]), language="bash")
    if problem:
        st.caption(f"Cannot start: {problem}.")
    if st.button("Start training", key="train:start", type="primary", disabled=problem is not None):
        with ui.guard("Starting the training"):
            jobs.start(argv, out)
            st.session_state["train:shown"] = str(out)
            st.rerun()


def show_card(out: Path, card: dict) -> None:
    """A finished fit: where its generators are, their metrics and the sample grids."""
    st.success("Done. The generators are now on the Generate page: "
               + ", ".join(f"`{display_path(out / k)}`" for k in card["paths"] if k.startswith("diffusion-")))
    rows = [{"schedule": s, **{k: v for k, v in m.items() if k in ("fid", "kid") or k.endswith("_top1")}}
            for s, m in card["metrics"].items()]
    st.dataframe(pd.DataFrame(rows), hide_index=True)
    for schedule, grids in card.get("samples", {}).items():
        st.markdown(f"**{schedule}**: one grid per value of `{card['attributes'][0]}`")
        cols = st.columns(min(2, max(1, len(grids))))
        for i, (value, path) in enumerate(grids.items()):
            if (out / path).is_file():
                cols[i % len(cols)].image(str(out / path), caption=value)
    with st.expander("fit.json"):
        st.json(card, expanded=False)


def progress_view(out: Path) -> None:
    """The progress of the fit in `out`, as its files show it now."""
    p = jobs.progress(out)
    phase = p.phase
    key = f"train:phase:{out}"
    if st.session_state.get(key) == "running" and phase != "running":
        st.session_state[key] = phase
        st.rerun(scope="app")  # the lock is free again: the form below may start a training
    st.session_state[key] = phase
    left = p.budget_left_s
    st.markdown(f"**`{display_path(out)}`**: {phase}"
                + (f" (about {left / 60:.1f} min of training budget left; evaluation not counted)"
                   if phase == "running" and left is not None else ""))
    if p.state is None:
        st.caption("Waiting for the fit to start...")
    current = p.current
    if current and phase != "done":
        names = p.stages or [current]
        k = names.index(current) + 1 if current in names else 0
        st.markdown(f"stage {k}/{len(names)}: **{current}**")
        s = p.status
        if s and s.get("stage"):
            st.progress(min(1.0, float(s.get("progress") or 0.0)))
            c = st.columns(4)
            c[0].metric("step", s.get("step"))
            rate = s.get("images_per_s")
            c[1].metric("images/s", "-" if rate is None else f"{rate:.1f}")
            left = s.get("time_left_s")
            c[2].metric("time left", "-" if left is None else f"{left / 60:.1f} min")
            loss = s.get("loss")
            c[3].metric("loss", "-" if loss is None else f"{loss:.4f}")
            if len(s.get("loss_history") or []) >= 2:  # a point every 10 steps
                st.plotly_chart(loss_figure(s["loss_history"], height=220), key="train:loss")
            preview = s.get("preview")
            if preview and (Path(p.state["stages"][current]["path"]) / preview).is_file():
                st.image(str(Path(p.state["stages"][current]["path"]) / preview), caption="latest preview",
                         width=480)
    if phase == "running":
        if st.button("Stop", key="train:stop", help="SIGTERM: the trainer saves; Resume continues from there"):
            with ui.guard("Stopping"):
                jobs.stop()
    elif phase in ("stopped", "failed"):
        st.caption("Resume runs the same command again: finished stages are skipped, the unfinished one continues.")
        if st.button("Resume", key="train:resume", disabled=jobs.read_lock() is not None):
            with ui.guard("Resuming"):
                jobs.resume(out)
                st.rerun(scope="app")
    if p.card:
        show_card(out, p.card)
    if p.log_tail:
        with st.expander("fit.log (last lines)", expanded=phase == "failed"):
            st.code(p.log_tail)


live = st.fragment(run_every=REFRESH_S)(progress_view)  # re-read every few seconds while the fit runs


def show(out: Path) -> None:
    """The fit's progress: refreshed while its process runs, drawn once otherwise."""
    p = jobs.progress(out)
    (live if p.running or p.state is None else progress_view)(out)


require_app()
st.title("Train")
st.caption("Train a generator on your own images and CSV: `lwgen fit` checks the data, trains an autoencoder, "
           "an evaluation classifier and a diffusion generator per schedule, then scores them. It runs as its own "
           "process: closing the browser does not stop it, and this page shows its progress again on return.")
lock = jobs.read_lock()
known = [str(p) for p in jobs.fits()]
shown = lock.get("out") if lock else st.session_state.get("train:shown")
if shown and shown not in known:
    known.insert(0, shown)
if shown and st.session_state.get("train:followed") != shown:  # a fit just started here or elsewhere: show it
    st.session_state["train:pick"] = st.session_state["train:followed"] = shown
if known:
    st.subheader("Progress")
    if st.session_state.get("train:pick") not in known:
        st.session_state.pop("train:pick", None)
    pick = st.selectbox("Fit", known, key="train:pick", format_func=display_path)
    show(Path(pick))
st.subheader("New training")
folder = choose_data()
if folder is not None:
    choice = choose_columns(folder)
    if choice is not None:
        report = validation(choice)
        if report is not None:
            start_form(choice, report)
