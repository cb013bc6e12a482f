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
from db.images import accepted_text
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


def test_splits_page_refuses_percentages_that_do_not_add_up(labelled: Catalogue) -> None:
    with labelled.read() as s:
        before = s.execute(select(Image.id, Image.split).order_by(Image.id)).all()
    at = _app(_splits_page)
    at.number_input(key="splits_test").set_value(30)  # 70 + 15 + 30
    at.button(key="splits_assign").click().run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        "Train, val and test add up to 115%, not 100%: change one of them (nothing was assigned)."
    ]
    with labelled.read() as s:
        assert s.execute(select(Image.id, Image.split).order_by(Image.id)).all() == before


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

    # promoting starts the refresh of the suggestions with the new run, in the background
    from labeller.jobs import suggest_status

    started = suggest_status(trained)
    assert started is not None and started.job.args == ("training", "suggest", "--labelled")
    n = _wait_suggestions(trained, run_id)
    at.run()
    assert f"stored {n} suggestions" in _texts(at)

    # and the button refreshes them again on request (disabled while one runs)
    assert not at.button(key="train_suggest").disabled
    at.button(key="train_suggest").click().run()
    assert not at.exception
    again = suggest_status(trained)
    assert again is not None and again.job.pid != started.job.pid
    assert _wait_suggestions(trained, run_id) == n


def _wait_suggestions(cat: Catalogue, run_id: int) -> int:
    """Wait for the suggestion refresh to end; it covered every image not rejected. Their count."""
    from labeller.jobs import suggest_status

    deadline = time.monotonic() + 300
    while True:
        status = suggest_status(cat)
        if status is not None and not status.running:
            break
        assert time.monotonic() < deadline, "suggestions not refreshed in 300 s"
        time.sleep(1.0)
    with cat.read() as s:
        n = s.scalar(
            select(func.count()).select_from(Prediction).where(Prediction.run_id == run_id)
        )
        wanted = s.scalar(
            select(func.count()).select_from(Image).where(Image.status.in_(("new", "labelled")))
        )
    assert wanted and n == wanted, status.log_tail  # unlabelled and labelled, not rejected
    return int(n)


def test_train_page_says_what_a_run_needs_before_it_starts(labelled: Catalogue) -> None:
    with labelled.write() as s:  # labelled, but no image in a split
        for image in s.scalars(select(Image)):
            image.split = None
    at = _app(_train_page)
    assert not at.exception
    assert at.button(key="train_start").disabled
    assert any("assign splits on the Splits page first" in w.value for w in at.warning)
    assert "labelled images (train 0, val 0, test 0, no split " in _texts(at)
    with labelled.read() as s:
        assert s.scalar(select(func.count()).select_from(Run)) == 0


def test_train_page_shows_why_a_run_failed(trained: Catalogue) -> None:
    with trained.write() as s:
        s.add(Run(status="failed", params={"backbone": "tiny"}, error="ValueError: no labelled images",
                  message="Traceback (most recent call last): ..."))  # fmt: skip
    at = _app(_train_page)
    assert not at.exception
    # the reason in words, without the exception's class name; the traceback on request
    assert any(e.value == "no labelled images" for e in at.error)
    assert any("failed" in e.label for e in at.expander)
    assert not any("Traceback" in c.value for c in at.code)
    details = next(t.key for t in at.toggle if t.key.startswith("train_failed_details_"))
    at.toggle(key=details).set_value(True).run()
    assert any("Traceback" in c.value for c in at.code)


# --- Review: the label-issue ranking, made outside the app ---------------------------------


def _review_page() -> None:
    from labeller.views.review import render

    render()


def test_review_ranks_label_issues_in_the_background(trained: Catalogue) -> None:
    from labeller import jobs

    at = _app(_review_page)
    at.segmented_control(key="rev_kind").set_value("issues").run()
    assert "No ranking yet" in _texts(at)
    at.button(key="rev_rank").click().run()
    assert not at.exception
    status = jobs.job_status(trained, jobs.ISSUES)
    assert status is not None and status.job.args[-2:] == ("--backbone", "tiny")
    deadline = time.monotonic() + 300
    while jobs.job_running(trained, jobs.ISSUES):
        assert time.monotonic() < deadline, "python -m training issues did not end in 300 s"
        time.sleep(0.5)
    at.run()
    assert not at.exception
    assert "labels suspected, most doubted first" in _texts(at), _texts(at)
    notes = [c.value for c in at.caption if c.value.startswith(":material/troubleshoot: ")]
    shown = [int(c.key.rsplit("_", 1)[1]) for c in at.checkbox if c.key.startswith("rev_sel_")]
    assert notes and len(notes) == len(shown)  # every card says what the ranker believes
    from labeller.reviewing import saved_ranking

    saved = saved_ranking(trained.data_dir)
    assert saved is not None and saved.issues
    assert shown == [i.image_id for i in saved.issues][: len(shown)]  # most doubted first


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
        f"Cannot use this file — notes.jpg: not an image skulab reads (accepted: {accepted_text()})"
    ]
    assert not at.metric
    with trained.read() as s:
        assert s.scalar(select(func.count()).select_from(Image)) == before


def test_predict_page_takes_the_same_photo_twice_once(trained: Catalogue) -> None:
    data = _new_sneaker_png()
    at = _app(_predict_page)
    at.file_uploader(key="predict_files").upload("shoe.png", data, "image/png")
    at.file_uploader(key="predict_files").upload("shoe copy.png", data, "image/png")
    at.run()
    assert not at.exception and not at.error
    assert [m.label for m in at.metric] == ["Model", "SKU"]  # one answer
    assert "shoe copy.png is the same picture as shoe.png: shown once." in _texts(at)


def test_predict_page_with_an_unreadable_model_says_so(trained: Catalogue) -> None:
    with trained.read() as s:
        run = s.scalar(select(Run).where(Run.active))
        assert run is not None and run.bundle_path
        folder = trained.data_dir / run.bundle_path
    meta = folder / "bundle.json" if folder.is_dir() else folder
    meta.write_text('{"format": "something else"}')
    at = _app(_predict_page)
    assert not at.exception
    assert any(f"The active model (run #{run.id}) cannot be loaded" in e.value for e in at.error), [
        e.value for e in at.error
    ]
    assert not at.file_uploader


def test_predict_page_without_an_active_model(labelled: Catalogue) -> None:
    at = _app(_predict_page)
    assert not at.exception
    assert any("no active model" in w.value for w in at.warning)
    assert not at.file_uploader
    links = at.get("page_link")
    assert links and links[0].proto.page == "train"
