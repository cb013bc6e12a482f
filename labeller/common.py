"""Streamlit helpers shared by the Overview, Label, Review and Catalogue pages.

The catalogue (one per server and data folder), the labeller's name, the image grid with
its action bar and label pickers, the image dialog, and progress for long work.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import streamlit as st
from PIL import Image as PILImage
from sqlalchemy import func, select

from db import Catalogue, open_catalogue, ops, taxonomy
from db.config import data_dir
from db.images import ImageError
from db.models import CatalogueEvent, Image, Sku, SneakerModel
from labeller import grid, jobs, labelling
from labeller.grid import Card

USER_KEY = "user"
UNDO_KEY = "undo_stack"
NOTICE_KEY = "notice"
THUMB = 256
REF_THUMB = 64


# --- catalogue and user --------------------------------------------------------------------


@st.cache_resource(show_spinner=False)
def _open(folder: str) -> Catalogue:
    return open_catalogue(folder)


def catalogue() -> Catalogue:
    """The catalogue of the data folder (``$SKULAB_DATA`` or ./data), opened once per folder."""
    return _open(str(data_dir()))


def auth_configured() -> bool:
    """Whether ``.streamlit/secrets.toml`` configures an OIDC provider ([auth])."""
    try:
        return "auth" in st.secrets
    except (FileNotFoundError, KeyError, ValueError):
        return False


def user_box() -> str | None:
    """Ask the labeller's name once (sidebar; kept in session state and the URL).

    With an OIDC provider configured, Streamlit's login is used instead and the name is
    the signed-in user's e-mail (or name).
    """
    with st.sidebar:
        if auth_configured():
            if not st.user.is_logged_in:
                st.button("Log in", on_click=st.login, key="login", type="primary")
                return None
            who = str(st.user.get("email") or st.user.get("name") or "")
            st.caption(f"Signed in as **{who}**")
            st.button("Log out", on_click=st.logout, key="logout")
            st.session_state[USER_KEY] = who
            return who or None
        name = st.text_input(
            "Your name",
            key=USER_KEY,
            bind="query-params",
            placeholder="e.g. ana",
            help="Recorded on every change you make. Kept in the address bar, so a bookmark "
            "remembers it.",
        )
    return " ".join((name or "").split()) or None


def current_user() -> str | None:
    """The labeller's name as entered (spaces tidied), or None."""
    cleaned = " ".join(str(st.session_state.get(USER_KEY) or "").split())
    return cleaned or None


def require_user() -> str | None:
    """The labeller's name; without one, say where to enter it and return None."""
    user = current_user()
    if user is None:
        st.info("Enter your name in the sidebar first: every change records who made it.")
    return user


def catalogue_version(cat: Catalogue) -> tuple[int, int, int]:
    """Changes when models or SKUs change (for caching the label pickers)."""
    with cat.read() as s:
        return (
            s.scalar(select(func.max(CatalogueEvent.id))) or 0,
            s.scalar(select(func.count()).select_from(SneakerModel)) or 0,
            s.scalar(select(func.count()).select_from(Sku)) or 0,
        )


@st.cache_data(show_spinner=False, max_entries=8, ttl=300)
def _label_choices(folder: str, version: tuple[int, int, int]) -> labelling.LabelChoices:
    with _open(folder).read() as s:
        return labelling.label_choices(s)


def label_choices(cat: Catalogue) -> labelling.LabelChoices:
    return _label_choices(str(cat.data_dir), catalogue_version(cat))


def image_count(cat: Catalogue) -> int:
    with cat.read() as s:
        return s.scalar(select(func.count()).select_from(Image)) or 0


# --- notices, undo and progress ------------------------------------------------------------


def notify(message: str, icon: str = ":material/check_circle:") -> None:
    """Show a message now (toast) and keep it for the next run of the page."""
    st.toast(message, icon=icon)
    st.session_state[NOTICE_KEY] = message


