"""Label: a grid of images from a queue; accept suggestions, label a selection, reject, undo."""

from __future__ import annotations

import streamlit as st
from sqlalchemy.orm import Session

from db import Catalogue, ops
from labeller import common, grid, labelling
from labeller.labelling import QUEUE_KINDS, QueueSpec

P = "lab_"  # widget key prefix of this page
GRID_KEY = "label_grid"
PAGE_KEY = "label_page"


def _queue_controls(cat: Catalogue, run_id: int | None) -> tuple[QueueSpec, int]:
    """The queue picker; changing it starts again at the first page."""
    top = st.columns([3, 4, 2], vertical_alignment="bottom")
    kind = top[0].selectbox(
        "Queue",
        list(QUEUE_KINDS),
        format_func=QUEUE_KINDS.__getitem__,
        key=f"{P}queue",
    )
    page_size = top[2].select_slider(
        "Images per page", grid.PAGE_SIZES, value=grid.DEFAULT_PAGE_SIZE, key=f"{P}page_size"
    )
    spec = QueueSpec(kind=kind)
    with cat.read() as s, top[1]:
        if kind == "uncertain":
            st.caption(
                "Unlabelled images, the ones the active model is least sure about first."
                if run_id
                else "No active run yet: unlabelled images in the order they came in."
            )
        elif kind == "suggested":
            options = labelling.suggested_choices(s, run_id) if run_id else []
            pick = st.selectbox(
                "Suggested model / SKU",
                options,
                index=None,
                format_func=lambda o: f"{grid.weak_label(o[0], o[1])} ({o[2]})",
                key=f"{P}suggested",
                placeholder="Any suggestion" if run_id else "No active run",
            )
            spec = QueueSpec(
                kind=kind,
                suggested_model=pick[0] if pick else None,
                suggested_sku=pick[1] if pick else None,
            )
        elif kind == "weak":
            options = labelling.weak_choices(s)
            pick = st.selectbox(
                "Weak label",
                options,
                index=None,
                format_func=lambda o: f"{grid.weak_label(o[0], o[1])} ({o[2]})",
                key=f"{P}weak",
                placeholder="Any weak label",
            )
            spec = QueueSpec(
                kind=kind, weak_model=pick[0] if pick else None, weak_sku=pick[1] if pick else None
            )
        elif kind == "duplicates":
            st.caption("Unlabelled images grouped by near-duplicate group.")
        else:
            spec = _filter_controls(cat, s)
    fingerprint = (spec, page_size)
    if st.session_state.get(f"{P}fingerprint") != fingerprint:
        st.session_state[f"{P}fingerprint"] = fingerprint
        st.session_state[PAGE_KEY] = 0
        st.session_state.pop(GRID_KEY, None)
    return spec, page_size


def _filter_controls(cat: Catalogue, session: Session) -> QueueSpec:
    choices = common.label_choices(cat)
    c = st.columns(5)
    status = c[0].selectbox("Status", labelling.STATUS_CHOICES, key=f"{P}f_status")
    split = c[1].selectbox("Split", labelling.SPLIT_CHOICES, key=f"{P}f_split")
    source = c[2].selectbox(
        "Source",
        labelling.source_kinds(session),
        index=None,
        key=f"{P}f_source",
        placeholder="Any",
    )
    model = c[3].selectbox(
        "Model", choices.models, index=None, key=f"{P}f_model", placeholder="Any"
    )
    sku = c[4].selectbox(
        "SKU",
        [s.style_code for s in choices.skus_of(model)],
        index=None,
        key=f"{P}f_sku",
        placeholder="Any",
    )
    return QueueSpec(
        kind="filter", status=status, split=split, source_kind=source, model=model, sku=sku
    )


def _current_grid(
    cat: Catalogue, spec: QueueSpec, page_size: int, run_id: int | None, user: str
) -> labelling.GridPage:
    """The page shown, loaded (and claimed) once; ticking boxes re-renders it without a query."""
    page = int(st.session_state.get(PAGE_KEY, 0))
    cached: labelling.GridPage | None = st.session_state.get(GRID_KEY)
    if cached is None or cached.page != page or cached.run_id != run_id:
        cached = labelling.load_page(
            cat, spec, run_id=run_id, user=user, page=page, page_size=page_size
        )
        st.session_state[GRID_KEY] = cached
    return cached


def _reload() -> None:
    st.session_state.pop(GRID_KEY, None)


