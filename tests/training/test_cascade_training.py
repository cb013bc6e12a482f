"""Training the cascade on the demo catalogue: accuracy, runs, bundles, suggestions, unknowns."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from db import Catalogue
from db.models import Prediction, Run
from inference.bundle import load_bundle, save_bundle
from inference.predictor import Predictor
from tests.training.helpers import demo_copy
from training.fit import FitParams
from training.jobs import evaluate_run, promote_run, run_fit, run_status
from training.suggest import suggest

IMAGE_SIZE = 96  # small pictures keep the tests quick on two cores
HELD_OUT = "Nike Cortez"


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("demo-cache")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, cache: Path) -> tuple[Catalogue, int]:
    """The demo catalogue with one run of the default cascade, promoted."""
    cat = demo_copy(tmp_path_factory.mktemp("trained"), cache)
    seen: list[float] = []
    run_id = run_fit(
        cat, FitParams(image_size=IMAGE_SIZE), progress=lambda f, _m: seen.append(f), promote=True
    )
    status = run_status(cat, run_id)
    assert status["status"] == "succeeded", status
    assert seen and seen[-1] == 1.0 and seen == sorted(seen)
    return cat, run_id


def _metrics(cat: Catalogue, run_id: int) -> dict:
    with cat.read() as s:
        run = s.get(Run, run_id)
        assert run is not None
        return dict(run.metrics or {})


def test_cascade_reaches_high_accuracy_on_demo_test_split(trained: tuple[Catalogue, int]) -> None:
    cat, run_id = trained
    test = _metrics(cat, run_id)["test"]
    assert test["stage1"]["n"] >= 50
    assert test["stage1"]["top1"] >= 0.9
    assert test["stage1"]["top3"] >= 0.98
    assert test["stage2"]["top1"] >= 0.8
    assert 0 <= test["stage1"]["ece"] <= 0.2
    assert len(test["stage1"]["confusion"]["matrix"]) == 6


def test_run_records_everything(trained: tuple[Catalogue, int]) -> None:
    cat, run_id = trained
    with cat.read() as s:
        run = s.get(Run, run_id)
        assert run is not None
        assert run.active and run.status == "succeeded" and run.progress == 1.0
        assert run.fingerprint and len(run.fingerprint) == 64
        assert run.params["backbone"] == "efficientnet_lite0"
        folder = cat.data_dir / run.bundle_path
    metrics = _metrics(cat, run_id)
    assert metrics["fit"]["stage1"]["chosen_on"] == "val"
    assert metrics["timing"]["total_s"] > 0
    assert (folder / "bundle.json").is_file() and (folder / "heads.safetensors").is_file()
    assert "confusion_test_stage1.png" in metrics["pictures"]
    assert (folder / "confusion_test_stage1.png").stat().st_size > 1000


def test_bundle_round_trips_with_same_predictions(
    trained: tuple[Catalogue, int], tmp_path: Path
) -> None:
    cat, _run_id = trained
    predictor = Predictor.from_active(cat)
    copy = save_bundle(predictor.bundle, tmp_path / "copy")
    assert load_bundle(copy).cascade.models == predictor.cascade.models
    again = Predictor.load(copy)
    with cat.read() as s:
        from db.models import Image

        rows = list(s.scalars(select(Image).where(Image.split == "test").limit(6)))
        truth = [r.model.name for r in rows]
    pictures = [cat.store.open(r) for r in rows]
    first = [p.to_dict() for p in predictor.predict_images(pictures)]
    second = [p.to_dict() for p in again.predict_images(pictures)]
    assert first == second
    assert sum(p["model"] == t for p, t in zip(first, truth, strict=True)) >= 5


def test_suggestions_land_in_the_catalogue(trained: tuple[Catalogue, int]) -> None:
    cat, run_id = trained
    n = suggest(cat)
    assert n > 0
    with cat.read() as s:
        preds = list(s.scalars(select(Prediction).where(Prediction.run_id == run_id)))
    assert len(preds) == n
    assert all(p.margin is not None and p.top and "model_top3" in p.top for p in preds)
    assert suggest(cat) == n  # a second call replaces, never duplicates
    with cat.read() as s:
        assert len(list(s.scalars(select(Prediction)))) == n


def test_evaluate_rewrites_metrics(trained: tuple[Catalogue, int]) -> None:
    cat, run_id = trained
    metrics = evaluate_run(cat, run_id)
    assert metrics["val"]["stage1"]["n"] > 0
    assert "evaluated_at" in _metrics(cat, run_id)


def test_model_never_trained_on_comes_back_unknown(tmp_path: Path, cache: Path) -> None:
    cat = demo_copy(tmp_path, cache, hold_out=HELD_OUT)
    run_id = run_fit(cat, FitParams(image_size=IMAGE_SIZE), promote=True)
    assert run_status(cat, run_id)["status"] == "succeeded"
    predictor = Predictor.from_active(cat)
    assert HELD_OUT not in predictor.cascade.models
    from db.models import Image, ImageSource

    with cat.read() as s:
        rows = list(
            s.scalars(
                select(Image)
                .join(ImageSource)
                .where(Image.status == "new", ImageSource.image_url.contains("DM4044"))
            )
        )
    assert len(rows) >= 20
    answers = predictor.predict_images([cat.store.open(r) for r in rows])
    unknown = sum(a.model is None for a in answers) / len(answers)
    assert unknown >= 0.5, f"only {unknown:.0%} of a never-seen model came back unknown"
    assert all(a.sku is None for a in answers if a.model is None)


def test_catalogue_without_skus_gives_stage_one_only(tmp_path: Path, cache: Path) -> None:
    cat = demo_copy(tmp_path, cache, with_skus=False)
    run_id = run_fit(cat, FitParams(image_size=IMAGE_SIZE, C=30.0), promote=True)
    assert run_status(cat, run_id)["status"] == "succeeded"
    predictor = Predictor.from_active(cat)
    assert predictor.cascade.stage2 is None
    with cat.read() as s:
        from db.models import Image

        row = s.scalars(select(Image).where(Image.split == "test")).first()
    answer = predictor.predict_images([cat.store.open(row)])[0]
    assert answer.sku is None and answer.sku_top3 == []
    assert answer.model_top3[0][0] in predictor.cascade.models


def test_failed_run_says_why_and_keeps_the_active_model(
    trained: tuple[Catalogue, int], tmp_path: Path, catalogue: Catalogue
) -> None:
    run_id = run_fit(catalogue, FitParams(image_size=IMAGE_SIZE), promote=True)
    status = run_status(catalogue, run_id)
    assert status["status"] == "failed"
    assert "no labelled images in the train split" in status["error"]
    assert not status["active"]
    cat, active = trained
    bad = run_fit(cat, {"backbone": "resnet50", "image_size": IMAGE_SIZE}, promote=True)
    assert run_status(cat, bad)["status"] == "failed"
    assert "resnet50" in run_status(cat, bad)["error"]
    assert run_status(cat, active)["active"]
    with pytest.raises(ValueError, match="only a succeeded run"):
        promote_run(cat, bad)
