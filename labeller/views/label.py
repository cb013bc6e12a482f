"""Label: a grid of images from a queue; accept suggestions, label a selection, reject, undo."""

from __future__ import annotations

import streamlit as st
from sqlalchemy.orm import Session

from db import Catalogue, ops
from labeller import common, grid, jobs, labelling
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
                "Unlabelled sneakers, the ones the active model is least sure about first "
                "(what it calls an unknown model is in “Likely junk”)."
                if run_id
                else "No active run yet: unlabelled images in the order they came in."
            )
        elif kind == "junk":
            st.caption(
                "Unlabelled images the active model recognises as no sneaker model it knows: "
                "boxes, charts, T-shirts, … Select all, untick the sneakers, press X."
                if run_id
                else "No active run yet: without a model nothing is known to be junk."
            )
        elif kind == "missing_sku":
            spec = _missing_sku_controls(s)
        elif kind == "suggested":
            model, sku = _label_choice(
                "Suggested model / SKU",
                labelling.suggested_choices(s, run_id) if run_id else [],
                f"{P}suggested",
                "Any suggestion" if run_id else "No active run",
            )
            spec = QueueSpec(kind=kind, suggested_model=model, suggested_sku=sku)
        elif kind == "weak":
            model, sku = _label_choice(
                "Weak label", labelling.weak_choices(s), f"{P}weak", "Any weak label"
            )
            spec = QueueSpec(kind=kind, weak_model=model, weak_sku=sku)
            _prefill_pickers(cat, (model, sku) if model or sku else None)
        elif kind == "duplicates":
            groups, images = labelling.duplicate_summary(s)
            st.caption(
                f"{images:,} unlabelled images in {groups:,} near-duplicate groups, group by "
                "group (then the images in no group)."
                if groups
                else "No near-duplicate groups found yet: find them below."
            )
        else:
            spec = _filter_controls(cat, s)
    fingerprint = (spec, page_size)
    if st.session_state.get(f"{P}fingerprint") != fingerprint:
        st.session_state[f"{P}fingerprint"] = fingerprint
        st.session_state[PAGE_KEY] = 0
        st.session_state.pop(GRID_KEY, None)
    return spec, page_size


def _label_choice(
    label: str, counted: list[tuple[str | None, str | None, int]], key: str, placeholder: str
) -> tuple[str | None, str | None]:
    """A picker of (model, SKU) pairs with their image counts.

    Its values are the pairs' keys, not the counted tuples, so a choice stays chosen while
    labelling changes the counts.
    """
    counts = {labelling.choice_key(m, k): n for m, k, n in counted}
    chosen = st.session_state.get(key)
    if chosen and chosen not in counts:
        counts[chosen] = 0  # labelled to the end: still chosen, now empty
    picked = st.selectbox(
        label,
        list(counts),
        index=None,
        format_func=lambda c: f"{labelling.choice_text(c)} ({counts.get(c, 0):,})",
        key=key,
        placeholder=placeholder,
    )
    return labelling.split_choice_key(picked)


def _prefill_pickers(cat: Catalogue, pick: tuple[str | None, str | None] | None) -> None:
    """A newly chosen weak label fills the label pickers with what it names (where known).

    Labelling a page of one weak label is then: untick nothing, select all, Label selected.
    """
    last = st.session_state.get(f"{P}weak_prefilled")
    if pick == last:
        return
    st.session_state[f"{P}weak_prefilled"] = pick
    if pick is None:
        return
    model, sku = labelling.prefill_from_weak(common.label_choices(cat), pick[0], pick[1])
    if model:
        st.session_state[f"{P}pick_model"] = model
        st.session_state[f"{P}pick_sku"] = sku


def _missing_sku_controls(session: Session) -> QueueSpec:
    """Images labelled with a model and no SKU, model by model."""
    counts = labelling.missing_sku_counts(session)
    total = sum(counts.values())
    model = st.selectbox(
        "Model",
        list(counts),
        index=None,
        format_func=lambda m: f"{m} ({counts.get(m, 0):,} without SKU)",
        key=f"{P}missing_model",
        placeholder=f"All models ({total:,} images without SKU)",
    )
    return QueueSpec(kind="missing_sku", model=model)


def _sku_buttons(
    cat: Catalogue, choices: labelling.LabelChoices, cards: list, spec: QueueSpec, user: str
) -> str | None:
    """One button per SKU of the queue's model: gives the selected images that SKU."""
    models = [spec.model] if spec.model else sorted({c.model for c in cards if c.model})
    if len(models) != 1:
        st.caption("Choose a model above to give its SKUs in one click per SKU.")
        return None
    skus = choices.skus_of(models[0])[:24]
    if not skus:
        return None
    st.caption(f"Give the selected images an SKU of **{models[0]}**:")
    clicked = None
    for row in grid.rows(skus, 6):
        cols = st.columns(6)
        for col, sku in zip(cols, row, strict=False):
            colour = f" · {sku.colourway}" if sku.colourway else ""
            if col.button(
                f"{sku.style_code}{colour}",
                key=f"{P}give_{sku.style_code}",
                width="stretch",
                help=sku.text,
            ):
                clicked = sku.style_code
    if clicked is None:
        return None
    ids = common.selected_ids(cards, P)
    if not ids:
        raise ops.CatalogueError("select images to give that SKU first")
    action = labelling.label_images(cat, ids, models[0], clicked, user)
    common.push_action(action)
    common.forget_boxes(action.image_ids, P)
    return action.message


