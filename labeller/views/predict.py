"""Predict: what the active model says about an uploaded photo, and the closest catalogue images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st

from db import Catalogue, open_catalogue
from db.images import ImageError, sha256_hex
from inference.bundle import BundleError
from inference.cascade import CascadePrediction
from inference.feedback import add_photo
from inference.localise import crop_region
from inference.predictor import NoActiveModel, PhotoAnswer, Predictor, active_bundle_dir
from labeller import similar, uploads
from labeller.common import catalogue, current_user, square_thumbnail

NEIGHBOURS = 6
NEIGHBOUR_VIEW = "colour"
TRAIN_URL_PATH = "train"


@st.cache_resource(show_spinner="Loading the model…", max_entries=2)
def _predictor(data_dir: str, run_id: int, bundle_dir: str) -> Predictor:
    """One loaded predictor per active run (a new promotion loads the new one)."""
    return Predictor.load(bundle_dir, run_id=run_id)


@st.cache_resource(show_spinner="Reading catalogue embeddings…", max_entries=4)
def _index(data_dir: str, key: str, view: str, version: tuple[int, int]) -> similar.EmbeddingIndex:
    """Labelled images' embeddings; ``version`` (count, newest id) renews it when rows change."""
    with open_catalogue(data_dir).read() as s:
        return similar.load_index(s, key, view)


def _active_predictor(cat: Catalogue) -> Predictor | None:
    """The active run's predictor; None (and why, said on the page) when there is none."""
    try:
        run_id, folder = active_bundle_dir(cat)
    except NoActiveModel:
        _no_model()
        return None
    try:
        return _predictor(str(cat.data_dir), run_id, str(folder))
    except (BundleError, OSError, ValueError) as exc:
        st.error(
            f"The active model (run #{run_id}) cannot be loaded: {exc}. Promote another run, "
            "or train a new one, on the Train page.",
            icon=":material/error:",
        )
        return None


def _train_page() -> None:
    from labeller.views.train import render as render_train

    render_train()


def _no_model() -> None:
    st.warning(
        "There is no active model yet, so nothing can be predicted. Train a run and "
        "promote it on the Train page.",
        icon=":material/model_training:",
    )
    # Same url_path as the app's Train page: the link opens that page.
    train = st.Page(_train_page, title="Train", url_path=TRAIN_URL_PATH)
    st.page_link(train, label="Go to the Train page", icon=":material/arrow_forward:")


def _inputs() -> list[tuple[str, bytes]]:
    """The files to predict: uploads and, when switched on, one camera photo."""
    files = st.file_uploader(
        "Sneaker photos",
        # no type filter: a wrong file gets skulab's own message, which names the same
        # types as this hint, instead of Streamlit's
        accept_multiple_files=True,
        key="predict_files",
        max_upload_size=uploads.MAX_UPLOAD_MB,
        help=f"{uploads.TYPES_TEXT}, up to {uploads.MAX_UPLOAD_MB} MB each.",
    )
    items = [(f.name, f.getvalue()) for f in files or []]
    if st.toggle("Use the camera", key="predict_camera_on"):
        photo = st.camera_input("Take a photo", key="predict_camera")
        if photo is not None:
            items.append((uploads.CAMERA_NAME, photo.getvalue()))
    return items


def _confidence(value: float) -> str:
    return f"{100 * value:.0f}%"


def _top3(title: str, top: list[tuple[str, float]]) -> None:
    st.caption(title)
    for name, conf in top:
        st.progress(min(1.0, max(0.0, conf)), text=f"{name} · {_confidence(conf)}")


def _answer(pred: CascadePrediction) -> None:
    c1, c2 = st.columns(2)
    # "unknown" has no confidence of its own: the best guess is named with its own
    model_guess = pred.model_top3[0][0] if pred.model is None and pred.model_top3 else None
    sku_guess = pred.sku_top3[0][0] if pred.sku is None and pred.sku_top3 else None
    c1.metric(
        "Model",
        pred.model or "unknown",
        _confidence(pred.model_confidence)
        if pred.model
        else (
            f"best guess {model_guess} {_confidence(pred.model_confidence)}"
            if model_guess
            else None
        ),
        delta_color="off",
        delta_arrow="off",
    )
    c2.metric(
        "SKU",
        pred.sku or "unknown",
        _confidence(pred.sku_confidence)
        if pred.sku
        else (f"best guess {sku_guess} {_confidence(pred.sku_top3[0][1])}" if sku_guess else None),
        delta_color="off",
        delta_arrow="off",
    )
    if pred.model is None:
        st.info(
            "Unknown sneaker: no model of the catalogue is close enough to answer.",
            icon=":material/help:",
        )
    elif pred.sku is None:
        st.info(
            f"{pred.model}, but not a colourway the catalogue knows well enough.",
            icon=":material/help:",
        )
    t1, t2 = st.columns(2)
    with t1:
        _top3("Top 3 models", pred.model_top3)
    with t2:
        _top3("Top 3 SKUs", pred.sku_top3)


def _neighbours(cat: Catalogue, predictor: Predictor, image_embedding: np.ndarray) -> None:
    key = predictor.embedding_key
    with cat.read() as s:
        version = similar.index_version(s, key, NEIGHBOUR_VIEW)
    if version[0] == 0:
        st.caption("No cached embeddings of labelled images for this backbone yet.")
        return
    index = _index(str(cat.data_dir), key, NEIGHBOUR_VIEW, version)
    with cat.read() as s:
        hits = similar.describe(s, similar.nearest(index, image_embedding, NEIGHBOURS))
    st.caption("Closest labelled images in the catalogue")
    cols = st.columns(NEIGHBOURS)
    for col, hit in zip(cols, hits, strict=False):
        thumb: Path = cat.store.thumbnail(hit)
        col.image(
            square_thumbnail(str(thumb)),
            width="stretch",
            caption=f"{hit.sku or hit.model or '?'} · {hit.similarity:.2f}",
        )


