"""The Splits, Train and Predict pages, run headless with Streamlit's AppTest on real data.

Each page runs on its own (``render()``, as the app's navigation calls it) against a private
copy of a small demo catalogue. Training runs as a real ``python -m training fit`` process.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image as PILImage
from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest

from db import Catalogue
from db.demo import generate
from db.models import Image, ImageSource, Prediction, Run
from tests.labeller.part2_data import labelled_folder, private_copy, trained_folder

TIMEOUT_S = 120


def _splits_page() -> None:
    from labeller.views.splits import render

    render()


def _train_page() -> None:
    from labeller.views.train import render

    render()


def _predict_page() -> None:
    from labeller.views.predict import render

    render()


def _app(page: Callable[[], None], user: str | None = "ana") -> AppTest:
    at = AppTest.from_function(page, default_timeout=TIMEOUT_S)
    if user:
        at.session_state["user"] = user
    return at.run()


def _texts(at: AppTest) -> str:
    parts = [e.value for kind in ("markdown", "caption", "success", "info", "warning", "error")
             for e in getattr(at, kind)]  # fmt: skip
    return "\n".join(str(p) for p in parts)


def _frame(at: AppTest, column: str) -> pd.DataFrame:
    """The first table on the page with this column (or index name)."""
    for df in at.dataframe:
        value = df.value
        if column in value.columns or value.index.name == column:
            return value
    raise AssertionError(f"no table with a {column!r} column")


@pytest.fixture
def labelled(
    demo_template: Callable[[int, int], Path],
    tmp_path_factory: pytest.TempPathFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Catalogue]:
    cat = private_copy(labelled_folder(demo_template, tmp_path_factory), tmp_path, monkeypatch)
    yield cat
    cat.dispose()


@pytest.fixture
def trained(
    demo_template: Callable[[int, int], Path],
    tmp_path_factory: pytest.TempPathFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Catalogue]:
    cat = private_copy(trained_folder(demo_template, tmp_path_factory), tmp_path, monkeypatch)
    yield cat
    cat.dispose()


# --- Splits -------------------------------------------------------------------------------


def test_splits_page_assigns_locks_and_shows_balance(labelled: Catalogue) -> None:
    at = _app(_splits_page)
    assert not at.exception
    at.number_input(key="splits_train").set_value(60)
    at.number_input(key="splits_val").set_value(20)
    at.number_input(key="splits_test").set_value(20)
    at.checkbox(key="splits_reset").check()
    at.button(key="splits_assign").click().run()
    assert not at.exception
    assert any("Splits assigned" in s.value for s in at.success)
    with labelled.read() as s:
        counts = dict(
            s.execute(
                select(Image.split, func.count())
                .where(Image.status == "labelled")
                .group_by(Image.split)
            ).all()
        )
        events = s.scalar(select(func.count()).select_from(Image).where(Image.split.is_not(None)))
    assert None not in counts
    total = sum(counts.values())
    assert total > 100 and events == total
    # Small classes and whole product pages make the shares approximate.
    assert abs(counts["train"] / total - 0.6) < 0.12
    assert abs(counts["val"] / total - 0.2) < 0.12
    assert abs(counts["test"] / total - 0.2) < 0.12
    assert any("No leaks" in s.value for s in at.success)
    table = _frame(at, "class")
    assert set(table.columns) >= {"class", "model", "train", "val", "test", "none", "total"}
    assert int(table["total"].sum()) == total

    at.button(key="splits_lock_test").click().run()
    assert not at.exception
    with labelled.read() as s:
        test_images = s.scalars(select(Image).where(Image.split == "test")).all()
    assert test_images and all(i.split_locked for i in test_images)
    assert f"**{len(test_images)}** test images locked" in _texts(at)


def test_splits_page_needs_a_name_to_change_anything(labelled: Catalogue) -> None:
    at = _app(_splits_page, user=None)
    assert not at.exception
    assert any("Enter your name" in i.value for i in at.info)
    assert at.button(key="splits_assign").disabled
    assert at.button(key="splits_lock_test").disabled


# --- Train --------------------------------------------------------------------------------


def _wait_finished(cat: Catalogue, run_id: int, at: AppTest) -> Run:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        at.run()  # the page re-reads the run every time, as its fragment does every second
        assert not at.exception
        with cat.read() as s:
            run = s.get(Run, run_id)
            assert run is not None
            if run.status in ("succeeded", "failed"):
                return run
        time.sleep(1.0)
    raise AssertionError(f"run {run_id} did not finish in 300 s")


def test_train_page_runs_promotes_and_refreshes_suggestions(trained: Catalogue) -> None:
    with trained.read() as s:
        before = s.scalar(select(func.max(Run.id)))
        fixture_run = s.scalar(select(Run.id).where(Run.active))
    at = _app(_train_page)
    assert not at.exception
    at.selectbox(key="train_backbone").set_value("tiny")
    at.text_input(key="train_name").input("from the page")
    at.toggle(key="train_flip_augment").set_value(False)
    at.button(key="train_start").click().run()
    assert not at.exception
    with trained.read() as s:
        run_id = s.scalar(select(func.max(Run.id)))
    assert run_id == (before or 0) + 1
    run = _wait_finished(trained, run_id, at)
    assert run.status == "succeeded", run.error
    assert run.name == "from the page" and run.params["backbone"] == "tiny"
    assert (trained.data_dir / "runs" / str(run_id) / "log.txt").exists()

    at.run()
    runs = _frame(at, "run")
    assert list(runs["run"])[:2] == [run_id, fixture_run]
    assert list(runs["status"])[:2] == ["succeeded", "succeeded"]
    compare = _frame(at, "metric")
    assert "val.stage1.top1" in compare.index
    captions = [c for img in at.get("image") for c in img.captions]
    assert captions.count("confusion val stage1") == 2  # one per compared run

    at.selectbox(key="train_promote_run").set_value(run_id).run()
    at.button(key="train_promote").click().run()
    assert not at.exception
    with trained.read() as s:
        assert list(s.scalars(select(Run.id).where(Run.active))) == [run_id]

    at.button(key="train_suggest").click().run()
    assert not at.exception
    deadline = time.monotonic() + 300
    while True:
        with trained.read() as s:
            n = s.scalar(
                select(func.count()).select_from(Prediction).where(Prediction.run_id == run_id)
            )
            unlabelled = s.scalar(
                select(func.count()).select_from(Image).where(Image.status == "new")
            )
        from labeller.jobs import suggest_status

        status = suggest_status(trained)
        if status is not None and not status.running:
            break
        assert time.monotonic() < deadline, "suggestions not refreshed in 300 s"
        time.sleep(1.0)
    with trained.read() as s:
        n = s.scalar(
            select(func.count()).select_from(Prediction).where(Prediction.run_id == run_id)
        )
    assert unlabelled and n == unlabelled
    at.run()
    assert f"stored {n} suggestions" in _texts(at)


def test_train_page_shows_why_a_run_failed(trained: Catalogue) -> None:
    with trained.write() as s:
        s.add(Run(status="failed", params={"backbone": "tiny"}, error="ValueError: no labelled images",
                  message="Traceback (most recent call last): ..."))  # fmt: skip
    at = _app(_train_page)
    assert not at.exception
    assert any("no labelled images" in e.value for e in at.error)
    assert any("failed" in e.label for e in at.expander)


# --- Predict ------------------------------------------------------------------------------


def _new_sneaker_png() -> bytes:
    """A demo sneaker the catalogue does not hold (another seed), as PNG."""
    item = next(i for i in generate(seed=7, per_colourway=1, size=96) if not i.junk)
    out = io.BytesIO()
    PILImage.open(io.BytesIO(item.data)).convert("RGB").save(out, format="PNG")
    return out.getvalue()


def test_predict_page_answers_shows_neighbours_and_adds_the_upload(trained: Catalogue) -> None:
    at = _app(_predict_page)
    assert not at.exception
    assert "Active model: run #1" in _texts(at)
    data = _new_sneaker_png()
    at.file_uploader(key="predict_files").upload("my shoe.png", data, "image/png")
    at.run()
    assert not at.exception
    assert not at.error
    metrics = {m.label: m.value for m in at.metric}
    assert set(metrics) == {"Model", "SKU"}
    with trained.read() as s:
        from db.models import Sku, SneakerModel

        models = set(s.scalars(select(SneakerModel.name)))
        skus = set(s.scalars(select(Sku.style_code)))
    assert metrics["Model"] in models | {"unknown"}
    assert metrics["SKU"] in skus | {"unknown"}
    assert "Top 3 models" in _texts(at)
    assert "Closest labelled images in the catalogue" in _texts(at)

    add = next(b for b in at.button if b.key and b.key.startswith("predict_add_"))
    add.click().run()
    assert not at.exception
    with trained.read() as s:
        src = s.scalar(select(ImageSource).where(ImageSource.kind == "upload"))
        assert src is not None and src.file_path == "my shoe.png"
        image = s.get(Image, src.image_id)
        assert image is not None and image.status == "new"
        assert trained.store.path(image).read_bytes() == data
    assert any("it waits in the Label queue" in s.value for s in at.success)


def test_predict_page_refuses_a_bad_file_and_stores_nothing(trained: Catalogue) -> None:
    with trained.read() as s:
        before = s.scalar(select(func.count()).select_from(Image))
    at = _app(_predict_page)
    at.file_uploader(key="predict_files").upload("notes.jpg", b"just some text", "image/jpeg")
    at.run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        "Cannot use this file — notes.jpg: not an image skulab reads (accepted: JPEG, PNG, WebP, GIF)"
    ]
    assert not at.metric
    with trained.read() as s:
        assert s.scalar(select(func.count()).select_from(Image)) == before


def test_predict_page_without_an_active_model(labelled: Catalogue) -> None:
    at = _app(_predict_page)
    assert not at.exception
    assert any("no active model" in w.value for w in at.warning)
    assert not at.file_uploader
    links = at.get("page_link")
    assert links and links[0].proto.page == "train"
