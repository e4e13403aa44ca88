"""sevis dashboard: what SE and SGE attention layers do, for images you upload.

    sevis dashboard            # from the installed package
    streamlit run app.py       # from a checkout (app.py calls main())

Environment: ``SEVIS_PLUGINS`` (modules to import first, e.g. ones that register
models or attention classes), ``SEVIS_DASHBOARD_MODELS`` (``Label=name,...``: the
networks the model panel offers; default SE-ResNet-50 and SGE-ResNet-50); for a shared
server, ``SEVIS_ALLOWED_USERS``, ``SEVIS_SERVER_DIRS``, ``SEVIS_UPLOAD_DIR``,
``SEVIS_MAX_CONCURRENT_RUNS``, ``SEVIS_SESSION_THREADS`` and the limits of
:mod:`sevis.limits` (the docs' "Running it for a group").
"""

import os

import streamlit as st

from sevis.app import VIEWS
from sevis.app.services import load_plugins, run_slot
from sevis.app.state import new_exports, set_models
from sevis.app.widgets import login_gate, model_panel

__all__ = ["main"]


def main() -> None:
    """Draw the dashboard: the model panel in the sidebar, then the chosen page."""
    st.set_page_config(page_title="sevis: SE and SGE attention", page_icon="🔎", layout="wide")
    login_gate()  # only with [auth] in the secrets: see the docs, "Running it for a group"

    for module, error in load_plugins(os.environ.get("SEVIS_PLUGINS", "")).items():
        st.error(f"Plugin {module} could not be loaded ({error}); the dashboard runs without it.")

    page = st.navigation(
        [
            st.Page(VIEWS / "images.py", title="Images", icon=":material/image:", default=True),
            st.Page(VIEWS / "classes.py", title="Classes", icon=":material/stacked_line_chart:"),
            st.Page(VIEWS / "compare.py", title="SE vs SGE", icon=":material/compare:"),
            st.Page(VIEWS / "channels.py", title="Channels", icon=":material/tune:"),
        ]
    )
    # NOTE a bounded number of sessions draw at once (SEVIS_MAX_CONCURRENT_RUNS): the others
    # wait their turn without CPU, so the server keeps answering through a burst of sessions.
    with run_slot():
        set_models(model_panel())
        st.sidebar.caption(
            "SE: Hu et al., arXiv:1709.01507 · SGE: Li et al., arXiv:1905.09646 · "
            "Models are loaded once per server and shared by every session."
        )
        new_exports()  # what this run draws, for the page's Export all button
        page.run()


if __name__ == "__main__":
    main()
