"""Overview: the state of the catalogue, the labelling pace, the active model, API usage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from db import Catalogue, ops
from labeller import common, dashboard

LAST_IMPORT = "ov_last_import"
CRAWL_COMMANDS = """\
# Nike product pages
scrapy crawl nike
# Shopify stores (their public products.json), comma-separated
scrapy crawl shopify -a stores=https://kith.com,https://undefeated.com
"""


def _load_demo(cat: Catalogue, per_colourway: int) -> None:
    from db.demo import load_demo

    with st.status("Loading the demo data…", expanded=True) as status:
        progress = common.progress_callback("Demo images")
        counts = load_demo(cat, per_colourway=per_colourway, progress=progress)
        status.update(label="Demo data loaded", state="complete")
    common.notify("Demo data loaded: " + ", ".join(f"{v} {k}" for k, v in counts.items()))


def _import_folder(cat: Catalogue, folder: str, user: str) -> None:
    from db.importer import import_tree

    with st.status(f"Importing {folder}…", expanded=True) as status:
        progress = common.progress_callback("Images")
        report = import_tree(cat, Path(folder), split="auto", progress=progress, user=user)
        status.update(label="Import finished", state="complete")
    st.session_state[LAST_IMPORT] = report.summary()
    common.notify(f"Imported {report.created} new images from {folder}")


def onboarding(cat: Catalogue) -> None:
    """What an empty catalogue offers: the demo data, a folder import, the crawl commands."""
    st.subheader("The catalogue is empty")
    st.write(f"Data folder: `{cat.data_dir}`. Bring images in one of three ways:")
    demo, folder, crawl = st.columns(3, border=True)
    with demo:
        st.markdown(
            "**Demo data**  \nSynthetic sneakers of a few models and colourways, "
            "with weak labels and some junk: enough to try every page."
        )
        per_colourway = st.number_input(
            "Images per colourway",
            min_value=2,
            max_value=60,
            value=30,
            key="ov_demo_size",
            help="30 gives about 900 images (a minute or so); fewer loads faster.",
        )
        # the click sets the flag before the page runs again, so the button is drawn
        # disabled for the whole load: a second click cannot start a second one
        loading = bool(st.session_state.get("ov_demo_loading"))
        st.button(
            "Loading the demo data…" if loading else "Load the demo data",
            type="primary",
            key="ov_demo",
            disabled=loading,
            on_click=lambda: st.session_state.update(ov_demo_loading=True),
        )
        if loading:
            try:
                _load_demo(cat, int(per_colourway))
            except ops.CatalogueError as exc:
                st.error(str(exc))
            else:
                st.session_state["ov_demo_loading"] = False
                st.rerun()
            finally:
                st.session_state["ov_demo_loading"] = False
    with folder:
        st.markdown(
            "**Import a folder**  \n`<model>/<SKU>/*.jpg`, `<model>/*.jpg`, loose "
            "images, optionally under `train/ val/ test/`."
        )
        path = st.text_input(
            "Folder on the server", key="ov_import_path", placeholder="/srv/sneakers/labelled"
        )
        if st.button("Import", key="ov_import", disabled=not path):
            try:
                _import_folder(cat, path, common.current_user() or "import")
            except ops.CatalogueError as exc:
                st.error(str(exc))
            else:
                st.rerun()
    with crawl:
        st.markdown(
            "**Crawl product pages**  \nRun from the project folder; the crawl "
            "writes into this catalogue:"
        )
        st.code(CRAWL_COMMANDS, language="bash")


def _status_and_splits(stats: dict[str, Any]) -> None:
    by_status = stats["by_status"]
    m = st.columns(7)
    m[0].metric("Images", f"{stats['images']:,}")
    m[1].metric("Labelled", f"{by_status['labelled']:,}", help="with a model, SKU or not")
    with_sku = stats.get("labelled_with_sku", by_status["labelled"])
    m[2].metric(
        "Labelled with SKU",
        f"{with_sku:,}",
        delta=f"{by_status['labelled'] - with_sku:,} without SKU"
        if by_status["labelled"] > with_sku
        else None,
        delta_color="off",
        help="The Label page's queue “Model labelled, SKU missing” lists the others.",
    )
    m[3].metric("To label", f"{by_status['new']:,}")
    m[4].metric("Rejected", f"{by_status['rejected']:,}")
    m[5].metric("Models", f"{stats['models']:,}")
    m[6].metric("SKUs", f"{stats['skus']:,}")

    left, right = st.columns(2, border=True)
    with left:
        st.markdown("**Labelled images per model**")
        if stats["by_model"]:
            st.bar_chart(
                pd.Series(stats["by_model"], name="images").sort_values(ascending=False),
                horizontal=True,
                sort=False,
                height=max(160, 28 * len(stats["by_model"])),
            )
        else:
            st.caption("No labelled images yet.")
    with right:
        st.markdown("**Split balance** (labelled images)")
        splits = stats["by_split"]
        if splits:
            order = [k for k in ("train", "val", "test", "unassigned") if k in splits]
            order += sorted(k for k in splits if k not in order)
            st.bar_chart(
                pd.Series({k: splits[k] for k in order}, name="images"), sort=False, height=220
            )
        else:
            st.caption("No labelled images yet.")


def _skus(stats: dict[str, Any]) -> None:
    with st.container(border=True):
        st.markdown("**Labelled images per SKU**")
        if not stats["by_sku"]:
            st.caption("No SKU labels yet.")
            return
        frame = pd.DataFrame(stats["by_sku"]).sort_values("images", ascending=False)
        st.dataframe(
            frame,
            hide_index=True,
            height=280,
            column_config={
                "images": st.column_config.ProgressColumn(
                    "images", format="%d", min_value=0, max_value=int(frame["images"].max())
                )
            },
        )


def _pace(cat: Catalogue) -> None:
    with cat.read() as s:
        per_day = dashboard.labels_per_day(s)
        per_person = dashboard.labels_per_person(s)
    left, right = st.columns(2, border=True)
    with left:
        st.markdown("**Images labelled per day** (last 30 days)")
        if per_day:
            frame = pd.DataFrame(per_day).pivot_table(
                index="day", columns="action", values="images", aggfunc="sum", fill_value=0
            )
            st.bar_chart(frame, height=220)
        else:
            st.caption("Nobody has labelled anything in the app yet.")
    with right:
        st.markdown("**Per person** (last 30 days)")
        if per_person:
            frame = pd.DataFrame(per_person).pivot_table(
                index="person", columns="action", values="images", aggfunc="sum", fill_value=0
            )
            st.bar_chart(frame, horizontal=True, height=220)
        else:
            st.caption("No labelling recorded yet.")


def _model_and_api(cat: Catalogue) -> None:
    with cat.read() as s:
        run = dashboard.active_run(s)
        usage = dashboard.api_usage(s)
        name = (run.name or f"run {run.id}") if run else None
        metrics = dashboard.headline_metrics(run.metrics) if run else {}
        finished = run.finished_at if run else None
    left, right = st.columns(2, border=True)
    with left:
        st.markdown("**Active model**")
        if run is None:
            st.caption("No run is active yet: train one on the Train page and promote it.")
        else:
            st.write(f"{name}" + (f" · finished {finished:%Y-%m-%d %H:%M}" if finished else ""))
            cols = st.columns(3)
            for i, (key, value) in enumerate(metrics.items()):
                shown = f"{value:.1%}" if 0 <= value <= 1 else f"{value:,.3g}"
                cols[i % 3].metric(key, shown)
    with right:
        st.markdown("**Prediction API** (last 30 days)")
        if usage is None:
            st.caption("The API has not served any request yet.")
        else:
            cols = st.columns(4)
            cols[0].metric("Requests", f"{usage.requests:,}")
            cols[1].metric("Errors", f"{usage.errors:,}")
            cols[2].metric("p50", f"{usage.p50_ms:.0f} ms" if usage.p50_ms is not None else "–")
            cols[3].metric("p95", f"{usage.p95_ms:.0f} ms" if usage.p95_ms is not None else "–")
            if usage.per_day:
                st.bar_chart(pd.DataFrame(usage.per_day).set_index("day"), height=160)


def _health(cat: Catalogue) -> None:
    """The curation health report of ``db.health`` (where installed)."""
    try:
        from db.health import format_report, health_report
    except ImportError:
        return
    with cat.read() as s:
        report = health_report(s, data_dir=cat.data_dir)
    dup = report.get("duplicates", {})
    issues = report.get("label_issues", {})
    with st.container(border=True):
        st.markdown("**Curation health**")
        m = st.columns(4)
        m[0].metric("Classes short of images", len(report.get("short_classes", [])))
        m[1].metric("Leaks between splits", len(report.get("leaks", [])))
        m[2].metric("Redundant near-duplicates", f"{dup.get('redundant', 0):,}")
        m[3].metric("Suspected label errors", issues.get("count", "–"))
        with st.expander("Full report"):
            st.code(format_report(report), language=None)


def render() -> None:
    st.title("Overview")
    cat = common.catalogue()
    if LAST_IMPORT in st.session_state:
        with st.expander("Last import", expanded=True):
            st.code(st.session_state[LAST_IMPORT], language=None)
    with cat.read() as s:
        stats = ops.stats(s)
    if stats["images"] == 0:
        onboarding(cat)
        return
    _status_and_splits(stats)
    _skus(stats)
    _pace(cat)
    _model_and_api(cat)
    _health(cat)
