"""Review: labels that the model or the pages' weak labels contradict; confirm or fix them."""

from __future__ import annotations

import streamlit as st

from db import Catalogue, ops
from labeller import common, grid, jobs, labelling, reviewing
from labeller.grid import Card
from labeller.reviewing import REVIEW_KINDS

P = "rev_"
PAGE_KEY = "review_page"


def _rank_controls(cat: Catalogue, backbone: str | None) -> None:
    """Rank the labels on request, outside the app (``python -m training issues``: it
    cross-validates heads on the cached embeddings, seconds to minutes); the ranking is
    stored in the data folder, so every reviewer sees the last one."""
    if reviewing.label_issue_ranker() is None:
        st.info("The label-issue ranker (training.label_issues) is not installed.")
        return
    common.job_button(
        jobs.ISSUES,
        "Rank label issues now",
        key=f"{P}rank",
        icon=":material/troubleshoot:",
        help="Cross-validates heads on the cached embeddings, in the background.",
        args=("--backbone", backbone) if backbone else (),  # the active run's: cached
    )


def _ranking(cat: Catalogue) -> reviewing.SavedRanking | None:
    return reviewing.saved_ranking(cat.data_dir)


def _ranked(cat: Catalogue) -> dict[int, reviewing.RankedIssue]:
    saved = _ranking(cat)
    return {i.image_id: i for i in saved.issues} if saved else {}


def _ids(cat: Catalogue, kind: str, run_id: int | None) -> list[int] | None:
    """The image ids of one review list; None when it cannot be made (and say why)."""
    if kind == "issues":
        saved = _ranking(cat)
        if saved is None:
            st.caption("No ranking yet: rank the labels above.")
            return None
        if saved.problem:
            st.warning(saved.problem)
            return None
        st.caption(
            f"Ranking of {saved.at or 'unknown date'}: {len(saved.issues):,} labels "
            "suspected, most doubted first (confirmed or changed ones leave the list)."
        )
        with cat.read() as s:
            return reviewing.still_to_review(s, [i.image_id for i in saved.issues])
    if kind == "disagree" and run_id is None:
        st.info("No active run: train and promote one to see where the model disagrees.")
        return None
    with cat.read() as s:
        if kind == "disagree":
            assert run_id is not None
            covered, labelled = reviewing.prediction_coverage(s, run_id)
            if labelled and not covered:
                st.info(
                    f"The active run has no prediction for any of the {labelled:,} labelled "
                    "images yet: refresh the suggestions on the Train page (it predicts the "
                    "labelled images too, as `python -m training suggest --labelled` does), "
                    "or rank the label issues (third list) to check the labels already there.",
                    icon=":material/info:",
                )
                return None
            st.caption(
                f"Compared on the {covered:,} of {labelled:,} labelled images that have a "
                "prediction of the active run."
            )
            return reviewing.disagreements(s, run_id)
        return reviewing.weak_conflicts(s)


