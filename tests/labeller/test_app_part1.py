"""The Overview, Label, Review and Catalogue pages, headless (AppTest) and in a real browser.

Pages run against a private demo catalogue with a fake active run (see conftest.py) and
every test checks the catalogue afterwards, not only the page.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from PIL import Image as PILImage
from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest

from db import Catalogue, ops
from db.models import CatalogueEvent, Image, LabelEvent, Prediction, Sku
from labeller import dashboard, grid, labelling, reviewing
from labeller.grid import Suggestion
from labeller.labelling import QueueSpec
from tests.labeller.conftest import screenshot, settled

APP = str(Path(__file__).resolve().parents[2] / "labeller" / "app.py")
TIMEOUT = 60


def _page_script(name: str) -> None:
    from labeller.app import frame, page_function

    frame()
    page_function(name)()


def page(name: str, user: str | None = "ana") -> AppTest:
    at = AppTest.from_function(_page_script, args=(name,), default_timeout=TIMEOUT)
    if user:
        at.session_state["user"] = user
    return at.run()


def ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def image_state(cat: Catalogue, image_id: int) -> tuple[str, str | None, str | None]:
    with cat.read() as s:
        image = s.get(Image, image_id)
        assert image is not None
        return (
            image.status,
            image.model.name if image.model else None,
            image.sku.style_code if image.sku else None,
        )


def shown_ids(at: AppTest, prefix: str) -> list[int]:
    return [int(c.key.rsplit("_", 1)[1]) for c in at.checkbox if c.key.startswith(f"{prefix}sel_")]


# --- plain logic ---------------------------------------------------------------------------


def test_suggestion_and_page_texts() -> None:
    s = Suggestion("Nike Dunk Low", 0.924, "DD1391-100", 0.81)
    assert grid.suggestion_text(s) == "Nike Dunk Low 92% · DD1391-100 81%"
    # "unknown" carries no confidence of its own: the best guess is named beside it
    assert grid.suggestion_text(Suggestion(None, 0.31, None, None)) == "unknown model"
    assert (
        grid.suggestion_text(Suggestion(None, 0.5, None, None, model_guess="Nike Dunk Low"))
        == "unknown model (best guess Nike Dunk Low 50%)"
    )
    assert (
        grid.suggestion_text(Suggestion("Nike Dunk Low", 0.99, None, 1.0, sku_guess="DD1391-100"))
        == "Nike Dunk Low 99% · SKU unknown (best guess DD1391-100 100%)"
    )
    assert grid.suggestion_text(None) == "no suggestion"
    assert grid.weak_text(["a", "b", "c"]) == "a, b (+1)"
    assert grid.page_caption(100, 1, 36, 36) == "Images 37–72 of 100 · page 2 of 3"
    assert [len(r) for r in grid.rows(list(range(13)), 6)] == [6, 6, 1]
    with pytest.raises(ValueError, match="columns must be at least 1"):
        grid.rows([1], 0)


def test_queue_specs_map_to_filters() -> None:
    f = labelling.queue_filter(QueueSpec("uncertain"), run_id=3, user="ana")
    assert (f.status, f.order, f.run_id, f.user) == ("new", "uncertain", 3, "ana")
    assert labelling.queue_filter(QueueSpec("uncertain"), None, "ana").order == "id"
    f = labelling.queue_filter(
        QueueSpec("filter", status="any", split="none", sku="DD1391-100"), 3, "ana"
    )
    assert (f.status, f.split, f.sku) == (None, "none", "DD1391-100")
    with pytest.raises(ValueError, match="unknown queue 'nope'"):
        QueueSpec("nope")


def test_headline_metrics_prefer_test_accuracy() -> None:
    metrics = {"val": {"loss": 0.3, "acc": 0.9}, "test": {"sku_acc": 0.8}, "n": 12, "ok": True}
    assert list(dashboard.headline_metrics(metrics, limit=3)) == [
        "test.sku_acc",
        "val.acc",
        "val.loss",
    ]


def test_two_labellers_never_get_the_same_images(app_data: Catalogue) -> None:
    spec = QueueSpec("uncertain")
    with app_data.read() as s:
        run = labelling.active_run(s)
        assert run is not None
        run_id = run.id
    ana = labelling.load_page(app_data, spec, run_id=run_id, user="ana", page_size=24)
    ben = labelling.load_page(app_data, spec, run_id=run_id, user="ben", page_size=24)
    ana_ids = {c.image_id for c in ana.cards}
    ben_ids = {c.image_id for c in ben.cards}
    assert len(ana_ids) == 24 and len(ben_ids) == 24
    assert not ana_ids & ben_ids
    # ana's own page comes back to her (her claim does not hide it from herself)
    again = labelling.load_page(app_data, spec, run_id=run_id, user="ana", page_size=24)
    assert {c.image_id for c in again.cards} == ana_ids
    # most uncertain first: margins ascend
    with app_data.read() as s:
        margins = [
            s.scalar(
                select(Prediction.margin).where(
                    Prediction.image_id == c.image_id, Prediction.run_id == run_id
                )
            )
            for c in ana.cards
        ]
    assert margins == sorted(margins)


def test_labels_per_day_and_person_count_app_work_only(app_data: Catalogue) -> None:
    with app_data.read() as s:
        before = dashboard.labels_per_person(s)
        new = list(s.scalars(select(Image.id).where(Image.status == "new").limit(3)))
    with app_data.write() as s:
        ops.reject(s, new[0], "ana")
        ops.reject(s, new[1], "ana")
        ops.reject(s, new[2], "ben")
        ops.undo(s, new[2], "ben")
    with app_data.read() as s:
        people = dashboard.labels_per_person(s)
        days = dashboard.labels_per_day(s)
    assert before == []  # the demo's own import labels are not anyone's work
    assert people == [{"person": "ana", "action": "reject", "images": 2}]
    assert [(d["action"], d["images"]) for d in days] == [("reject", 2)]


# --- pages, headless -----------------------------------------------------------------------


def test_empty_catalogue_offers_demo_import_and_crawl(empty_data: Path, tmp_path: Path) -> None:
    at = ok(AppTest.from_file(APP, default_timeout=TIMEOUT).run())
    assert any("The catalogue is empty" in m.value for m in at.subheader)
    assert any("scrapy crawl nike" in c.value for c in at.code)
    assert any("scrapy crawl shopify -a stores=" in c.value for c in at.code)

    # import a folder: <model>/<SKU>/*.png
    tree = tmp_path / "tree" / "Nike Dunk Low" / "DD1391-100"
    tree.mkdir(parents=True)
    for i in range(2):
        buf = io.BytesIO()
        PILImage.new("RGB", (40, 30), (10 * i, 200, 30)).save(buf, format="PNG")
        (tree / f"{i}.png").write_bytes(buf.getvalue())
    at.text_input(key="ov_import_path").input(str(tmp_path / "tree")).run()
    at.button(key="ov_import").click().run()
    ok(at)
    cat = Catalogue(empty_data)
    with cat.read() as s:
        labels = s.execute(
            select(Image.status, Sku.style_code).join(Sku, Sku.id == Image.sku_id)
        ).all()
    assert sorted(labels) == [("labelled", "DD1391-100")] * 2
    assert any("2 new" in c.value for c in at.code)  # the import report is shown
    assert not at.subheader or all("empty" not in m.value for m in at.subheader)
    cat.dispose()


def test_empty_catalogue_loads_the_demo(empty_data: Path) -> None:
    at = ok(AppTest.from_file(APP, default_timeout=TIMEOUT).run())
    at.number_input(key="ov_demo_size").set_value(2).run()
    at.button(key="ov_demo").click().run(timeout=120)
    ok(at)
    cat = Catalogue(empty_data)
    with cat.read() as s:
        n = s.scalar(select(func.count()).select_from(Image))
    cat.dispose()
    assert n and n > 30
    assert any(m.label == "Images" for m in at.metric)


def test_overview_shows_counts_run_and_pace(app_data: Catalogue) -> None:
    at = ok(page("overview"))
    metrics = {m.label: m.value for m in at.metric}
    with app_data.read() as s:
        stats = ops.stats(s)
    assert metrics["Images"] == f"{stats['images']:,}"
    assert metrics["To label"] == f"{stats['by_status']['new']:,}"
    assert metrics["test.model_accuracy"] == "93.0%"  # the active run's headline metrics


def test_pages_ask_for_a_name_first(app_data: Catalogue) -> None:
    at = ok(page("label", user=None))
    assert any("Enter your name" in i.value for i in at.info)
    assert not at.button


def test_label_accept_ticked_suggestions(app_data: Catalogue) -> None:
    at = ok(page("label"))
    ids = shown_ids(at, "lab_")
    assert len(ids) == grid.DEFAULT_PAGE_SIZE
    wrong = ids[0]
    at.checkbox(key=f"lab_acc_{wrong}").uncheck().run()
    ok(at.button(key="lab_accept").click().run())
    with app_data.read() as s:
        preds = {
            p.image_id: p.sku
            for p in s.scalars(select(Prediction).where(Prediction.image_id.in_(ids)))
        }
    assert image_state(app_data, wrong)[0] == "new"
    for image_id in ids[1:]:
        status, _model, sku = image_state(app_data, image_id)
        assert (status, sku) == ("labelled", preds[image_id])
    with app_data.read() as s:
        hows = set(s.scalars(select(LabelEvent.how).where(LabelEvent.user == "ana")))
    assert hows == {"suggestion"}
    # the grid moved on: the accepted images left the queue, the unticked one stayed
    after = shown_ids(at, "lab_")
    assert wrong in after and not set(ids[1:]) & set(after)
    assert any("Accepted 35 suggestions" in t.value for t in at.toast)


def test_label_image_dialog_shows_sources_and_history(app_data: Catalogue) -> None:
    at = ok(page("label"))
    image_id = shown_ids(at, "lab_")[0]
    at.checkbox(key=f"lab_sel_{image_id}").check().run()
    at.button(key="lab_reject").click().run()
    at = ok(page("label"))  # a new session: the dialog of an image from the filter queue
    at.selectbox(key="lab_queue").select("filter").run()
    at.selectbox(key="lab_f_status").select("rejected").run()
    ok(at.button(key=f"lab_zoom_{image_id}").click().run())
    assert any(f"**Image {image_id}** · rejected" in m.value for m in at.markdown)
    sources, history = at.dataframe[0].value, at.dataframe[1].value
    assert list(sources["kind"]) == ["demo"]
    assert list(history["action"]) == ["reject"] and list(history["who"]) == ["ana"]


def test_label_selection_reject_and_undo(app_data: Catalogue) -> None:
    at = ok(page("label"))
    ids = shown_ids(at, "lab_")
    a, b, junk = ids[:3]
    at.checkbox(key=f"lab_sel_{a}").check()
    at.checkbox(key=f"lab_sel_{b}").check()
    at.selectbox(key="lab_pick_model").select("Air Max 90").run()
    code = at.selectbox(key="lab_pick_sku").options[0].split(" ")[0]
    at.selectbox(key="lab_pick_sku").select(code).run()
    ok(at.button(key="lab_label").click().run())
    assert image_state(app_data, a) == ("labelled", "Air Max 90", code)
    assert image_state(app_data, b) == ("labelled", "Air Max 90", code)

    at.checkbox(key=f"lab_sel_{junk}").check().run()
    ok(at.button(key="lab_reject").click().run())
    assert image_state(app_data, junk) == ("rejected", None, None)

    ok(at.button(key="lab_undo").click().run())  # undoes the reject
    assert image_state(app_data, junk) == ("new", None, None)
    ok(at.button(key="lab_undo").click().run())  # then the two labels
    assert image_state(app_data, a)[0] == "new"
    assert image_state(app_data, b)[0] == "new"
    assert junk in shown_ids(at, "lab_")


def test_label_filter_queue_and_new_sku(app_data: Catalogue) -> None:
    at = ok(page("label"))
    at.selectbox(key="lab_queue").select("filter").run()
    at.selectbox(key="lab_f_status").select("labelled").run()
    ids = shown_ids(ok(at), "lab_")
    assert ids and all(image_state(app_data, i)[0] == "labelled" for i in ids)
    # a style code typed into the SKU picker becomes a new SKU of the chosen model (AppTest
    # cannot type a new option into a selectbox, so the page's helper is called directly)
    from labeller import common

    with app_data.read() as s:
        choices = labelling.label_choices(s)
    common.ensure_sku(app_data, choices, "Nike Cortez", "DM4044-999", "ana")
    labelling.label_images(app_data, [ids[0]], "Nike Cortez", "DM4044-999", "ana")
    assert image_state(app_data, ids[0]) == ("labelled", "Nike Cortez", "DM4044-999")
    with app_data.read() as s:
        assert s.scalar(select(CatalogueEvent.action).order_by(CatalogueEvent.id.desc())) == (
            "create_sku"
        )
    with pytest.raises(ops.CatalogueError, match="choose its model first"):
        common.ensure_sku(app_data, choices, None, "DM4044-998", "ana")


def _disagreeing_image(cat: Catalogue) -> tuple[int, str]:
    """Label an image that has a suggestion with another SKU than the suggested one."""
    with cat.write() as s:
        pred = s.scalar(select(Prediction).order_by(Prediction.image_id).limit(1))
        assert pred is not None
        other = s.scalar(select(Sku).where(Sku.style_code != pred.sku).limit(1))
        assert other is not None
        ops.set_label(s, pred.image_id, None, other.style_code, "ben")
        return pred.image_id, other.style_code


def test_review_confirm_takes_a_label_off_the_list(app_data: Catalogue) -> None:
    image_id, code = _disagreeing_image(app_data)
    with app_data.read() as s:
        run = labelling.active_run(s)
        assert run is not None
        assert image_id in reviewing.disagreements(s, run.id)
    at = ok(page("review"))
    assert shown_ids(at, "rev_") == [image_id]
    at.checkbox(key=f"rev_sel_{image_id}").check().run()
    ok(at.button(key="rev_confirm").click().run())
    assert image_state(app_data, image_id)[2] == code  # the label is kept
    assert shown_ids(at, "rev_") == []
    with app_data.read() as s:
        assert image_id not in reviewing.disagreements(s, run.id)


def test_review_accepts_the_models_suggestion(app_data: Catalogue) -> None:
    image_id, _code = _disagreeing_image(app_data)
    at = ok(page("review"))
    at.checkbox(key=f"rev_acc_{image_id}").check().run()
    ok(at.button(key="rev_accept").click().run())
    with app_data.read() as s:
        suggested = s.scalar(select(Prediction.sku).where(Prediction.image_id == image_id))
    assert image_state(app_data, image_id)[2] == suggested
    assert shown_ids(at, "rev_") == []


def test_review_weak_label_conflicts(app_data: Catalogue) -> None:
    with app_data.write() as s:
        src = s.execute(
            select(Image.id, Sku.style_code).join(Sku, Sku.id == Image.sku_id).limit(1)
        ).one()
        other = s.scalar(select(Sku.style_code).where(Sku.style_code != src[1]).limit(1))
        ops.ingest_image(  # the same bytes seen on a page that claims another SKU
            s,
            app_data.store,
            app_data.store.read_bytes(s.get(Image, src[0])),
            "x.jpg",
            ops.Source(kind="crawl", page_url="https://example.test/p", weak_sku=other),
        )
    at = ok(page("review"))
    at.segmented_control(key="rev_kind").set_value("weak").run()
    assert src[0] in shown_ids(ok(at), "rev_")


def test_catalogue_rename_and_merge(app_data: Catalogue) -> None:
    at = ok(page("catalogue"))
    at.selectbox(key="cat_rn_model_old").select("Air Max 90")
    at.text_input(key="cat_rn_model_new").input("Nike Air Max 90")
    ok(at.button(key="cat_rename_model_go").click().run())
    with app_data.read() as s:
        assert ops.find_model(s, "Nike Air Max 90") is not None
        assert ops.find_model(s, "Air Max 90") is None
        codes = list(
            s.scalars(
                select(Sku.style_code)
                .join(Sku.model)
                .where(Sku.model.has(name="Nike Air Max 90"))
                .order_by(Sku.style_code)
            )
        )
        labelled = list(
            s.scalars(
                select(Image.id).join(Sku, Sku.id == Image.sku_id).where(Sku.style_code == codes[0])
            )
        )
    src, dst = codes[0], codes[1]
    at.selectbox(key="cat_mg_sku_src").select(src)
    at.selectbox(key="cat_mg_sku_dst").select(dst)
    ok(at.button(key="cat_merge_skus_go").click().run())
    with app_data.read() as s:
        assert ops.find_sku(s, src) is None
        events = [
            (e.action, e.user)
            for e in s.scalars(select(CatalogueEvent).order_by(CatalogueEvent.id))
        ]
        relabelled = list(
            s.scalars(select(LabelEvent.image_id).where(LabelEvent.how == "catalogue"))
        )
    assert events[-2:] == [("rename_model", "ana"), ("merge_skus", "ana")]
    assert labelled and sorted(relabelled) == sorted(labelled)
    for image_id in labelled:
        assert image_state(app_data, image_id)[2] == dst
    # a refused edit says why and changes nothing
    at.selectbox(key="cat_mg_model_src").select("Nike Cortez")
    at.selectbox(key="cat_mg_model_dst").select("Nike Cortez")
    at.button(key="cat_merge_models_go").click().run()
    assert any("into itself" in e.value for e in at.error)


def test_label_weak_queue_fills_the_pickers_and_labels_a_page(app_data: Catalogue) -> None:
    at = ok(page("label"))
    at.selectbox(key="lab_queue").select("weak").run()
    with app_data.read() as s:
        choices = labelling.label_choices(s)
        model, code, _n = next(w for w in labelling.weak_choices(s) if w[1] in choices.by_code)
    at.selectbox(key="lab_weak").select(labelling.choice_key(model, code)).run()
    assert at.selectbox(key="lab_pick_sku").value == code  # filled from the weak label
    assert at.selectbox(key="lab_pick_model").value == choices.by_code[code].model
    ids = shown_ids(ok(at), "lab_")
    assert ids
    at.button(key="lab_select_all").click().run()
    ok(at.button(key="lab_label").click().run())
    assert all(image_state(app_data, i)[2] == code for i in ids)
    assert any(f"Labelled {len(ids)} image" in t.value for t in at.toast)
    # the weak label stays chosen although its count changed
    assert at.selectbox(key="lab_weak").value == labelling.choice_key(model, code)


def test_label_needs_a_selection_and_says_so(app_data: Catalogue) -> None:
    at = ok(page("label"))
    at.selectbox(key="lab_pick_model").select("Air Max 90").run()
    assert not at.button(key="lab_label").disabled  # a model alone is a label
    at.button(key="lab_label").click().run()
    assert [e.value for e in at.error] == ["select images to label first"]


def test_label_duplicates_queue_finds_groups_in_the_background(app_data: Catalogue) -> None:
    import time

    from labeller import jobs

    at = ok(page("label"))
    at.selectbox(key="lab_queue").select("duplicates").run()
    assert any("No near-duplicate groups found yet" in c.value for c in at.caption)
    ok(at.button(key="lab_find_dups").click().run())
    deadline = time.monotonic() + 120
    while jobs.job_running(app_data, jobs.DUPLICATES):
        assert time.monotonic() < deadline, "python -m db duplicates did not end in 120 s"
        time.sleep(0.5)
    status = jobs.job_status(app_data, jobs.DUPLICATES)
    assert status is not None and "near-duplicate groups" in status.log_tail, status.log_tail
    with app_data.read() as s:
        groups, images = labelling.duplicate_summary(s)
    assert groups > 0  # the demo data has resized, cropped and mirrored copies
    at.run()
    assert any(f"{images:,} unlabelled images in {groups:,}" in c.value for c in at.caption)
    first = shown_ids(ok(at), "lab_")[0]
    with app_data.read() as s:
        group = s.get(Image, first).dup_group  # type: ignore[union-attr]
    assert group is not None
    assert any(c.value.endswith(f":material/content_copy: group {group}") for c in at.caption)


def test_review_says_why_the_model_has_nothing_to_disagree_with(app_data: Catalogue) -> None:
    at = ok(page("review"))  # the fake run predicts unlabelled images only
    assert any("no prediction for any of the" in i.value for i in at.info)
    assert not shown_ids(at, "rev_")


def test_catalogue_edits_follow_each_other_without_a_reload(app_data: Catalogue) -> None:
    at = ok(page("catalogue"))
    at.text_input(key="cat_new_model_name").input("Nike Air Max 1")
    ok(at.button(key="cat_create_model").click().run())
    # the new model is offered at once, and a lower-case style code is stored upper-case
    assert "Nike Air Max 1" in at.selectbox(key="cat_new_sku_model").options
    at.text_input(key="cat_new_sku_code").input("fd9082-107")
    at.selectbox(key="cat_new_sku_model").select("Nike Air Max 1")
    ok(at.button(key="cat_create_sku").click().run())
    with app_data.read() as s:
        sku = ops.find_sku(s, "FD9082-107")
        assert sku is not None and sku.model.name == "Nike Air Max 1"
    assert any(o.startswith("FD9082-107") for o in at.selectbox(key="cat_mv_sku").options)
    # an empty form says what is missing instead of a database word
    at.button(key="cat_move_go").click().run()
    assert [e.value for e in at.error] == ["Fill in SKU and new model first."]


# --- the real browser ----------------------------------------------------------------------


@pytest.mark.browser
def test_browser_label_page_accepts_all_suggestions(
    app_server: str, browser_page: Any, app_data: Catalogue
) -> None:
    page = browser_page
    page.goto(f"{app_server}/?user=ana")
    settled(page)
    screenshot(page, "overview")

    page.get_by_role("link", name="Label").click()
    settled(page)
    cards = page.locator('[class*="st-key-lab_card_"]')
    assert cards.count() == grid.DEFAULT_PAGE_SIZE
    screenshot(page, "label")
    with app_data.read() as s:
        before = s.scalar(select(func.count()).where(Image.status == "labelled"))

    page.locator(".st-key-lab_accept").get_by_role("button").click()  # not its hidden twin
    page.wait_for_selector('[data-testid="stToast"]', timeout=30_000)
    settled(page)
    with app_data.read() as s:
        after = s.scalar(select(func.count()).where(Image.status == "labelled"))
        accepted = s.scalar(
            select(func.count()).where(LabelEvent.how == "suggestion", LabelEvent.user == "ana")
        )
    assert accepted == grid.DEFAULT_PAGE_SIZE
    assert after == before + grid.DEFAULT_PAGE_SIZE

    # the keyboard shortcut for Undo reverts the whole accept
    page.locator("h1").first.click()
    page.keyboard.press("u")
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=\"stToast\"]')]"
        ".some(t => t.innerText.includes('Undid'))",
        timeout=30_000,
    )
    settled(page)
    with app_data.read() as s:
        assert s.scalar(select(func.count()).where(Image.status == "labelled")) == before

    page.locator('[class*="st-key-lab_zoom_"] button').first.click()
    page.wait_for_selector('[data-testid="stDialog"] img', timeout=30_000)
    screenshot(page, "image_dialog", full_page=False)
    page.keyboard.press("Escape")

    _disagreeing_image(app_data)  # something for the Review page to show
    for name in ("Review", "Catalogue"):
        page.get_by_role("link", name=name).click()
        screenshot(page, name.lower())
