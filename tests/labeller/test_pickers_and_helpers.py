"""The plain logic behind the pages, without Streamlit: what a typed SKU means, what a weak
label fills in, split percentages, the balance chart's classes, training readiness, failed
runs in words, repeated uploads, and the label-issue cards."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from db import Catalogue, ops
from db.models import Image, Prediction, Run
from labeller import grid, jobs, labelling, reviewing, splitview, uploads
from labeller.labelling import LabelChoices, SkuChoice

CHOICES = LabelChoices(
    models=["Air Max 90", "Nike Dunk Low"],
    skus=[
        SkuChoice("DD1391-100", "Nike Dunk Low", "White/Black-White", 6, None),
        SkuChoice("DD1391-102", "Nike Dunk Low", "White/University Blue-White", 6, None),
        SkuChoice("DD1391-103", "Nike Dunk Low", "White/Grey Fog", 6, None),
        SkuChoice("CN8490-002", "Air Max 90", "Black/White", 6, None),
    ],
)


# --- what the SKU picker holds --------------------------------------------------------------


def test_a_listed_or_differently_written_sku_is_the_catalogues() -> None:
    assert labelling.pick_label(CHOICES, None, "DD1391-100") == labelling.Picked(
        "Nike Dunk Low", "DD1391-100", typed="DD1391-100"
    )
    picked = labelling.pick_label(CHOICES, "Nike Dunk Low", " dd1391-103 ")
    assert (picked.model, picked.sku, picked.new_sku, picked.ready) == (
        "Nike Dunk Low",
        "DD1391-103",
        False,
        True,
    )
    # a colourway that names one SKU of the chosen model
    assert labelling.pick_label(CHOICES, "Nike Dunk Low", "grey fog").sku == "DD1391-103"


def test_a_search_pressed_with_enter_never_makes_a_junk_sku() -> None:
    partial = labelling.pick_label(CHOICES, "Nike Dunk Low", "dd1391-10")
    assert not partial.ready and partial.sku is None
    assert "matches 3 SKUs of Nike Dunk Low" in (partial.problem or "")
    assert "DD1391-100, DD1391-102, DD1391-103" in (partial.problem or "")
    word = labelling.pick_label(CHOICES, "Nike Dunk Low", "Panda")
    assert not word.ready and "not a style code" in (word.problem or "")


def test_a_new_style_code_is_offered_under_the_chosen_model_only() -> None:
    new = labelling.pick_label(CHOICES, "Nike Dunk Low", "dd1391-999")
    assert (new.model, new.sku, new.new_sku, new.ready) == (
        "Nike Dunk Low",
        "DD1391-999",
        True,
        True,
    )
    orphan = labelling.pick_label(CHOICES, None, "DD1391-999")
    assert not orphan.ready and "choose its model first" in (orphan.problem or "")


def test_an_sku_of_another_model_is_refused_in_words() -> None:
    picked = labelling.pick_label(CHOICES, "Air Max 90", "DD1391-100")
    assert not picked.ready
    assert picked.problem == "DD1391-100 is an SKU of Nike Dunk Low, not of Air Max 90"
    assert labelling.pick_label(CHOICES, "Air Max 90", None) == labelling.Picked(
        "Air Max 90", None, typed=None
    )
    assert not labelling.pick_label(CHOICES, None, None).ready


def test_style_codes_are_normalised() -> None:
    assert labelling.normalise_style_code("  dd1391-100 ") == "DD1391-100"
    assert labelling.normalise_style_code("GW  2871") == "GW 2871"  # not a style code: as typed
    assert labelling.normalise_style_code(None) == ""


def test_a_weak_label_fills_the_pickers_with_what_the_catalogue_knows() -> None:
    assert labelling.prefill_from_weak(CHOICES, "Nike Dunk Low", "dd1391-102") == (
        "Nike Dunk Low",
        "DD1391-102",
    )
    # the catalogue, not the page, says which model an SKU is of
    assert labelling.prefill_from_weak(CHOICES, "Dunk Low Retro", "CN8490-002") == (
        "Air Max 90",
        "CN8490-002",
    )
    assert labelling.prefill_from_weak(CHOICES, "Air Max 90", "ZZ0000-000") == ("Air Max 90", None)
    assert labelling.prefill_from_weak(CHOICES, "Nike Moon Shoe", None) == (None, None)


# --- splits ---------------------------------------------------------------------------------


def test_split_percentages_must_add_up_to_100() -> None:
    assert splitview.percent_problem(70, 15, 15) is None
    assert "add up to 110%" in (splitview.percent_problem(60, 20, 30) or "")
    assert "train split a share" in (splitview.percent_problem(0, 50, 50) or "")
    assert "negative" in (splitview.percent_problem(110, -5, -5) or "")


def test_the_balance_chart_keeps_the_classes_that_need_a_look() -> None:
    records = [{"class": f"S{i:03d}", "total": 10 + i} for i in range(100)]
    shown = splitview.chart_rows(records, off=["S090", "S050"], limit=5)
    # off the ratios first, then the smallest; in the table's order
    assert [r["class"] for r in shown] == ["S000", "S001", "S002", "S050", "S090"]
    assert splitview.chart_rows(records[:3], limit=5) == records[:3]


def test_model_only_labels_are_their_own_class_among_skus() -> None:
    from db.splits import ClassBalance

    counts = {"train": 1, "val": 0, "test": 0, "none": 0}
    rows = [ClassBalance("sku", "DD1391-100", counts), ClassBalance("model", "Air Max 90", counts)]
    records = splitview.balance_records(rows, {"DD1391-100": "Nike Dunk Low"})
    assert [(r["class"], r["model"]) for r in records] == [
        ("DD1391-100", "Nike Dunk Low"),
        ("Air Max 90 (no SKU)", "Air Max 90"),
    ]
    by_model = splitview.balance_records([ClassBalance("model", "Air Max 90", counts)], {})
    assert by_model[0]["class"] == "Air Max 90"


# --- training -------------------------------------------------------------------------------


def test_training_readiness_on_an_empty_and_a_labelled_catalogue(
    catalogue: Catalogue, demo_catalogue: Catalogue
) -> None:
    with catalogue.read() as s:
        empty = jobs.training_readiness(s)
    assert empty.labelled == 0 and empty.problems and "label some" in empty.problems[0]
    with demo_catalogue.write() as s:
        labelled = list(s.scalars(select(Image).where(Image.status == "labelled")))
        for image in labelled:
            image.split = None
    with demo_catalogue.read() as s:
        unsplit = jobs.training_readiness(s)
    assert unsplit.problems == (
        "No labelled image is in the train split: assign splits on the Splits page first.",
    )
    with demo_catalogue.write() as s:
        for image in s.scalars(select(Image).where(Image.status == "labelled")):
            image.split = "train"
    with demo_catalogue.read() as s:
        ready = jobs.training_readiness(s)
    assert not ready.problems and ready.per_split["train"] == len(labelled)
    assert any("No labelled val images" in w for w in ready.warnings)
    assert ready.models == 6 and ready.skus == 30
    assert ready.summary.startswith(f"{len(labelled):,} labelled images (train {len(labelled)}")


def test_a_failed_run_in_words_and_its_details() -> None:
    run = Run(error="ValueError: no labelled images in the train split", message="Traceback ...")
    assert jobs.failure_text(run) == "no labelled images in the train split"
    assert jobs.failure_details(run) == "Traceback ..."
    bare = Run(error=None, message="failed")
    assert "without saying why" in jobs.failure_text(bare)
    assert jobs.failure_details(bare) is None
    dotted = Run(error="inference.bundle.BundleError: format v2, expected v1")
    assert jobs.failure_text(dotted) == "format v2, expected v1"


def test_compare_table_can_put_the_scores_first() -> None:
    runs = [Run(id=1, params={"backbone": "tiny"}, metrics={"val": {"top1": 0.9}})]
    assert list(jobs.compare_table(runs)) == ["param.backbone", "val.top1"]
    assert list(jobs.compare_table(runs, params_last=True)) == ["val.top1", "param.backbone"]


def test_compared_values_are_short() -> None:
    assert [jobs.format_value(v) for v in (0.9743589758872986, 1.0, 6, None, True, "tiny")] == [
        "0.9744",
        "1",
        "6",
        "",
        "True",
        "tiny",
    ]


def test_unknown_jobs_are_refused(catalogue: Catalogue) -> None:
    with pytest.raises(jobs.JobError, match="unknown job 'nope'"):
        jobs.start_job(catalogue, "nope")
    assert jobs.job_status(catalogue, jobs.DUPLICATES) is None


# --- uploads and review cards ---------------------------------------------------------------


def test_the_same_photo_twice_is_one_upload() -> None:
    from PIL import Image as PILImage

    a = uploads.Upload("a.jpg", b"same bytes", PILImage.new("RGB", (2, 2)))
    b = uploads.Upload("b.jpg", b"other bytes", PILImage.new("RGB", (2, 2)))
    again = uploads.Upload("a (1).jpg", b"same bytes", PILImage.new("RGB", (2, 2)))
    kept, repeats = uploads.distinct([a, b, again])
    assert kept == [a, b]
    assert repeats == [("a (1).jpg", "a.jpg")]


def _card(image_id: int) -> grid.Card:
    return grid.Card(image_id, "0" * 64, "x.jpg", "labelled", "Nike Dunk Low", "DD1391-100",
                     "train", None, None, ())  # fmt: skip


def test_label_issue_cards_show_the_rankers_belief() -> None:
    sku_level = SimpleNamespace(
        image_id=3,
        level="sku",
        suggested="DD1391-102",
        given_model="Nike Dunk Low",
        given_sku="DD1391-100",
        score=0.91,
    )
    model_level = {"image_id": 4, "level": "model", "suggested": "Air Max 90", "score": 0.5}
    issues = [reviewing.ranked_issue(x) for x in (sku_level, model_level, 5)]
    assert issues[0].suggestion == grid.Suggestion("Nike Dunk Low", None, "DD1391-102", None)
    assert issues[0].note == ":material/troubleshoot: likely DD1391-102 (doubt 91%)"
    assert issues[1].suggestion == grid.Suggestion("Air Max 90", None, None, None)
    assert issues[2] == reviewing.RankedIssue(5, None, "flagged by the label-issue ranking")
    with pytest.raises(TypeError, match="without an image id"):
        reviewing.ranked_issue({"level": "sku"})
    cards = reviewing.with_issues([_card(3), _card(9)], {i.image_id: i for i in issues})
    assert cards[0].suggestion == issues[0].suggestion and cards[0].note == issues[0].note
    assert cards[1] == _card(9)
    assert grid.acceptable(cards, [3, 9]) == [cards[0]]


def test_the_stored_ranking_is_read_back(tmp_path: Path) -> None:
    from training.label_issues import LabelIssue, save_ranking

    assert reviewing.saved_ranking(tmp_path) is None
    issues = [
        LabelIssue(7, "Nike Dunk Low", "DD1391-100", "DD1391-102", 0.9, "sku", True),
        LabelIssue(8, "Air Max 90", None, "Nike Cortez", 0.2, "model", False),
    ]
    save_ranking(tmp_path, issues, {"backbone": "tiny"})
    saved = reviewing.saved_ranking(tmp_path)
    assert saved is not None and saved.problem is None and saved.at
    assert [i.image_id for i in saved.issues] == [7]  # flagged ones only
    assert saved.issues[0].suggestion == grid.Suggestion("Nike Dunk Low", None, "DD1391-102", None)
    path = next(tmp_path.rglob("*.json"))
    path.write_text("{not json")
    broken = reviewing.saved_ranking(tmp_path)
    assert broken is not None and broken.issues == [] and "cannot be read" in (broken.problem or "")


def test_coverage_of_suggestions_and_of_labelled_predictions(app_data: Catalogue) -> None:
    with app_data.read() as s:
        run = labelling.active_run(s)
        assert run is not None
        covered, unlabelled = labelling.suggestion_coverage(s, run.id)
        assert covered == unlabelled > 0  # the fake run predicts every unlabelled image
        assert reviewing.prediction_coverage(s, run.id)[0] == 0
        image_id = s.scalar(select(Prediction.image_id).order_by(Prediction.image_id).limit(1))
    with app_data.write() as s:
        pred = s.scalar(select(Prediction).where(Prediction.image_id == image_id))
        ops.set_label(s, image_id, pred.model_name, pred.sku, "ana")
    with app_data.read() as s:
        assert labelling.suggestion_coverage(s, run.id) == (covered - 1, unlabelled - 1)
        assert reviewing.prediction_coverage(s, run.id)[0] == 1
        assert labelling.duplicate_summary(s) == (0, 0)
