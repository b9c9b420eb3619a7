"""Running pages under app.py's st.navigation, also when Streamlit starts them on its own."""
from __future__ import annotations

import importlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st

_RUN = threading.local()


@contextmanager
def navigation_run(title: str) -> Iterator[None]:
    """Wrap app.py's page.run(): pages inside know they run under the app's navigation; an error that escapes a
    page becomes an st.error naming the page instead of a traceback."""
    _RUN.active = True
    try:
        yield
    except Exception as e:  # noqa: BLE001 - Streamlit's rerun/stop signals are BaseExceptions and pass through
        st.error(f"The {title} page failed: {str(e) or type(e).__name__}")
    finally:
        _RUN.active = False


def under_apptest() -> bool:
    """Whether this run is streamlit.testing's AppTest (its sessions carry a fixed id)."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    return ctx is not None and getattr(ctx, "session_id", "") == "test session id"


def require_app() -> None:
    """Rerun a page that Streamlit ran without app.py through app.py's st.navigation, at the same URL.

    Streamlit treats a folder named pages/ as a legacy multipage app until st.navigation is first called, so
    the very first visitor of /explore would get the page without app.py's layout and menu.
    """
    if getattr(_RUN, "active", False) or under_apptest():
        return  # AppTest restarts the legacy mode on every run: a rerun there would drop the simulated clicks
    try:
        from streamlit.runtime.pages_manager import PagesManager

        PagesManager.uses_pages_directory = False  # leave the legacy mode for good
    except ImportError:  # a Streamlit without the legacy mode: switch to the main script instead
        st.switch_page("app.py")
    st.rerun()


@st.cache_resource(show_spinner=False)
def _warm_imports() -> threading.Thread:
    thread = threading.Thread(target=lambda: importlib.import_module("sklearn.manifold"), name="lwgen-imports",
                              daemon=True)
    thread.start()
    return thread


def warm_imports() -> None:
    """Import scikit-learn's t-SNE in the background, once per process, after the first page is drawn: the pages
    that draw no map do not wait the second it takes, and Explore's first t-SNE map does not either."""
    if not under_apptest():
        _warm_imports()