def push_action(action: labelling.Action) -> None:
    """Remember an action for Undo. One that changed nothing is remembered too, so that the
    next Undo says so instead of reaching past it to an older action."""
    stack: list[labelling.Action] = st.session_state.setdefault(UNDO_KEY, [])
    stack.append(action)
    del stack[:-50]


def undo(cat: Catalogue, user: str) -> str:
    """Undo this session's last action (or, in a new session, the user's newest action)."""
    stack: list[labelling.Action] = st.session_state.setdefault(UNDO_KEY, [])
    if stack:
        return labelling.undo_action(cat, stack.pop(), user).message
    return labelling.undo_last(cat, user).message


def undo_hint(cat: Catalogue, user: str) -> str:
    """What Undo would take back now, in words."""
    stack: list[labelling.Action] = st.session_state.get(UNDO_KEY) or []
    if stack:
        top = stack[-1]
        return top.summary if top.action_id else "nothing (your last action changed nothing)"
    found = labelling.last_action(cat, user)
    return f"{found[1]} (your last action)" if found else "nothing yet"


_KEYS_JS = """
<script>
(() => {
  // Keys that act whenever focus is not in a text field: Streamlit's own shortcuts stop
  // after a checkbox, a slider or a picker took the focus. Installed once per page view.
  const KEYS = %(keys)s;
  const doc = window.document;
  const typing = (el) => {
    if (!el) return false;
    if (el.isContentEditable) return true;
    if (el.tagName === "TEXTAREA" || el.tagName === "SELECT") return true;
    if (el.tagName !== "INPUT") return false;
    return !["checkbox", "radio", "range", "button", "submit", "reset", "file", "color"]
      .includes((el.type || "").toLowerCase());
  };
  const button = (names) => {
    for (const n of names) {
      const b = doc.querySelector(".st-key-" + n + " button");
      if (b) return b;
    }
    return null;
  };
  const onPage = () => Object.values(KEYS).some((names) => button(names));
  let hint = doc.getElementById("skulab-keys-hint");
  if (!hint) {
    hint = doc.createElement("div");
    hint.id = "skulab-keys-hint";
    hint.setAttribute("role", "status");
    hint.textContent = "Keys off while you type in a field: press Esc or click outside it.";
    hint.style.cssText = "position:fixed;right:16px;bottom:12px;z-index:100000;display:none;" +
      "padding:4px 10px;border-radius:6px;font:13px sans-serif;background:#31333F;color:#fff;" +
      "opacity:.85;pointer-events:none";
    doc.body.appendChild(hint);
  }
  const showHint = () => {
    hint.style.display = onPage() && typing(doc.activeElement) ? "block" : "none";
  };
  // once a choice is made the picker's list closes; its search box keeps the focus, where
  // a key would type a letter: give the focus back to the page (now, and once the list
  // has closed and the app has redrawn it)
  const blurPicker = () => [0, 120, 400].forEach((ms) => setTimeout(() => {
    const el = doc.activeElement;
    if (el && el.getAttribute("role") === "combobox" && el.getAttribute("aria-expanded") !== "true") {
      el.blur();
    }
    showHint();
  }, ms));
  const onKey = (e) => {
    const el = doc.activeElement;
    if (e.key === "Escape" && typing(el) && onPage()) { el.blur(); showHint(); return; }
    if (e.ctrlKey || e.metaKey || e.altKey || e.repeat) return;
    const names = KEYS[(e.key || "").toLowerCase()];
    if (!names) {
      if (e.key === "Enter" && el && el.getAttribute("role") === "combobox") blurPicker();
      return;
    }
    const b = button(names);
    if (!b || typing(el)) return;
    e.preventDefault();
    e.stopImmediatePropagation();
    if (!b.disabled) b.click();
  };
  const onClick = (e) => {
    if (e.target && e.target.closest && e.target.closest("[role=option]")) blurPicker();
  };
  const w = window;
  if (w.__skulabKeys) {
    doc.removeEventListener("keydown", w.__skulabKeys.onKey, true);
    doc.removeEventListener("click", w.__skulabKeys.onClick, true);
    doc.removeEventListener("focusin", w.__skulabKeys.showHint, true);
    doc.removeEventListener("focusout", w.__skulabKeys.blurred, true);
  }
  const blurred = () => setTimeout(showHint, 0);
  w.__skulabKeys = { onKey, onClick, showHint, blurred };
  doc.addEventListener("keydown", onKey, true);
  doc.addEventListener("click", onClick, true);
  doc.addEventListener("focusin", showHint, true);
  doc.addEventListener("focusout", blurred, true);
})();
</script>
"""