def _add_button(
    cat: Catalogue, upload: uploads.Upload, answer: PhotoAnswer, sha: str, user: str | None
) -> None:
    done = st.session_state.setdefault("predict_added", {})
    if sha in done:
        st.success(done[sha], icon=":material/check:")
        return
    regions = [s for s in answer.sneakers if not s.region.whole]
    label = "Add to the catalogue for labelling"
    if len(regions) == 1:
        label = "Add the photo and its sneaker for labelling"
    elif regions:
        label = f"Add the photo and its {len(regions)} sneakers for labelling"
    if (
        st.button(
            label,
            key=f"predict_add_{sha[:16]}",
            icon=":material/add_photo_alternate:",
            disabled=user is None,
            help="Enter your name in the sidebar first."
            if user is None
            else "The photo and each sneaker found in it become images in the Label queue; "
            "once labelled they train the next run like any other photo.",
        )
        and user
    ):
        added = add_photo(cat, upload.data, upload.name, answer, user, kind="upload")
        done[sha] = added.message()
        st.rerun()


BOX_COLOURS = ((0, 200, 83), (41, 121, 255), (255, 145, 0), (213, 0, 249))


def boxed(upload: uploads.Upload, answer: PhotoAnswer):
    """The photo with a numbered box around each sneaker found."""
    from PIL import ImageDraw

    img = upload.image.convert("RGB").copy()
    draw = ImageDraw.Draw(img)
    width = max(2, round(max(img.size) / 150))
    for n, sneaker in enumerate(answer.sneakers, start=1):
        if sneaker.region.whole:
            continue
        colour = BOX_COLOURS[(n - 1) % len(BOX_COLOURS)]
        x0, y0, x1, y1 = sneaker.region.box
        draw.rectangle((x0, y0, x1, y1), outline=colour, width=width)
        tag = f" {n} "
        size = max(12, round(max(img.size) / 30))
        draw.rectangle((x0, y0, x0 + size * 1.6, y0 + size * 1.3), fill=colour)
        draw.text(
            (x0 + size * 0.3, y0 + size * 0.1), tag.strip(), fill=(255, 255, 255), font_size=size
        )
    return img


Analysis = tuple[PhotoAnswer, np.ndarray]
"""The answer for a photo and the main sneaker's backbone embedding (for the neighbours)."""


def _analyse(predictor: Predictor, good: list[uploads.Upload]) -> list[Analysis]:
    """Answers and embeddings, kept in the session so that a rerun does not predict again."""
    cache: dict[tuple[int | None, str], Analysis] = st.session_state.setdefault("predict_cache", {})
    keys = [(predictor.run_id, sha256_hex(u.data)) for u in good]
    todo = [(u, k) for u, k in zip(good, keys, strict=True) if k not in cache]
    if todo:
        with st.spinner(f"Predicting {len(todo)} image(s)…"):
            pictures = [u.image for u, _ in todo]
            preds = predictor.predict_images(pictures)
            mains = [
                crop_region(pic, p.sneakers[0].region.box) if p.sneakers else pic
                for pic, p in zip(pictures, preds, strict=True)
            ]
            embs = predictor.embed(mains, (NEIGHBOUR_VIEW,))[NEIGHBOUR_VIEW].numpy()
        for (_, key), pred, emb in zip(todo, preds, embs, strict=True):
            cache[key] = (pred, emb)
    return [cache[k] for k in keys]


def render() -> None:
    st.title("Predict")
    st.caption("Upload sneaker photos or take one: see what the active model answers.")
    cat = catalogue()
    predictor = _active_predictor(cat)
    if predictor is None:
        return
    st.caption(f"Active model: run #{predictor.run_id} · backbone {predictor.bundle.backbone}")
    items = _inputs()
    if not items:
        return
    good: list[uploads.Upload] = []
    for name, data in items:
        try:
            good.append(uploads.check_upload(name, data))
        except ImageError as exc:
            st.error(f"Cannot use this file — {exc}", icon=":material/broken_image:")
    good, repeats = uploads.distinct(good)
    for repeat, first in repeats:
        st.caption(f":material/content_copy: {repeat} is the same picture as {first}: shown once.")
    if not good:
        return
    analyses = _analyse(predictor, good)
    user = current_user()
    for i, (upload, (answer, embedding)) in enumerate(zip(good, analyses, strict=True)):
        sha = sha256_hex(upload.data)
        with st.container(border=True, key=f"predict_result_{i}"):
            left, right = st.columns([1, 2], gap="large")
            left.image(boxed(upload, answer), caption=upload.name, width="stretch")
            with right:
                if not answer.sneaker_found:
                    st.warning(
                        "No sneaker found in this photo. If there is one, add the photo for "
                        "labelling: once labelled, it teaches the next run.",
                        icon=":material/search_off:",
                    )
                elif len(answer.sneakers) == 1:
                    _answer(answer.main)
                else:
                    st.caption(f"{len(answer.sneakers)} sneakers found, numbered on the photo")
                    tabs = st.tabs([f"Sneaker {n}" for n in range(1, len(answer.sneakers) + 1)])
                    for tab, sneaker in zip(tabs, answer.sneakers, strict=True):
                        with tab:
                            _answer(sneaker.prediction)
                _add_button(cat, upload, answer, sha, user)
            if answer.sneaker_found:
                _neighbours(cat, predictor, embedding)