@st.fragment
def _grid_fragment(spec: QueueSpec, page_size: int, run_id: int | None, user: str) -> None:
    cat = common.catalogue()
    choices = common.label_choices(cat)
    page = _current_grid(cat, spec, page_size, run_id, user)
    cards = page.cards

    bar = st.columns([3, 2, 2, 2, 2, 2], vertical_alignment="center")
    accept = bar[0].button(
        "Accept ticked suggestions",
        type="primary",
        key=f"{P}accept",
        shortcut="A",
        icon=":material/done_all:",
        disabled=not any(c.suggestion for c in cards),
        width="stretch",
    )
    reject = bar[1].button(
        "Reject selected", key=f"{P}reject", shortcut="X", icon=":material/delete:", width="stretch"
    )
    undo = bar[2].button(
        "Undo", key=f"{P}undo", shortcut="U", icon=":material/undo:", width="stretch"
    )
    select_all = bar[3].button("Select all", key=f"{P}select_all", width="stretch")
    prev = bar[4].button(
        "Previous",
        key=f"{P}prev",
        disabled=page.page == 0,
        icon=":material/chevron_left:",
        width="stretch",
    )
    nxt = bar[5].button(
        "Next page", key=f"{P}next", shortcut="N", icon=":material/chevron_right:", width="stretch"
    )

    with st.container(border=True):
        model, sku = common.label_picker(cat, choices, P)
        lc = st.columns([2, 2, 6], vertical_alignment="center")
        do_label = lc[0].button(
            "Label selected",
            key=f"{P}label",
            shortcut="L",
            icon=":material/sell:",
            width="stretch",
            disabled=not (model or sku),
        )
        clear = lc[1].button("Clear selection", key=f"{P}clear", width="stretch")

    try:
        message = _act(
            cat,
            cards,
            user,
            accept=accept,
            reject=reject,
            undo=undo,
            label=(model, sku) if do_label else None,
            choices=choices,
        )
    except ops.CatalogueError as exc:
        st.error(str(exc))
        message = None
    if message:
        common.notify(message)
        _reload()
    if select_all or clear:
        common.set_selection(cards, P, bool(select_all))
    if nxt or prev:
        st.session_state[PAGE_KEY] = max(0, page.page + (1 if nxt else -1))
        _reload()

    page = _current_grid(cat, spec, page_size, run_id, user)
    st.caption(
        grid.page_caption(page.total, page.page, page.page_size, len(page.cards))
        + " · keys: A accept · X reject · U undo · N next page · L label selected"
    )
    if not page.cards:
        st.info("Nothing to label here. Pick another queue, or load more images.")
        return
    common.card_grid(cat, page.cards, prefix=P, accept_default=True, run_id=run_id)


def _act(
    cat: Catalogue,
    cards: list,
    user: str,
    *,
    accept: bool,
    reject: bool,
    undo: bool,
    label: tuple[str | None, str | None] | None,
    choices: labelling.LabelChoices,
) -> str | None:
    """Do the clicked action; returns what to tell the user."""
    if undo:
        return common.undo(cat, user)
    action = None
    if accept:
        chosen = grid.acceptable(cards, common.ticked_ids(cards, P, accept_default=True))
        if not chosen:
            raise ops.CatalogueError("no ticked suggestions on this page")
        action = labelling.accept_suggestions(cat, chosen, user)
        for why in action.skipped[:5]:
            st.warning(why)
    elif reject:
        action = labelling.reject_images(cat, common.selected_ids(cards, P), user)
    elif label is not None:
        model, sku = label
        common.ensure_sku(cat, choices, model, sku, user)
        action = labelling.label_images(cat, common.selected_ids(cards, P), model, sku, user)
    if action is None:
        return None
    common.push_action(action)
    common.forget_boxes(action.image_ids, P)
    return action.message


def render() -> None:
    st.header("Label")
    cat = common.catalogue()
    if common.image_count(cat) == 0:
        st.info("The catalogue is empty: load the demo data or import a folder on Overview.")
        return
    user = common.require_user()
    if user is None:
        return
    with cat.read() as s:
        run = labelling.active_run(s)
        run_id = run.id if run else None
        run_name = (run.name or f"run {run.id}") if run else None
    spec, page_size = _queue_controls(cat, run_id)
    if run_name:
        st.caption(f"Suggestions from the active run: **{run_name}**")
    _grid_fragment(spec, page_size, run_id, user)