def _load(
    cat: Catalogue, kind: str, page_size: int, run_id: int | None
) -> tuple[list[int], int, list[Card]] | None:
    ids = _ids(cat, kind, run_id)
    if ids is None:
        return None
    last = max(0, (len(ids) - 1) // page_size)
    page = min(max(0, int(st.session_state.get(PAGE_KEY, 0))), last)
    st.session_state[PAGE_KEY] = page
    with cat.read() as s:
        cards = labelling.cards_for(s, ids[page * page_size : (page + 1) * page_size], run_id)
    if kind == "issues":
        cards = reviewing.with_issues(cards, _ranked(cat))
    return ids, page, cards


def _act(
    cat: Catalogue, cards: list[Card], user: str, clicked: str, label: tuple[str | None, str | None]
) -> str | None:
    choices = common.label_choices(cat)
    if clicked == "undo":
        return common.undo(cat, user)
    if clicked == "confirm":
        action = labelling.confirm_labels(cat, common.selected_ids(cards, P), user)
    elif clicked == "accept":
        chosen = grid.acceptable(cards, common.ticked_ids(cards, P, accept_default=False))
        if not chosen:
            raise ops.CatalogueError("tick the suggestions to accept first")
        action = labelling.accept_suggestions(cat, chosen, user)
    elif clicked == "reject":
        action = labelling.reject_images(cat, common.selected_ids(cards, P), user)
    else:
        ids = common.selected_ids(cards, P)
        if not ids:
            raise ops.CatalogueError("select images to label first")
        picked = common.ensure_sku(cat, choices, label[0], label[1], user)
        action = labelling.label_images(cat, ids, picked.model, picked.sku, user)
    common.push_action(action)
    common.forget_boxes(action.image_ids, P)
    return action.message


@st.fragment
def _review_fragment(kind: str, page_size: int, run_id: int | None, user: str) -> None:
    cat = common.catalogue()
    loaded = _load(cat, kind, page_size, run_id)
    if loaded is None:
        return
    ids, page, cards = loaded

    bar = st.columns([3, 3, 3, 2, 2, 2, 2], vertical_alignment="center")
    clicks = {
        "confirm": bar[0].button(
            "Confirm selected",
            type="primary",
            key=f"{P}confirm",
            icon=":material/verified:",
            width="stretch",
            shortcut="K",
        ),
        "accept": bar[1].button(
            "Accept ticked",
            key=f"{P}accept",
            shortcut="A",
            icon=":material/done_all:",
            width="stretch",
        ),
        "reject": bar[2].button(
            "Reject selected",
            key=f"{P}reject",
            shortcut="X",
            icon=":material/delete:",
            width="stretch",
        ),
        "undo": bar[3].button(
            "Undo", key=f"{P}undo", shortcut="U", icon=":material/undo:", width="stretch"
        ),
    }
    select_all = bar[4].button("Select all", key=f"{P}select_all", width="stretch")
    prev = bar[5].button(
        "Previous",
        key=f"{P}prev",
        disabled=page == 0,
        width="stretch",
        icon=":material/chevron_left:",
    )
    nxt = bar[6].button(
        "Next page",
        key=f"{P}next",
        shortcut="N",
        width="stretch",
        icon=":material/chevron_right:",
        disabled=(page + 1) * page_size >= len(ids),
    )
    with st.container(border=True):
        picked = common.label_picker(cat, common.label_choices(cat), P)
        clicks["label"] = st.button(
            "Label selected",
            key=f"{P}label",
            shortcut="L",
            icon=":material/sell:",
            disabled=not picked.ready,
        )

    clicked = next((name for name, on in clicks.items() if on), None)
    changed = False
    if clicked:
        try:
            message = _act(cat, cards, user, clicked, (picked.model, picked.typed))
        except ops.CatalogueError as exc:
            st.error(str(exc))
        else:
            if message:
                common.notify(message)
            changed = True
    if select_all:
        common.set_selection(cards, P, True)
    if prev or nxt:
        st.session_state[PAGE_KEY] = page + (1 if nxt else -1)
        changed = True
    if changed:
        loaded = _load(cat, kind, page_size, run_id)
        assert loaded is not None
        ids, page, cards = loaded
    st.caption(grid.page_caption(len(ids), page, page_size, len(cards)))
    if not cards:
        st.success("Nothing to review here.")
        return
    common.card_grid(cat, cards, prefix=P, accept_default=False, run_id=run_id)


def render() -> None:
    st.title("Review")
    cat = common.catalogue()
    user = common.require_user()
    if user is None:
        return
    with cat.read() as s:
        run = labelling.active_run(s)
        run_id = run.id if run else None
        backbone = (run.params or {}).get("backbone") if run else None
    top = st.columns([6, 2], vertical_alignment="bottom")
    kind = top[0].segmented_control(
        "Review",
        list(REVIEW_KINDS),
        format_func=REVIEW_KINDS.__getitem__,
        default="disagree",
        key=f"{P}kind",
        required=True,
    )
    page_size = top[1].select_slider(
        "Images per page", grid.PAGE_SIZES, value=grid.DEFAULT_PAGE_SIZE, key=f"{P}page_size"
    )
    if st.session_state.get(f"{P}last_kind") != kind:
        st.session_state[f"{P}last_kind"] = kind
        st.session_state[PAGE_KEY] = 0
    st.caption(
        "Each card shows the current label in bold, the model's suggestion (tick to accept it) "
        "and what the pages it came from claim. Confirm a label to take it off this list."
    )
    if kind == "issues":
        _rank_controls(cat, backbone)
    _review_fragment(str(kind or "disagree"), page_size, run_id, user)
