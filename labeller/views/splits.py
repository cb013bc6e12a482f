"""Splits: assign train/val/test, lock the test split, see the balance per class and any leak."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from db import Catalogue
from db.ops import CatalogueError
from db.splits import assign_splits, class_balance, find_leaks, lock_split, off_ratio, parse_ratios
from labeller import splitview
from labeller.common import catalogue, current_user, image_count

SPLIT_COLOURS = ["#4C78A8", "#F58518", "#54A24B", "#BAB0AC"]
"""train, val, test, none."""
RESULT_KEY = "splits_result"
DEFAULT_PERCENT = {"train": 70, "val": 15, "test": 15}


def _assign_form(cat: Catalogue, user: str | None) -> None:
    with st.form("splits_form", border=True):
        st.markdown(
            "**Assign splits** — stratified by SKU; near-duplicates and the images of one "
            "product page always land in the same split. Locked images never move."
        )
        cols = st.columns([1, 1, 1, 1, 2], vertical_alignment="bottom")
        train, val, test = (
            col.number_input(
                f"{name.capitalize()} %", 0, 100, default, step=5, key=f"splits_{name}"
            )
            for col, (name, default) in zip(cols, DEFAULT_PERCENT.items(), strict=False)
        )
        seed = cols[3].number_input("Seed", 0, 2**31 - 1, 0, key="splits_seed")
        reset = cols[4].checkbox(
            "Reassign images that already have a split",
            key="splits_reset",
            help="Otherwise only images without a split get one.",
        )
        submitted = st.form_submit_button(
            "Assign splits", type="primary", key="splits_assign", disabled=user is None
        )
    if not submitted or user is None:
        return
    problem = splitview.percent_problem(train, val, test)
    if problem:
        st.error(problem)
        return
    try:
        ratios = parse_ratios({"train": train, "val": val, "test": test})
        with st.spinner("Assigning splits…"), cat.write() as s:
            report = assign_splits(s, ratios=ratios, seed=int(seed), reset=reset, user=user)
    except CatalogueError as exc:
        st.error(f"Cannot assign splits: {exc}")
        return
    st.session_state[RESULT_KEY] = report.summary()
    st.rerun()


def _lock_controls(cat: Catalogue, user: str | None) -> None:
    with cat.read() as s:
        locked = splitview.locked_counts(s)
    text, lock_col, unlock_col = st.columns([3, 1, 1], vertical_alignment="center")
    others = ", ".join(f"{n} {k}" for k, n in locked.items() if k != "test" and n)
    text.markdown(
        f":material/lock: **{locked['test']}** test images locked"
        + (f" (also locked: {others})" if others else "")
        + " — a locked test split keeps measuring the same images from run to run."
    )
    if lock_col.button(
        "Lock test split", key="splits_lock_test", disabled=user is None, width="stretch"
    ):
        with cat.write() as s:
            n = lock_split(s, "test", user or "")
        st.toast(f"Locked {n} test images")
        st.rerun()
    if unlock_col.button(
        "Unlock test split",
        key="splits_unlock_test",
        disabled=user is None or locked["test"] == 0,
        width="stretch",
    ):
        with cat.write() as s:
            n = lock_split(s, "test", user or "", lock=False)
        st.toast(f"Unlocked {n} test images")
        st.rerun()


def _balance(cat: Catalogue, ratios: dict[str, float]) -> None:
    st.subheader("Balance per class")
    by = (
        st.segmented_control(
            "Classes",
            ["sku", "model"],
            default="sku",
            key="splits_by",
            format_func=lambda v: "SKU" if v == "sku" else "Model",
        )
        or "sku"
    )
    with cat.read() as s:
        rows = class_balance(s, by=by)
        models = splitview.sku_models(s)
    if not rows:
        st.info("No labelled images yet: label some on the Label page first.")
        return
    totals = splitview.totals(rows)
    all_images = sum(totals.values()) or 1
    for col, name in zip(st.columns(len(splitview.COLUMNS)), splitview.COLUMNS, strict=True):
        col.metric(
            "No split" if name == "none" else name.capitalize(),
            totals[name],
            f"{100 * totals[name] / all_images:.0f}% of labelled",
            delta_color="off",
            delta_arrow="off",
            border=True,
        )
    records = splitview.balance_records(rows, models)
    frame = pd.DataFrame(records)
    off = off_ratio(rows, ratios)
    off_rows = {id(row) for row, _ in off}
    shown = splitview.chart_rows(
        records,
        off=[rec["class"] for rec, row in zip(records, rows, strict=True) if id(row) in off_rows],
    )
    if len(shown) < len(records):
        st.caption(
            f"The chart shows {len(shown)} of {len(records)} classes: those off the ratios "
            "first, then the smallest. The table below lists every class."
        )
    chart = pd.DataFrame(shown).set_index("class")[list(splitview.COLUMNS)]
    st.bar_chart(
        chart,
        horizontal=True,
        color=SPLIT_COLOURS,
        stack=True,
        sort=False,
        height=max(240, 28 * len(shown) + 70),
        x_label="",
        y_label="labelled images",
    )
    if off:
        st.warning(
            f"{len(off)} class(es) miss the ratios by more than one image: "
            + ", ".join(row.name for row, _ in off[:12])
            + (" …" if len(off) > 12 else "")
            + ". Small classes cannot always be split exactly; related images stay together."
        )
    st.dataframe(
        frame if by == "sku" else frame.drop(columns=["model"]),
        hide_index=True,
        width="stretch",
        key="splits_table",
        column_config={"train %": st.column_config.ProgressColumn("train %", max_value=100)},
    )


def _leaks(cat: Catalogue) -> None:
    st.subheader("Leaks between splits")
    with cat.read() as s:
        leaks = find_leaks(s)
    if not leaks:
        st.success(
            "No leaks: no group of near-duplicates and no product page spans two splits.",
            icon=":material/verified:",
        )
        return
    st.error(
        f"{len(leaks)} group(s) of related images span more than one split: the model would "
        "be tested on near-copies of its training images. Assign splits again to bring each "
        "group into one split."
    )
    st.dataframe(
        pd.DataFrame(splitview.leak_records(leaks)),
        hide_index=True,
        width="stretch",
        key="splits_leaks",
    )


def _chosen_ratios() -> dict[str, float]:
    """The ratios in the form (70/15/15 until changed, and when they add up to 0)."""
    values = [st.session_state.get(f"splits_{s}", d) for s, d in DEFAULT_PERCENT.items()]
    try:
        return parse_ratios(values)
    except CatalogueError:
        return parse_ratios(list(DEFAULT_PERCENT.values()))


def render() -> None:
    st.title("Splits")
    st.caption("Train, validation and test sets: fixed per image once assigned.")
    cat = catalogue()
    if image_count(cat) == 0:
        st.info("The catalogue is empty: load the demo data or import a folder on Overview.")
        return
    user = current_user()
    if user is None:
        st.info(
            "Enter your name in the sidebar to assign or lock splits: every change records "
            "who made it."
        )
    done = st.session_state.pop(RESULT_KEY, None)
    if done:
        st.success(f"Splits assigned — {done}", icon=":material/check:")
    _assign_form(cat, user)
    _lock_controls(cat, user)
    ratios = _chosen_ratios()
    st.divider()
    _balance(cat, ratios)
    st.divider()
    _leaks(cat)
