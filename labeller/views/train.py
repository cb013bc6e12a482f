"""Train: start runs outside the app, watch them, compare them, promote one, refresh suggestions."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from db import Catalogue
from db.models import Run
from inference.backbones import DEFAULT_BACKBONE, backbone_names, get_spec
from labeller import common, jobs
from labeller.common import catalogue
from training.fit import FitParams

STATUS_ICONS = {
    "queued": ":material/schedule:",
    "running": ":material/progress_activity:",
    "succeeded": ":material/check_circle:",
    "failed": ":material/error:",
}
HEADLINE_METRICS = (
    "val.stage1.top1",
    "val.stage2.top1",
    "test.stage1.top1",
    "test.stage2.top1",
    "val.stage1.ece",
)
"""Metrics shown in the runs table (all of them are in the comparison)."""


# --- starting a run -----------------------------------------------------------------------


def _new_run_form(cat: Catalogue) -> None:
    names = backbone_names()
    with cat.read() as s:
        ready = jobs.training_readiness(s)
    with st.form("train_form", border=True):
        st.markdown("**New run** — trains outside the app; you can leave this page and come back.")
        c1, c2 = st.columns(2)
        name = c1.text_input("Run name (optional)", key="train_name", placeholder="e.g. more dunks")
        backbone = c2.selectbox(
            "Backbone",
            names,
            index=names.index(DEFAULT_BACKBONE) if DEFAULT_BACKBONE in names else 0,
            key="train_backbone",
            format_func=lambda n: f"{n} — {get_spec(n).description}",
        )
        params, auto_promote = training_options()
        st.caption(f"The run learns from {ready.summary}.")
        for problem in ready.problems:
            st.warning(problem, icon=":material/block:")
        for warning in ready.warnings:
            st.caption(f":material/warning: {warning}")
        submitted = st.form_submit_button(
            "Start training",
            type="primary",
            key="train_start",
            icon=":material/play_arrow:",
            disabled=bool(ready.problems),
        )
    if submitted:
        try:
            run_id = jobs.start_fit(
                cat, {"backbone": backbone, **params}, name=name, promote=auto_promote
            )
        except jobs.JobError as exc:
            st.error(str(exc))
            return
        st.toast(f"Run #{run_id} started")
        st.rerun()


def training_options() -> tuple[dict[str, Any], bool]:
    """The run options of :class:`training.fit.FitParams`, as widgets (inside the form)."""
    d = FitParams()
    with st.expander("Options"):
        c1, c2, c3 = st.columns(3)
        image_size = c1.number_input(
            "Input size (px, 0 = the backbone's)",
            0,
            1024,
            d.image_size or 0,
            step=32,
            key="train_image_size",
        )
        seed = c2.number_input("Seed", 0, 2**31 - 1, d.seed, key="train_seed")
        epochs = c3.number_input("Fine-tuning epochs", 1, 500, d.epochs, key="train_epochs")
        c1, c2, c3 = st.columns(3)
        finetune = c1.toggle(
            "Fine-tune the backbone",
            d.finetune,
            key="train_finetune",
            help="Slow without a GPU; by default the backbone stays frozen.",
        )
        flip_augment = c2.toggle(
            "Train on mirrored copies", d.flip_augment, key="train_flip_augment"
        )
        tta_flip = c3.toggle(
            "Average with the mirror image",
            d.tta_flip,
            key="train_tta_flip",
            help="Twice the work per prediction.",
        )
        c1, c2, _ = st.columns(3)
        trim = c1.toggle("Trim white margins", d.trim, key="train_trim")
        auto_promote = c2.toggle("Promote when it succeeds", False, key="train_promote_done")
    params: dict[str, Any] = {
        "finetune": finetune,
        "image_size": int(image_size) or None,
        "flip_augment": flip_augment,
        "tta_flip": tta_flip,
        "trim": trim,
        "epochs": int(epochs),
        "seed": int(seed),
    }
    return params, auto_promote


# --- watching runs ------------------------------------------------------------------------


def _unfinished_ids(cat: Catalogue) -> list[int]:
    with cat.read() as s:
        return [r.id for r in jobs.list_runs(s) if r.status in jobs.UNFINISHED]


POLL_BUSY_S = 1.0
POLL_IDLE_S = 10.0


def _live_runs(cat: Catalogue) -> None:
    """Unfinished runs, refreshed every second while there are any (else every 10 s)."""
    every = POLL_BUSY_S if _unfinished_ids(cat) else POLL_IDLE_S
    st.fragment(_live_runs_body, run_every=every)()


def _live_runs_body() -> None:
    cat = catalogue()
    ids = _unfinished_ids(cat)
    watched: set[int] = st.session_state.setdefault("train_watched", set())
    runs = [r for r in (jobs.check_run(cat, i) for i in ids) if r is not None]
    finished = [i for i in watched if i not in ids]
    watched.clear()
    watched.update(r.id for r in runs if r.status in jobs.UNFINISHED)
    if finished:
        # A run finished since the last refresh: one promoted on success gets fresh
        # suggestions; then redraw the whole page (tables, compare).
        with cat.read() as s:
            active = jobs.active_run(s)
        if active is not None and active.id in finished:
            _refresh_after_promotion(cat, active.id)
        st.rerun(scope="app")
    if not runs:
        return
    st.subheader("In progress")
    for run in runs:
        with st.container(border=True, key=f"train_live_{run.id}"):
            secs = jobs.elapsed(run)
            took = f" · {secs:.0f} s" if secs is not None else ""
            st.markdown(f"{STATUS_ICONS.get(run.status, '')} **{jobs.run_label(run)}**{took}")
            st.progress(min(1.0, max(0.0, run.progress or 0.0)), text=run.message or run.status)
            cols = st.columns([1, 4])
            if cols[0].button("Cancel", key=f"train_cancel_{run.id}", icon=":material/stop:"):
                jobs.cancel_run(cat, run.id)
                st.rerun(scope="app")
            log = jobs.tail(jobs.run_log(cat, run.id), max_lines=6)
            if log:
                cols[1].code(log, language=None)


def _runs_table(runs: list[Run]) -> None:
    records = []
    for run in runs:
        flat = jobs.flatten_metrics(run.metrics)
        secs = jobs.elapsed(run)
        record: dict[str, Any] = {
            "run": run.id,
            "active": "★" if run.active else "",
            "name": run.name or "",
            "status": run.status,
            "backbone": run.params.get("backbone", ""),
            "created": run.created_at.strftime("%Y-%m-%d %H:%M"),
            "took (s)": round(secs) if secs is not None and run.status in jobs.FINISHED else None,
        }
        for key in HEADLINE_METRICS:
            value = flat.get(key)
            record[key] = round(value, 3) if isinstance(value, float) else value
        records.append(record)
    st.dataframe(pd.DataFrame(records), hide_index=True, width="stretch", key="train_runs")


def _failed(cat: Catalogue, runs: list[Run]) -> None:
    for run in runs:
        if run.status == "failed":
            with st.expander(f":material/error: Run #{run.id} failed — why", expanded=False):
                st.error(jobs.failure_text(run), icon=":material/error:")
                details = jobs.failure_details(run)
                if details and st.toggle(
                    "Show the technical details", key=f"train_failed_details_{run.id}"
                ):
                    st.code(details, language=None)
                st.caption(f"Log: `{jobs.run_log(cat, run.id)}`")


# --- comparing and promoting --------------------------------------------------------------


def _compare(cat: Catalogue, runs: list[Run]) -> None:
    done = [r for r in runs if r.status == "succeeded"]
    st.subheader("Compare runs")
    if not done:
        st.info("No finished run yet.")
        return
    labels = {r.id: jobs.run_label(r) for r in done}
    default = [r.id for r in done[:2]]
    # Follow the newest two runs until the user picks others.
    if st.session_state.get("train_compare") == st.session_state.get("train_compare_default"):
        st.session_state["train_compare"] = default
    st.session_state["train_compare_default"] = default
    chosen_ids = st.multiselect(
        "Runs", list(labels), key="train_compare", format_func=lambda i: labels[i]
    )
    chosen = [r for r in done if r.id in chosen_ids]
    if not chosen:
        return
    if len({r.fingerprint for r in chosen}) > 1:
        st.caption(
            ":material/warning: These runs learnt from different data (labels or splits "
            "changed in between), so their scores are not measured on the same images. Lock "
            "the test split on the Splits page to keep test scores comparable."
        )
    table = jobs.compare_table(chosen, params_last=True)
    frame = pd.DataFrame.from_dict(table, orient="index").map(jobs.format_value)
    frame.index.name = "metric"
    st.dataframe(frame, width="stretch", key="train_compare_table")
    cols = st.columns(len(chosen))
    for col, run in zip(cols, chosen, strict=True):
        with col:
            st.markdown(f"**{labels[run.id]}**")
            pictures = jobs.run_pictures(cat, run)
            per_row = 2 if len(chosen) == 1 else 1  # one run: two matrices side by side
            for start in range(0, len(pictures), per_row):
                row = pictures[start : start + per_row]
                for pic_col, pic in zip(st.columns(per_row), row, strict=False):
                    pic_col.image(str(pic), caption=pic.stem.replace("_", " "), width="stretch")
            for name, rows in jobs.metric_tables(run.metrics).items():
                with st.expander(name.replace("_", " ")):
                    st.dataframe(pd.DataFrame.from_dict(rows, orient="index"), width="stretch")


def _promote(cat: Catalogue, runs: list[Run]) -> None:
    done = [r for r in runs if r.status == "succeeded"]
    active = next((r for r in runs if r.active), None)
    st.subheader("Active model")
    if active is not None:
        st.markdown(
            f":material/star: The app and the API predict with **{jobs.run_label(active)}**."
        )
    else:
        st.warning("No active model yet: promote a succeeded run.")
    if not done:
        return
    labels = {r.id: jobs.run_label(r) for r in done}
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    run_id = c1.selectbox(
        "Run to promote", list(labels), key="train_promote_run", format_func=lambda i: labels[i]
    )
    if c2.button(
        "Promote",
        key="train_promote",
        type="primary",
        icon=":material/upgrade:",
        disabled=active is not None and active.id == run_id,
    ):
        try:
            jobs.promote(cat, int(run_id))
        except jobs.JobError as exc:
            st.error(str(exc))
            return
        st.toast(f"Run #{run_id} is now active", icon=":material/upgrade:")
        _refresh_after_promotion(cat, int(run_id))
        st.rerun()


def _refresh_after_promotion(cat: Catalogue, run_id: int) -> None:
    """A newly active run has no suggestions: start computing them (in the background)."""
    try:
        jobs.start_suggest(cat)
    except jobs.JobError as exc:  # one is already under way: it uses the old run
        st.toast(f"Suggestions of run #{run_id}: {exc}", icon=":material/warning:")
    else:
        st.toast(f"Refreshing suggestions with run #{run_id}…", icon=":material/refresh:")


# --- suggestions --------------------------------------------------------------------------


def _suggestions(cat: Catalogue, runs: list[Run]) -> None:
    st.markdown(
        "**Suggestions**: the active model's predictions on unlabelled images, shown "
        "on the Label page, and on labelled ones, for Review's \"model disagrees with the "
        'label"; they are refreshed on promotion.'
    )
    active = next((r for r in runs if r.active), None)
    running = jobs.job_running(cat, jobs.SUGGEST)
    if st.button(
        "Refresh suggestions",
        key="train_suggest",
        icon=":material/refresh:",
        disabled=running or active is None,
        help=None if active else "Promote a run first: suggestions come from the active model.",
    ):
        try:
            jobs.start_suggest(cat)
        except jobs.JobError as exc:
            st.error(str(exc))
        else:
            st.rerun()
    common.job_progress(jobs.SUGGEST, "Suggestions have not been refreshed from the app yet.")


def render() -> None:
    st.title("Train")
    st.caption("Fit the cascade on the labelled images, compare runs, promote the best one.")
    cat = catalogue()
    _new_run_form(cat)
    _live_runs(cat)
    with cat.read() as s:
        runs = jobs.list_runs(s)
    if not runs:
        st.info("No runs yet: start one above.")
        return
    st.subheader("Runs")
    _runs_table(runs)
    _failed(cat, runs)
    st.divider()
    _promote(cat, runs)
    _suggestions(cat, runs)
    st.divider()
    _compare(cat, runs)
