"""Training the cascade on the demo catalogue: accuracy, runs, bundles, suggestions, unknowns."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from db import Catalogue
from db.models import Prediction, Run
from inference.bundle import load_bundle, save_bundle
from inference.cascade import Cascade, decide
from inference.predictor import Predictor
from tests.training.helpers import demo_copy
from training.cascade_fit import Embedded, fit_cascade
from training.dataset import Example, labelled_examples
from training.fit import FitParams, embed_examples
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
    # Stage 1 is tuned on colourways it has not seen (grouped CV), stage 2 on val.
    assert metrics["fit"]["stage1"]["chosen_on"] == "cv"
    assert metrics["fit"]["stage1"]["calibrated_on"] == "cv"
    assert metrics["fit"]["stage2"]["chosen_on"] == "val"
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
    # --labelled: the labelled images too, for the Review page's "the model disagrees"
    labelled = {e.image_id: e.model for e in labelled_examples(cat)}
    assert suggest(cat, labelled=True) == n + len(labelled)
    with cat.read() as s:
        preds = list(s.scalars(select(Prediction).where(Prediction.image_id.in_(labelled))))
    assert len(preds) == len(labelled)
    agree = sum(p.model_name == labelled[p.image_id] for p in preds)
    assert agree >= 0.9 * len(preds)


def test_evaluate_rewrites_metrics(trained: tuple[Catalogue, int]) -> None:
    cat, run_id = trained
    metrics = evaluate_run(cat, run_id)
    assert metrics["val"]["stage1"]["n"] > 0
    assert "evaluated_at" in _metrics(cat, run_id)


@pytest.fixture(scope="module")
def embedded(trained: tuple[Catalogue, int]) -> tuple[Embedded, list[Example]]:
    """Every labelled demo image embedded at the default input size (what users get).

    The open-set tests measure recognition itself, which at the other tests' 96 px is
    blurred: there, new colourways of known models are only 77% right instead of 99%.
    """
    cat = trained[0]
    params = FitParams()
    examples = labelled_examples(cat)
    data, _notes = embed_examples(cat, examples, params, params.preprocessing(), lambda f, m: None)
    return data, examples


def _colourways(data: Embedded) -> dict[str, list[str]]:
    by_model: dict[str, set[str]] = {}
    for m, s in zip(data.models, data.skus, strict=True):
        by_model.setdefault(m, set()).add(s or "")
    return {m: sorted(v) for m, v in sorted(by_model.items())}


def _fit_without(
    data: Embedded, examples: list[Example], left_out: Callable[[str, str | None], bool]
) -> Cascade:
    split = {e.image_id: e.split for e in examples}
    keep = [
        i for i, (m, s) in enumerate(zip(data.models, data.skus, strict=True)) if not left_out(m, s)
    ]
    train = [i for i in keep if split[data.image_ids[i]] == "train"]
    val = [i for i in keep if split[data.image_ids[i]] == "val"]
    cascade, _report = fit_cascade(data.subset(train), data.subset(val))
    return cascade


def test_new_colourways_of_known_models_are_recognised(
    embedded: tuple[Embedded, list[Example]],
) -> None:
    """Stage 1's promise: a colourway it never saw still gets its model, not "unknown"."""
    data, examples = embedded
    colourways = _colourways(data)
    n = right = sku_unknown = 0
    for k in range(min(len(v) for v in colourways.values())):
        held = {v[k] for v in colourways.values()}
        cascade = _fit_without(data, examples, lambda _m, s, held=held: s in held)
        rows = [i for i, s in enumerate(data.skus) if s in held]
        probe = data.subset(rows)
        answers = decide(cascade, probe.gray, probe.colour)
        n += len(answers)
        right += sum(a.model == m for a, m in zip(answers, probe.models, strict=True))
        sku_unknown += sum(a.sku is None for a in answers)
    assert n >= 150
    assert right / n >= 0.9, f"only {right / n:.0%} of new colourways got their model"  # 93%
    # Their SKU is not in the catalogue: stage 2 should mostly say so.
    assert sku_unknown / n >= 0.5, f"only {sku_unknown / n:.0%} of new colourways' SKUs unknown"


