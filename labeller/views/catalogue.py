"""Catalogue: browse and search models and SKUs; create, rename, merge, move (all recorded)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import streamlit as st
from sqlalchemy.orm import Session

from db import Catalogue, ops, taxonomy
from db.ops import normalise_style_code
from labeller import common

P = "cat_"
MAX_SKU_ROWS = 300


def _browse(cat: Catalogue) -> None:
    search = st.text_input(
        "Search models and SKUs",
        key=f"{P}search",
        placeholder="style code, colourway, title or model name",
        icon=":material/search:",
    )
    with cat.read() as s:
        models = taxonomy.model_rows(s, "")
        skus = taxonomy.sku_rows(s, search=search, limit=MAX_SKU_ROWS + 1)
    shown_models = [m for m in models if search.strip().lower() in m.name.lower()] or models
    left, right = st.columns([2, 5], border=True)
    with left:
        st.markdown(f"**Models** ({len(models)})")
        frame = pd.DataFrame(
            [{"model": m.name, "SKUs": m.skus, "images": m.images} for m in shown_models]
        )
        event = st.dataframe(
            frame,
            hide_index=True,
            key=f"{P}models",
            on_select="rerun",
            selection_mode="single-row",
            height=min(420, 38 + 35 * max(1, len(frame))),
        )
    rows_picked = event.selection.rows if event is not None else []
    picked_model = shown_models[rows_picked[0]].name if rows_picked and shown_models else None
    if picked_model:
        with cat.read() as s:
            skus = taxonomy.sku_rows(s, model=picked_model, search=search, limit=MAX_SKU_ROWS + 1)
    with right:
        title = f"**SKUs of {picked_model}**" if picked_model else "**SKUs**"
        more = len(skus) > MAX_SKU_ROWS
        st.markdown(f"{title} ({'over ' if more else ''}{min(len(skus), MAX_SKU_ROWS)})")
        st.dataframe(
            _sku_frame(cat, skus[:MAX_SKU_ROWS]),
            hide_index=True,
            height=420,
            row_height=56,
            column_config={
                "reference": st.column_config.ImageColumn("reference", width="small"),
                "images": st.column_config.NumberColumn("images", format="%d"),
            },
        )
        if more:
            st.caption(f"Showing the first {MAX_SKU_ROWS}; search to narrow the list.")


def _sku_frame(cat: Catalogue, skus: list[taxonomy.SkuRow]) -> pd.DataFrame:
    refs: dict[int, str | None] = {}
    for sku in skus:
        if sku.reference_image_id is not None:
            refs[sku.id] = common.data_uri(common.reference_thumbnail(cat, sku.reference_image_id))
    return pd.DataFrame(
        [
            {
                "reference": refs.get(s.id),
                "style code": s.style_code,
                "model": s.model,
                "colourway": s.colourway,
                "images": s.images,
                "title": s.title,
            }
            for s in skus
        ],
        columns=["reference", "style code", "model", "colourway", "images", "title"],
    )


def _missing(**fields: Any) -> bool:
    """Say which fields of a form are still empty (``what=value``); True when any is."""
    empty = [
        name.replace("_", " ") for name, value in fields.items() if not str(value or "").strip()
    ]
    if empty:
        st.error(f"Fill in {' and '.join(empty)} first.")
    return bool(empty)


def _apply(cat: Catalogue, what: str, change: Callable[[Session], Any]) -> None:
    """Run one edit in a write transaction; say what happened or why not.

    After a change the page runs again, so that every list and picker shows it at once.
    """
    try:
        with cat.write() as s:
            result = change(s)
    except ops.CatalogueError as exc:
        st.error(f"{what}: {exc}")
        return
    relabelled = getattr(result, "images_relabelled", 0)
    extra = f" ({relabelled} images relabelled)" if relabelled else ""
    common.notify(f"{what}: done{extra}")
    st.rerun()


def _edits(cat: Catalogue, user: str) -> None:
    choices = common.label_choices(cat)
    models = choices.models
    codes = [s.style_code for s in choices.skus]
    fmt = lambda c: choices.by_code[c].text if c in choices.by_code else c  # noqa: E731
    tabs = st.tabs(["Create", "Rename", "Merge", "Move SKU"])
    with tabs[0]:
        a, b = st.columns(2, border=True)
        with a, st.form(f"{P}new_model", clear_on_submit=True, border=False):
            st.markdown("**New model**")
            name = st.text_input(
                "Model name", key=f"{P}new_model_name", placeholder="Nike Dunk Low"
            )
            if st.form_submit_button("Create model", key=f"{P}create_model") and not _missing(
                model_name=name
            ):
                _apply(cat, f"Create model {name}", lambda s: taxonomy.create_model(s, name, user))
        with b, st.form(f"{P}new_sku", clear_on_submit=True, border=False):
            st.markdown("**New SKU**")
            c1, c2, c3 = st.columns(3)
            code = c1.text_input("Style code", key=f"{P}new_sku_code", placeholder="DD1391-100")
            parent = c2.selectbox("Model", models, index=None, key=f"{P}new_sku_model")
            colour = c3.text_input("Colourway", key=f"{P}new_sku_colour", placeholder="Panda")
            code = normalise_style_code(code)
            if st.form_submit_button("Create SKU", key=f"{P}create_sku") and not _missing(
                style_code=code, model=parent
            ):
                _apply(
                    cat,
                    f"Create SKU {code}",
                    lambda s: taxonomy.create_sku(s, code, parent or "", user, colourway=colour),
                )
    with tabs[1]:
        a, b = st.columns(2, border=True)
        with a, st.form(f"{P}rename_model", border=False):
            st.markdown("**Rename a model**")
            old = st.selectbox("Model", models, index=None, key=f"{P}rn_model_old")
            new = st.text_input("New name", key=f"{P}rn_model_new")
            if st.form_submit_button("Rename model", key=f"{P}rename_model_go") and not _missing(
                model=old, new_name=new
            ):
                _apply(
                    cat,
                    f"Rename {old} to {new}",
                    lambda s: taxonomy.rename_model(s, old or "", new, user),
                )
        with b, st.form(f"{P}rename_sku", border=False):
            st.markdown("**Rename an SKU** (style code, colourway)")
            old_code = st.selectbox("SKU", codes, index=None, key=f"{P}rn_sku_old", format_func=fmt)
            c1, c2 = st.columns(2)
            new_code = normalise_style_code(c1.text_input("New style code", key=f"{P}rn_sku_new"))
            colour = c2.text_input("New colourway (optional)", key=f"{P}rn_sku_colour")
            if st.form_submit_button("Rename SKU", key=f"{P}rename_sku_go") and not _missing(
                SKU=old_code, new_style_code_or_colourway=new_code or colour
            ):
                _apply(
                    cat,
                    f"Rename SKU {old_code}",
                    lambda s: taxonomy.rename_sku(
                        s,
                        old_code or "",
                        new_code or old_code or "",
                        user,
                        colourway=colour or None,
                    ),
                )
    with tabs[2]:
        st.caption(
            "A merge relabels every image of the first into the second and removes "
            "the first; each relabelled image keeps its history."
        )
        a, b = st.columns(2, border=True)
        with a, st.form(f"{P}merge_models", border=False):
            st.markdown("**Merge models**")
            src = st.selectbox("Merge this model", models, index=None, key=f"{P}mg_model_src")
            dst = st.selectbox("into this one", models, index=None, key=f"{P}mg_model_dst")
            if st.form_submit_button("Merge models", key=f"{P}merge_models_go") and not _missing(
                model_to_merge=src, model_to_keep=dst
            ):
                _apply(
                    cat,
                    f"Merge {src} into {dst}",
                    lambda s: taxonomy.merge_models(s, src or "", dst or "", user),
                )
        with b, st.form(f"{P}merge_skus", border=False):
            st.markdown("**Merge SKUs**")
            src_code = st.selectbox(
                "Merge this SKU", codes, index=None, key=f"{P}mg_sku_src", format_func=fmt
            )
            dst_code = st.selectbox(
                "into this one", codes, index=None, key=f"{P}mg_sku_dst", format_func=fmt
            )
            if st.form_submit_button("Merge SKUs", key=f"{P}merge_skus_go") and not _missing(
                SKU_to_merge=src_code, SKU_to_keep=dst_code
            ):
                _apply(
                    cat,
                    f"Merge {src_code} into {dst_code}",
                    lambda s: taxonomy.merge_skus(s, src_code or "", dst_code or "", user),
                )
    with tabs[3], st.form(f"{P}move_sku", border=True):
        st.markdown("**Move an SKU to another model** (its images follow)")
        c1, c2 = st.columns(2)
        code = c1.selectbox("SKU", codes, index=None, key=f"{P}mv_sku", format_func=fmt)
        target = c2.selectbox("New model", models, index=None, key=f"{P}mv_model")
        if st.form_submit_button("Move SKU", key=f"{P}move_go") and not _missing(
            SKU=code, new_model=target
        ):
            _apply(
                cat,
                f"Move {code} to {target}",
                lambda s: taxonomy.move_sku(s, code or "", target or "", user),
            )


def _history(cat: Catalogue) -> None:
    with cat.read() as s:
        events = [
            {
                "when": e.at,
                "who": e.user,
                "what": e.action.replace("_", " "),
                "detail": _describe(e.detail),
            }
            for e in taxonomy.recent_events(s, 100)
        ]
    if events:
        st.dataframe(events, hide_index=True)
    else:
        st.caption("No catalogue changes recorded yet.")


def _describe(detail: dict[str, Any]) -> str:
    shown = {k: v for k, v in detail.items() if not k.endswith("_id") and k != "image_ids"}
    return ", ".join(f"{k}: {v}" for k, v in shown.items() if v not in (None, [], ""))


def render() -> None:
    st.title("Catalogue")
    cat = common.catalogue()
    if not common.label_choices(cat).models:
        st.info(
            "No sneaker models yet. Create them below, import a labelled folder or load the "
            "demo data on Overview; a crawl brings weak labels that you confirm on Label."
        )
    else:
        _browse(cat)
    st.subheader("Change the catalogue")
    user = common.require_user()
    if user is not None:
        _edits(cat, user)
    with st.expander("History of catalogue changes"):
        _history(cat)