def _find_duplicates(cat: Catalogue) -> None:
    """Near-duplicate groups are found outside the app (``python -m db duplicates --apply``).

    When a search ends, the page shown is loaded again, now in group order.
    """
    status = jobs.job_status(cat, jobs.DUPLICATES)
    running = status is not None and status.running
    mark = (status.job.pid, running) if status else None
    if st.session_state.get(f"{P}dups_seen", mark) != mark and not running:
        _reload()
    st.session_state[f"{P}dups_seen"] = mark
    common.job_button(
        jobs.DUPLICATES,
        "Find near-duplicates",
        key=f"{P}find_dups",
        icon=":material/content_copy:",
        help="Runs `python -m db duplicates --apply` in the background: perceptual hashes, "
        "mirrored copies and cached embeddings. Labelling goes on meanwhile.",
        running=running,
    )


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

    bar = st.columns([3, 3, 2, 2, 2, 2], vertical_alignment="center")
    accept = bar[0].button(
        "Accept ticked",
        type="primary",
        key=f"{P}accept",
        shortcut="A",
        icon=":material/done_all:",
        disabled=not any(c.suggestion for c in cards),
        width="stretch",
        help="Label every ticked card with its suggestion",
    )
    reject = bar[1].button(
        "Reject selected", key=f"{P}reject", shortcut="X", icon=":material/delete:", width="stretch"
    )
    undo = bar[2].button(
        "Undo",
        key=f"{P}undo",
        shortcut="U",
        icon=":material/undo:",
        width="stretch",
    )
    select_all = bar[3].button("Select all", key=f"{P}select_all", width="stretch")
    prev = bar[4].button(
        "Back",
        key=f"{P}prev",
        disabled=page.page == 0,
        icon=":material/chevron_left:",
        width="stretch",
        help="Previous page",
    )
    nxt = bar[5].button(
        "Next",
        key=f"{P}next",
        shortcut="N",
        icon=":material/chevron_right:",
        width="stretch",
        help="Next page",
    )

    with st.container(border=True):
        picked = common.label_picker(cat, choices, P)
        lc = st.columns([2, 2, 6], vertical_alignment="center")
        do_label = lc[0].button(
            "Label selected",
            key=f"{P}label",
            shortcut="L",
            icon=":material/sell:",
            width="stretch",
            disabled=not picked.ready,
        )
        clear = lc[1].button("Clear selection", key=f"{P}clear", width="stretch")

    try:
        message = None
        if spec.kind == "missing_sku":
            message = _sku_buttons(cat, choices, cards, spec, user)
        message = message or _act(
            cat,
            cards,
            user,
            accept=accept,
            reject=reject,
            undo=undo,
            label=(picked.model, picked.typed) if do_label else None,
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
        + " · keys: A accept ticked · X reject selected · U undo · N next page · L label "
        f"selected · **U undoes:** {common.undo_hint(cat, user)}"
    )
    if not page.cards:
        st.info("Nothing to label here. Pick another queue, or load more images.")
        return
    no_sku = sum(
        1 for c in page.cards if c.suggestion and c.suggestion.usable and not c.suggestion.sku
    )
    if no_sku and spec.kind != "missing_sku":
        st.caption(
            f":material/info: {no_sku:,} card{'s' if no_sku != 1 else ''} on this page "
            "suggest a model with SKU unknown: accepting gives those a model and no SKU "
            f"(they then wait in “{QUEUE_KINDS['missing_sku']}”)."
        )
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
        ids = common.selected_ids(cards, P)
        if not ids:
            raise ops.CatalogueError("select images to label first")
        picked = common.ensure_sku(cat, choices, label[0], label[1], user)
        action = labelling.label_images(cat, ids, picked.model, picked.sku, user)
    if action is None:
        return None
    common.push_action(action)
    common.forget_boxes(action.image_ids, P)
    return action.message


def _suggestions_note(cat: Catalogue, run_id: int | None, run_name: str | None) -> None:
    if run_id is None:
        st.caption(
            "No active model yet, so no suggestions: label by hand (the weak-label queue "
            "fills the pickers), then train and promote a run on the Train page."
        )
        return
    with cat.read() as s:
        covered, unlabelled = labelling.suggestion_coverage(s, run_id)
    if unlabelled and not covered:
        st.info(
            f"The active run **{run_name}** has no suggestions yet: refresh them on the Train "
            "page (they are computed in the background).",
            icon=":material/smart_toy:",
        )
    else:
        st.caption(
            f"Suggestions from the active run **{run_name}** for {covered:,} of "
            f"{unlabelled:,} unlabelled images."
        )


def render() -> None:
    st.title("Label")
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
    _suggestions_note(cat, run_id, run_name)
    if spec.kind == "duplicates":
        _find_duplicates(cat)
    common.keyboard_shortcuts(
        {"a": f"{P}accept", "x": f"{P}reject", "u": f"{P}undo", "n": f"{P}next", "l": f"{P}label"}
    )
    _grid_fragment(spec, page_size, run_id, user)
