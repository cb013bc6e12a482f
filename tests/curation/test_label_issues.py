"""Label issues on synthetic embeddings with planted wrong labels; what to label next."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
from sqlalchemy import select

from db import Catalogue
from db.health import health_report
from db.models import Image
from tests.curation.helpers import (
    add_embedding,
    add_image,
    planted_label_catalogue,
    precision_recall,
)
from training.label_issues import (
    MissingEmbeddings,
    add_arguments,
    k_center,
    main,
    next_to_label,
    rank_label_issues,
)


@pytest.fixture
def planted(catalogue: Catalogue) -> tuple[set[int], list[int]]:
    with catalogue.write() as s:
        return planted_label_catalogue(s)


def test_planted_wrong_labels_rank_on_top(
    catalogue: Catalogue, planted: tuple[set[int], list[int]]
) -> None:
    wrong, _ = planted
    issues = rank_label_issues(catalogue)
    flagged = [i.image_id for i in issues if i.flagged]
    precision, recall = precision_recall(flagged, wrong)
    assert recall == 1.0
    assert precision >= 0.8
    top = [i.image_id for i in issues[: len(wrong)]]
    assert len(set(top) & wrong) >= len(wrong) - 1
    by_id = {i.image_id: i for i in issues}
    with catalogue.read() as s:
        first = s.get(Image, top[0])
        assert by_id[top[0]].given_model == first.model.name
    levels = {by_id[i].level for i in wrong if i in by_id}
    assert levels == {"model", "sku"}


def test_every_image_ranked_with_all(
    catalogue: Catalogue, planted: tuple[set[int], list[int]]
) -> None:
    _, ids = planted
    with catalogue.read() as s:
        issues = rank_label_issues(s, only_flagged=False, limit=None)
    assert sorted(i.image_id for i in issues) == sorted(ids)
    scores = [i.score for i in issues if not i.flagged]
    assert scores == sorted(scores, reverse=True)


def test_missing_embeddings_say_what_to_run(catalogue: Catalogue) -> None:
    with catalogue.write() as s:
        add_image(s, 1, model="Model A", sku="A-1")
    with pytest.raises(MissingEmbeddings, match="python -m training fit"):
        rank_label_issues(catalogue)


def test_main_stores_the_ranking_for_the_health_report(
    catalogue: Catalogue,
    planted: tuple[set[int], list[int]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    wrong, _ = planted
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--data", str(catalogue.data_dir), "--limit", "5"])
    assert main(args) == 0
    out = capsys.readouterr()
    assert "suspected label errors" in out.err
    assert len(out.out.strip().splitlines()) == 5
    with catalogue.read() as s:
        report = health_report(s)
    assert report["label_issues"]["count"] >= len(wrong)


def test_next_to_label_strategies(catalogue: Catalogue) -> None:
    rng = np.random.default_rng(1)
    with catalogue.write() as s:
        labelled = [add_image(s, n, model="Model A", sku="A-1") for n in range(5)]
        for i in labelled:
            add_embedding(s, i, "colour", rng.normal(0, 0.1, 8))
        near = [add_image(s, 100 + n) for n in range(5)]
        for i in near:
            add_embedding(s, i, "colour", rng.normal(0, 0.1, 8))
        far = add_image(s, 200)
        add_embedding(s, far, "colour", np.full(8, 5.0))
        group = [add_image(s, 300 + n) for n in range(3)]
        for i in group:
            s.get(Image, i).dup_group = group[0]
    with catalogue.read() as s:
        diverse = next_to_label(s, "diverse", 3, user="ann")
        by_group = next_to_label(s, "dup_group", 20, user="ann")
        uncertain = next_to_label(s, "uncertain", 4, user="ann")
        unlabelled = list(s.scalars(select(Image.id).where(Image.status == "new")))
    assert diverse[0] == far
    assert len(set(diverse)) == 3
    assert sorted(by_group) == sorted(unlabelled)
    assert by_group.index(group[0]) < by_group.index(group[1])
    assert max(by_group.index(i) for i in [*near, far]) < by_group.index(group[1])
    assert uncertain == sorted(unlabelled)[:4]  # no run yet: oldest first
    with pytest.raises(ValueError, match="unknown strategy"):
        next_to_label(s, "random", 3)


def test_k_center_picks_spread_points() -> None:
    points = np.array([[0.0, 0], [0.1, 0], [10, 0], [10, 0.1], [0, 10]])
    assert sorted(k_center(points, np.zeros((0, 2)), 3)) in (
        [0, 2, 4],
        [1, 2, 4],
        [0, 3, 4],
        [1, 3, 4],
    )
    assert k_center(points, np.array([[0.0, 0]]), 1) in ([2], [3], [4])