def keyboard_shortcuts(keys: dict[str, str]) -> None:
    """Make single keys click buttons (key: button key) whenever focus is not in a text
    field, and show a small hint while it is. A picker gives the focus back once a choice
    is made, so "choose, then press L" needs no extra click."""
    mapping = {k.lower(): [v] for k, v in keys.items()}
    st.html(_KEYS_JS % {"keys": json.dumps(mapping)}, unsafe_allow_javascript=True)


def progress_callback(label: str) -> Callable[..., None]:
    """A ``progress(done, total)`` callback drawing a Streamlit progress bar."""
    bar = st.progress(0.0, text=label)

    def update(done: int, total: int, *_: Any) -> None:
        frac = 0.0 if not total else min(1.0, done / total)
        bar.progress(frac, text=f"{label} {done:,} / {total:,}")

    return update


JOB_POLL_S = 1.0


def job_button(
    name: str,
    label: str,
    *,
    key: str,
    icon: str,
    help: str,
    args: Sequence[str] = (),
    running: bool | None = None,
) -> None:
    """A button that starts background job ``name`` (disabled while it runs), with its
    progress beside it."""
    cat = catalogue()
    if running is None:
        running = jobs.job_running(cat, name)
    c1, c2 = st.columns([2, 5], vertical_alignment="center")
    if c1.button(label, key=key, icon=icon, disabled=running, help=help):
        try:
            jobs.start_job(cat, name, args)
        except jobs.JobError as exc:
            st.error(str(exc))
        else:
            st.rerun()
    with c2:
        job_progress(name)


def job_progress(name: str, idle_text: str | None = None) -> None:
    """Where a background job of :mod:`labeller.jobs` stands, refreshed every second while it
    runs; when it ends, the whole page reruns to show what it changed."""
    running = jobs.job_running(catalogue(), name)
    st.fragment(_job_progress_body, run_every=JOB_POLL_S if running else None)(name, idle_text)


def _job_progress_body(name: str, idle_text: str | None) -> None:
    status = jobs.job_status(catalogue(), name)
    flag = f"job_running_{name}"
    if status is None:
        if idle_text:
            st.caption(idle_text)
        return
    if status.running:
        st.session_state[flag] = True
        st.progress(status.fraction or 0.0, text=status.last_line or "starting…")
    else:
        if st.session_state.pop(flag, False):
            st.rerun(scope="app")
        if status.last_line.lower().startswith("error"):
            st.warning(
                f"{jobs.JOB_TITLES.get(name, name)} failed: {status.last_line}",
                icon=":material/error:",
            )
        st.caption(
            f"{jobs.JOB_TITLES.get(name, name)}: last started {jobs.started_text(status.job)}"
            f" · {status.last_line or 'no output'}"
        )
    if status.log_tail:
        with st.expander("Log"):
            st.code(status.log_tail, language=None)


# --- images --------------------------------------------------------------------------------


def thumbnail(cat: Catalogue, card: Any, size: int = THUMB) -> Path | None:
    """The thumbnail file of an image (made on first use); None when its file is unreadable."""
    try:
        return cat.store.thumbnail(card, size)
    except (OSError, ImageError):
        return None


