"""lwgen app: generate, compare, explore and inspect light-weight class-conditional diffusion models.

Run with `streamlit run app.py`; checkpoints are the shipped ones, ./runs and $LWGEN_CHECKPOINTS (lwgen/app/paths.py).
"""
import streamlit as st

from lwgen.app.navigation import navigation_run, warm_imports

st.set_page_config(page_title="lwgen", page_icon="🌀", layout="wide")

pages = [
    st.Page("pages/generate.py", title="Generate", icon=":material/auto_awesome:", default=True),
    st.Page("pages/compare.py", title="Compare", icon=":material/compare:"),
    st.Page("pages/explore.py", title="Explore", icon=":material/scatter_plot:"),
    st.Page("pages/lab.py", title="Embedding lab", icon=":material/science:"),
    st.Page("pages/models.py", title="Models", icon=":material/memory:"),
    st.Page("pages/tuning.py", title="Tuning", icon=":material/tune:"),
    st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
]
page = st.navigation(pages)
with st.sidebar:
    st.caption("lwgen: class-conditional diffusion that trains in about an hour on two CPU cores.")
try:
    with navigation_run(page.title):
        page.run()
finally:
    warm_imports()  # after the page is drawn (or stopped)
