"""Tuning: the trials of an `lwgen tune` study, its best settings, and Optuna's views of the search."""
import streamlit as st

from lwgen.app import ui
from lwgen.app.navigation import require_app
from lwgen.app.tuning import (
    DEMO_STUDY,
    TUNE_HINT,
    best_config_command,
    best_trial,
    can_create,
    create_storage,
    default_storage,
    figures,
    load_study,
    shipped_study,
    state_counts,
    storage_problem,
    study_names,
    trials_frame,
)

require_app()
st.title("Tuning")
st.caption("Hyper-parameter searches of `lwgen tune`: each trial trains for a fixed time and is scored by its "
           "held-out loss (v-space denoising MSE at fixed noise; lower is better).")
url = st.text_input("Optuna storage", default_storage(), key="tune:storage",
                    help="the --storage URL of `lwgen tune`; an SQLite file is sqlite:///path/to/file.db")
problem = storage_problem(url)
if problem and can_create(url) and st.button("Create an empty study file", key="tune:create",
                                             help="writes a new SQLite file with Optuna's tables at this path"):
    with ui.guard("Creating the study file"):
        create_storage(url)
    problem = storage_problem(url)


def explain_tuning() -> None:
    """What a study is and the command that makes one, for a visitor who has none."""
    st.markdown(
        "**What this page is for.** `lwgen tune` searches training settings for you: it trains many short "
        "diffusion models (*trials*), each with other settings (learning rate, U-Net width, noise schedule, "
        "prediction target, batch size, ...), scores each by its held-out loss, and stops trials that fall "
        "behind early. All trials of one search form a *study*, which Optuna keeps in a database file. Once a "
        "study exists, this page shows its trials, the best settings with the command that trains them in full, "
        "and which settings mattered. The command below runs 20 trials of 2 minutes (about 40 minutes on two "
        "cores) and writes the study to `runs/tune.db`, the file this page reads by default:")
    st.code(TUNE_HINT, language="bash")


if problem:
    st.info(problem)
    explain_tuning()
    st.stop()
if url.strip() == shipped_study():
    st.info(f"This is the small demo study shipped with lwgen ({DEMO_STUDY}). A search of your own writes "
            "`runs/tune.db`, which this page opens from then on.")
    with st.expander("Run a search of your own"):
        explain_tuning()
names = None
with ui.guard("Reading the storage"):
    names = study_names(url)
if names is None:
    st.stop()
if not names:
    st.info(f"`{url}` holds no study yet.")
    explain_tuning()
    st.stop()
name = st.selectbox("Study", names, key="tune:study")
study = None
with ui.guard("Reading the study"):
    study = load_study(url, name)
if study is None:
    st.stop()
counts = state_counts(study)
best = best_trial(study)
cols = st.columns(5)
cols[0].metric("Trials", len(study.trials))
cols[1].metric("Completed", counts["complete"])
cols[2].metric("Pruned", counts["pruned"], help="stopped early: behind the median of earlier trials")
cols[3].metric("Failed / running", f"{counts['failed']} / {counts['running']}")
cols[4].metric("Best held-out loss", f"{best.value:.4f}" if best is not None else "-")
if best is not None:
    st.markdown(f"**Best: trial {best.number}** · " + " · ".join(
        f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in best.params.items()))
    command = best_config_command(best)
    if command:
        st.code(command, language="bash")
st.dataframe(trials_frame(study), hide_index=True, width="stretch")
views = figures(study)
for tab, (view, (fig, message)) in zip(st.tabs(list(views)), views.items()):
    with tab:
        if fig is None:
            st.info(message)
        else:
            st.plotly_chart(fig, key=f"tune:{name}:{view}")