@st.cache_data(show_spinner=False, max_entries=4000)
def square_thumbnail(path: str, size: int = THUMB) -> bytes:
    """A thumbnail centred on a white square, so that every card of the grid lines up."""
    with PILImage.open(path) as img:
        canvas = PILImage.new("RGB", (size, size), (255, 255, 255))
        img.thumbnail((size, size))
        canvas.paste(img.convert("RGB"), ((size - img.width) // 2, (size - img.height) // 2))
    out = io.BytesIO()
    canvas.save(out, format="JPEG", quality=85)
    return out.getvalue()


def data_uri(path: Path | None) -> str | None:
    if path is None:
        return None
    return "data:image/jpeg;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def reference_thumbnail(cat: Catalogue, image_id: int | None, size: int = REF_THUMB) -> Path | None:
    if image_id is None:
        return None
    with cat.read() as s:
        image = s.get(Image, image_id)
        return thumbnail(cat, image, size) if image is not None else None


def ticked_ids(cards: Sequence[Card], prefix: str, accept_default: bool) -> list[int]:
    """Cards whose 'accept suggestion' box is ticked (as the browser last sent them)."""
    return grid.ticked(
        (
            c.image_id,
            bool(
                st.session_state.get(
                    f"{prefix}acc_{c.image_id}", accept_default and bool(c.suggestion)
                )
            ),
        )
        for c in cards
        if c.suggestion and c.suggestion.usable
    )


def selected_ids(cards: Sequence[Card], prefix: str) -> list[int]:
    return grid.ticked(
        (c.image_id, bool(st.session_state.get(f"{prefix}sel_{c.image_id}", False))) for c in cards
    )


def set_selection(cards: Sequence[Card], prefix: str, on: bool) -> None:
    """Tick or untick every card's 'select' box (call before the grid is drawn)."""
    for c in cards:
        st.session_state[f"{prefix}sel_{c.image_id}"] = on


def forget_boxes(image_ids: Sequence[int], prefix: str) -> None:
    for image_id in image_ids:
        for kind in ("acc", "sel"):
            st.session_state.pop(f"{prefix}{kind}_{image_id}", None)


def card_grid(
    cat: Catalogue,
    cards: Sequence[Card],
    *,
    prefix: str,
    accept_default: bool,
    run_id: int | None,
    columns: int = grid.COLUMNS,
) -> None:
    """The image grid: thumbnail, suggestion tick box, weak label, select box, zoom."""
    for row in grid.rows(list(cards), columns):
        cols = st.columns(columns, gap="small")
        for col, card in zip(cols, row, strict=False):
            with col, st.container(border=True, key=f"{prefix}card_{card.image_id}"):
                _card(cat, card, prefix=prefix, accept_default=accept_default, run_id=run_id)


def _card(
    cat: Catalogue, card: Card, *, prefix: str, accept_default: bool, run_id: int | None
) -> None:
    path = thumbnail(cat, card)
    if path is None:
        st.warning(f"image {card.image_id}: file missing or unreadable")
    else:
        st.image(square_thumbnail(str(path)), width="stretch")
    if card.status != "new":
        st.caption(f"**{card.label_text}**" + (f" · {card.split}" if card.split else ""))
    if card.suggestion and card.suggestion.usable:
        st.checkbox(card.suggestion_text, value=accept_default, key=f"{prefix}acc_{card.image_id}")
    else:
        st.caption(f":material/smart_toy: {card.suggestion_text}")
    group = (
        f" · :material/content_copy: group {card.dup_group}" if card.dup_group is not None else ""
    )
    st.caption(f":material/description: {grid.weak_text(card.weak)}{group}")
    if card.note:
        st.caption(card.note)
    left, right = st.columns([3, 1], vertical_alignment="center")
    left.checkbox("select", key=f"{prefix}sel_{card.image_id}")
    if right.button(
        "",
        icon=":material/zoom_in:",
        key=f"{prefix}zoom_{card.image_id}",
        help="Open large, with its sources and history",
    ):
        image_dialog(card.image_id, run_id)


@st.dialog("Image", width="large")
def image_dialog(image_id: int, run_id: int | None) -> None:
    """One image large, with its label, suggestion, sources and history."""
    cat = catalogue()
    with cat.read() as s:
        detail = labelling.image_detail(s, image_id, run_id)
        image = s.get(Image, image_id)
        path = cat.store.path(image) if image is not None else None
    card = detail.card
    st.markdown(f"**Image {card.image_id}** · {card.label_text} · {card.suggestion_text}")
    left, right = st.columns([3, 2])
    with left:
        if path is not None and path.exists():
            st.image(str(path), width=min(detail.width, 640))
        else:
            st.warning("The original file is missing from the data folder.")
    with right:
        st.markdown(
            f"**Label** {card.label_text}  \n**Suggestion** {card.suggestion_text}  \n"
            f"**Pages say** {grid.weak_text(card.weak, limit=5)}  \n"
            f"**Size** {detail.width}×{detail.height} px, {detail.n_bytes / 1024:.0f} KiB  \n"
            f"**Split** {card.split or 'unassigned'}  \n"
            f"**Duplicate group** {card.dup_group or '–'}"
        )
    st.markdown("**Sources**")
    st.dataframe(
        detail.sources,
        hide_index=True,
        column_config={
            "page": st.column_config.LinkColumn("page"),
            "image url": st.column_config.LinkColumn("image url"),
        },
    )
    st.markdown("**History**")
    if detail.history:
        st.dataframe(detail.history, hide_index=True)
    else:
        st.caption("No changes recorded.")


# --- label pickers -------------------------------------------------------------------------


def label_picker(cat: Catalogue, choices: labelling.LabelChoices, prefix: str) -> labelling.Picked:
    """Searchable model and SKU pickers with the chosen SKU's reference thumbnail.

    What the SKU picker holds is resolved by :func:`labelling.pick_label`: a typed search
    (``dd1391-10``, a colourway) names an SKU of the catalogue or is refused with the reason;
    only a text shaped like a style code becomes a new SKU of the chosen model, and the
    pickers say so before anything is labelled.
    """
    c_model, c_sku, c_ref = st.columns([4, 5, 1], vertical_alignment="bottom")
    model = c_model.selectbox(
        "Model",
        choices.models,
        index=None,
        key=f"{prefix}pick_model",
        placeholder=f"Search {len(choices.models)} models…",
    )
    skus = choices.skus_of(model)
    typed = c_sku.selectbox(
        "SKU",
        [s.style_code for s in skus],
        index=None,
        key=f"{prefix}pick_sku",
        format_func=lambda code: choices.by_code[code].text if code in choices.by_code else code,
        placeholder=f"Search {len(skus)} SKUs (style code or colourway)…",
        accept_new_options=True,
    )
    picked = labelling.pick_label(choices, model, typed)
    ref = choices.by_code.get(picked.sku or "") if not picked.new_sku else None
    ref_path = reference_thumbnail(cat, ref.reference_image_id) if ref else None
    if ref_path is not None:
        c_ref.image(square_thumbnail(str(ref_path), REF_THUMB), width=REF_THUMB)
    if picked.problem:
        st.warning(picked.problem, icon=":material/help:")
    elif picked.new_sku:
        st.caption(
            f":material/add_circle: **{picked.sku}** is not in the catalogue yet: labelling "
            f"creates it as an SKU of **{picked.model}** (recorded)."
        )
    elif ref is not None and typed != ref.style_code:
        st.caption(f":material/arrow_forward: {ref.text}")
    return picked


def ensure_sku(
    cat: Catalogue, choices: labelling.LabelChoices, model: str | None, sku: str | None, user: str
) -> labelling.Picked:
    """The label the pickers stand for; a new style code is created under the model (recorded).

    Raises :class:`db.ops.CatalogueError` with the reason when the pickers name no label.
    """
    picked = labelling.pick_label(choices, model, sku)
    if picked.problem:
        raise ops.CatalogueError(picked.problem)
    if picked.new_sku and picked.sku and picked.model:
        with cat.write() as s:
            if ops.find_sku(s, picked.sku) is None:
                taxonomy.create_sku(s, picked.sku, picked.model, user)
    return picked
