"""Near-duplicates: planted copies are grouped, unrelated pictures are not."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from db import Catalogue, ops
from db.duplicates import (
    HashIndex,
    apply_groups,
    backfill_mirror_hashes,
    default_embedding_key,
    duplicates_of,
    embedding_pairs,
    find_duplicates,
    hamming,
    keep_one,
    missing_mirror_ids,
)
from db.models import Embedding, Image, LabelEvent
from tests.curation.helpers import COPIES, add_image, encode, ingest, photo, plant_duplicates


@pytest.fixture
def planted(catalogue: Catalogue) -> dict[int, list[int]]:
    planted = plant_duplicates(catalogue, n_originals=8)
    assert backfill_mirror_hashes(catalogue) == 0  # ingest stores the mirror hash already
    return planted


def test_backfill_fills_mirror_hashes_missing_from_older_catalogues(catalogue: Catalogue) -> None:
    plant_duplicates(catalogue, n_originals=2)
    with catalogue.write() as s:
        s.execute(update(Image).values(phash_mirror=None))
    with catalogue.read() as s:
        assert len(missing_mirror_ids(s)) == 2 * (1 + len(COPIES))
    assert backfill_mirror_hashes(catalogue) == 2 * (1 + len(COPIES))
    with catalogue.read() as s:
        assert missing_mirror_ids(s) == []
        assert all(len(h) == 16 for h in s.scalars(select(Image.phash_mirror)))


def _group_of(report_groups: list, image_id: int) -> int | None:
    for g in report_groups:
        if image_id in g.image_ids:
            return g.group_id
    return None


def test_planted_copies_are_grouped_and_originals_kept_apart(
    catalogue: Catalogue, planted: dict[int, list[int]]
) -> None:
    with catalogue.read() as s:
        report = find_duplicates(s, store=catalogue.store)
    assert report.without_mirror_hash == 0
    assert len(report.groups) == len(planted)
    for original, copies in planted.items():
        group = _group_of(report.groups, original)
        assert group == original, f"original {original} not heading its own group"
        assert [_group_of(report.groups, c) for c in copies] == [original] * len(copies)
    kinds = {p.kind for g in report.groups for p in g.pairs}
    assert "mirror" in kinds


def test_apply_writes_groups_and_keep_one_rejects_the_rest(
    catalogue: Catalogue, planted: dict[int, list[int]]
) -> None:
    with catalogue.read() as s:
        report = find_duplicates(s, store=catalogue.store)
    with catalogue.write() as s:
        assert apply_groups(s, report) == len(planted) * (1 + len(COPIES))
    with catalogue.write() as s:
        assert apply_groups(s, report) == 0  # idempotent
    original, copies = next(iter(planted.items()))
    keep = copies[0]
    with catalogue.write() as s:
        with pytest.raises(ops.CatalogueError, match="not in near-duplicate group"):
            keep_one(s, original, next(iter(planted)) + 10_000, "ann")
        rejected = keep_one(s, original, keep, "ann")
    assert sorted(rejected) == sorted([original, *copies[1:]])
    with catalogue.read() as s:
        statuses = dict(
            s.execute(select(Image.id, Image.status).where(Image.dup_group == original)).all()
        )
        hows = set(s.scalars(select(LabelEvent.how).where(LabelEvent.image_id.in_(rejected))))
    assert statuses[keep] == "new"
    assert all(statuses[i] == "rejected" for i in rejected)
    assert hows == {"duplicate"}


def test_index_finds_the_copies_of_a_new_picture(
    catalogue: Catalogue, planted: dict[int, list[int]]
) -> None:
    original, copies = next(iter(planted.items()))
    with catalogue.read() as s:
        index = HashIndex.from_session(s)
        near = duplicates_of(s, original, index=index)
    assert set(copies) <= set(near)
    assert not set(near) & (set(planted) - {original})
    img = photo(100)  # the first original's picture, seen again as a fresh upload
    from db.images import phash

    found = {i for i, _, _ in index.query(phash(img.resize((200, 150))))}
    assert original in found


def test_unrelated_pictures_stay_apart(catalogue: Catalogue) -> None:
    with catalogue.write() as s:
        for k in range(25):
            ingest(s, catalogue.store, encode(photo(500 + k)), f"u{k}.jpg")
    backfill_mirror_hashes(catalogue)
    with catalogue.read() as s:
        assert missing_mirror_ids(s) == []
        report = find_duplicates(s, store=catalogue.store)
    assert report.groups == []


def test_embedding_links_and_hamming() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(size=(6, 16)).astype(np.float32)
    vectors = np.concatenate([base, base[:2] + 0.01 * rng.normal(size=(2, 16))])
    ids = np.arange(1, 9)
    pairs = {(p.a, p.b) for p in embedding_pairs(ids, vectors, min_cosine=0.99)}
    assert pairs == {(1, 7), (2, 8)}
    assert hamming("ffff000000000000", "fff0000000000001") == 5


def test_curation_reads_the_default_size_embeddings(catalogue: Catalogue) -> None:
    """A trial run at 96 px over more images does not change which embeddings it reads."""

    def cache(s: Session, key: str, image_ids: range) -> None:
        for i in image_ids:
            vec = np.ones(4, dtype="<f4").tobytes()
            s.add(Embedding(image_id=i, backbone=key, view="colour", dim=4, vector=vec))

    with catalogue.write() as s:
        ids = [add_image(s, n) for n in range(5)]
        cache(s, "efficientnet_lite0@96", range(ids[0], ids[-1] + 1))
        cache(s, "efficientnet_lite0@96:hflip", range(ids[0], ids[-1] + 1))
    with catalogue.read() as s:
        assert default_embedding_key(s) == "efficientnet_lite0@96"  # the only one cached
    with catalogue.write() as s:
        cache(s, "efficientnet_lite0@224", range(ids[0], ids[1] + 1))
        cache(s, "vgg16@224", range(ids[0], ids[-1] + 1))
    with catalogue.read() as s:
        assert default_embedding_key(s) == "efficientnet_lite0@224"  # fewer rows, default size
        assert default_embedding_key(s, "vgg16") == "vgg16@224"
        assert default_embedding_key(s, "resnet50") is None
