"""skulab's app: ``streamlit run labeller/app.py``.

Builds the navigation of the seven pages; each page is a module of ``labeller.views``
with a ``render()`` function, imported when the page is opened, so that a page that
fails to import shows its error instead of taking the whole app down.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import streamlit as st

from labeller import common

PAGES: tuple[tuple[str, str, str], ...] = (
    ("overview", "Overview", ":material/dashboard:"),
    ("label", "Label", ":material/sell:"),
    ("review", "Review", ":material/rule:"),
    ("catalogue", "Catalogue", ":material/category:"),
    ("splits", "Splits", ":material/call_split:"),
    ("train", "Train", ":material/model_training:"),
    ("predict", "Predict", ":material/image_search:"),
)


def page_function(name: str) -> Callable[[], None]:
    """A function that imports ``labeller.views.<name>`` and calls its ``render()``."""

    def show() -> None:
        try:
            module = importlib.import_module(f"labeller.views.{name}")
        except ImportError as exc:
            st.error(f"The {name} page cannot be loaded (labeller/views/{name}.py): {exc}")
            st.exception(exc)
            return
        render = getattr(module, "render", None)
        if not callable(render):
            st.error(f"labeller/views/{name}.py has no render() function.")
            return
        render()

    show.__name__ = f"page_{name}"
    show.__qualname__ = show.__name__
    return show


def frame() -> str | None:
    """What every page shares: the labeller's name, the catalogue in use."""
    user = common.user_box()
    cat = common.catalogue()
    with st.sidebar:
        st.caption(f"Catalogue: `{cat.data_dir}`")
    return user


def navigation() -> st.Page:
    """The seven pages, in two sections; returns the page to run."""
    pages = [
        st.Page(page_function(name), title=title, icon=icon, url_path=name, default=i == 0)
        for i, (name, title, icon) in enumerate(PAGES)
    ]
    return st.navigation(
        {"Data": pages[:4], "Model": pages[4:]},
        position="sidebar",
    )


def main() -> None:
    # before the navigation: the favicon is then the app's own, not a page's Material icon,
    # which the browser would fetch from fonts.gstatic.com (an outside address)
    st.set_page_config(page_title="skulab", page_icon="👟", layout="wide")
    page = navigation()
    frame()
    page.run()


if __name__ == "__main__":
    main()