def test_one_photo_per_colourway_still_says_unknown_for_new_colourways_skus(
    embedded: tuple[Embedded, list[Example]],
) -> None:
    """A folder of product shots: nothing to calibrate stage 2 on, so siblings set its bar."""
    data, examples = embedded
    split = {e.image_id: e.split for e in examples}
    colourways = _colourways(data)
    novel_unknown, known_right, n_novel, n_known = 0, 0, 0, 0
    for k in range(min(len(v) for v in colourways.values())):
        held = {v[k] for v in colourways.values()}
        first: dict[str, int] = {}
        for i, s in enumerate(data.skus):
            if s not in held and split[data.image_ids[i]] == "train":
                first.setdefault(s or "", i)
        cascade, report = fit_cascade(data.subset(sorted(first.values())), None)
        assert report["stage2"]["calibrated_on"] == "siblings"
        assert report["stage2"]["min_similarity"] is not None
        novel = data.subset([i for i, s in enumerate(data.skus) if s in held])
        known = data.subset(
            [
                i
                for i, s in enumerate(data.skus)
                if s in first and i not in first.values() and split[data.image_ids[i]] != "train"
            ]
        )
        novel_answers = decide(cascade, novel.gray, novel.colour)
        known_answers = decide(cascade, known.gray, known.colour)
        n_novel += len(novel_answers)
        n_known += len(known_answers)
        novel_unknown += sum(a.sku is None for a in novel_answers)
        known_right += sum(a.sku == s for a, s in zip(known_answers, known.skus, strict=True))
    assert n_novel >= 100 and n_known >= 100
    # measured: 48% and 75% (without the threshold: 6% and 80%)
    assert novel_unknown / n_novel >= 0.35, f"{novel_unknown / n_novel:.0%} of new SKUs unknown"
    assert known_right / n_known >= 0.7, f"{known_right / n_known:.0%} of known SKUs right"


def test_models_never_trained_on_are_mostly_unknown(
    embedded: tuple[Embedded, list[Example]],
) -> None:
    """Each demo model left out in turn: its pictures come back unknown, or at least unsure.

    Some demo silhouettes are near twins (Cortez and Air Max 90, Blazer Mid and Jordan 1
    High), so the rate varies a lot by model; the test holds its mean and the confidence.
    """
    data, examples = embedded
    split = {e.image_id: e.split for e in examples}
    rates, unseen_conf, known_conf = [], [], []
    for held in _colourways(data):
        cascade = _fit_without(data, examples, lambda m, _s, held=held: m == held)
        assert held not in cascade.models
        unseen = data.subset([i for i, m in enumerate(data.models) if m == held])
        known = data.subset(
            [
                i
                for i, m in enumerate(data.models)
                if m != held and split[data.image_ids[i]] == "test"
            ]
        )
        answers = decide(cascade, unseen.gray, unseen.colour)
        rates.append(sum(a.model is None for a in answers) / len(answers))
        assert all(a.sku is None for a in answers if a.model is None)
        unseen_conf += [a.model_confidence for a in answers]
        known_conf += [a.model_confidence for a in decide(cascade, known.gray, known.colour)]
    mean_rate = sum(rates) / len(rates)
    # measured: 0.26 (43, 20, 10, 27, 20 and 33%); stage 1 gives new colourways the benefit
    # of the doubt (STAGE1_MAX_MIN_CONFIDENCE), so familiarity does most of this work
    assert mean_rate >= 0.2, f"never-seen models came back unknown {rates}"
    assert sum(unseen_conf) / len(unseen_conf) < 0.85 * sum(known_conf) / len(known_conf)


def test_active_model_says_unknown_for_a_model_it_never_saw(tmp_path: Path, cache: Path) -> None:
    """End to end, through a recorded run and the predictor, on unlabelled catalogue images."""
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
        known = list(s.scalars(select(Image).where(Image.split == "test")))
    assert len(rows) >= 20 and len(known) >= 20
    answers = predictor.predict_images([cat.store.open(r) for r in rows])
    known_answers = predictor.predict_images([cat.store.open(r) for r in known])
    assert any(a.model is None for a in answers)
    assert all(a.sku is None for a in answers if a.model is None)
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    assert mean([a.model_confidence for a in answers]) < mean(
        [a.model_confidence for a in known_answers]
    )


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
