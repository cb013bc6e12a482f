"""The catalogue's operations: ingest, labels, history and undo, queues, counts."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from db import Catalogue, ops
from db.images import ImageError
from db.models import Image, ImageSource, LabelEvent, Prediction, Run, Sku
from tests.db.helpers import picture


def ingest(cat: Catalogue, data: bytes, **kw: object) -> ops.IngestResult:
    source = kw.pop("source", ops.Source(kind="import", file_path="x.jpg"))
    with cat.write() as s:
        return ops.ingest_image(s, cat.store, data, "x.jpg", source, **kw)


def test_ingest_stores_file_thumbnail_and_source(catalogue: Catalogue) -> None:
    data = picture(1)
    src = ops.Source(
        kind="crawl",
        spider="nike",
        image_url="http://a/1.jpg",
        page_url="http://a/p",
        weak_model="Nike Dunk Low",
        weak_sku="DD1391-100",
    )
    r = ingest(catalogue, data, source=src)
    assert r.created and r.source_added
    with catalogue.read() as s:
        image = s.get(Image, r.image_id)
        assert image.status == "new" and image.model_id is None
        assert (image.width, image.height) == (240, 160)
        assert catalogue.store.path(image).read_bytes() == data
        assert catalogue.store.thumbnail_path(image.sha256).exists()
        assert [x.weak_sku for x in image.sources] == ["DD1391-100"]


def test_same_bytes_from_two_places_is_one_image_with_two_sources(catalogue: Catalogue) -> None:
    data = picture(2)
    a = ingest(catalogue, data, source=ops.Source(kind="crawl", image_url="http://a/x.jpg"))
    b = ingest(catalogue, data, source=ops.Source(kind="crawl", image_url="http://b/x.jpg"))
    again = ingest(catalogue, data, source=ops.Source(kind="crawl", image_url="http://b/x.jpg"))
    assert a.image_id == b.image_id == again.image_id
    assert (a.created, b.created, again.created) == (True, False, False)
    assert (b.source_added, again.source_added) == (True, False)
    with catalogue.read() as s:
        assert s.scalar(select(func.count()).select_from(Image)) == 1
        assert s.scalar(select(func.count()).select_from(ImageSource)) == 2


def test_bad_image_writes_nothing(catalogue: Catalogue) -> None:
    with pytest.raises(ImageError, match=r"x\.jpg"):
        ingest(catalogue, b"not an image")
    with catalogue.read() as s:
        assert s.scalar(select(func.count()).select_from(Image)) == 0
    assert not list(catalogue.data_dir.glob("images/*/*"))


def test_label_with_import_and_conflicting_duplicate(catalogue: Catalogue) -> None:
    data = picture(3)
    r = ingest(catalogue, data, model="Nike Dunk Low", sku="DD1391-100", split="train")
    with catalogue.read() as s:
        image = s.get(Image, r.image_id)
        assert (image.status, image.model.name, image.sku.style_code, image.split) == (
            "labelled",
            "Nike Dunk Low",
            "DD1391-100",
            "train",
        )
    # the same file again with the same label is fine; with another label it is refused
    ingest(catalogue, data, model="Nike Dunk Low", sku="DD1391-100")
    with pytest.raises(ops.CatalogueError, match="already labelled Nike Dunk Low"):
        ingest(catalogue, data, model="Air Max 90", source=ops.Source(kind="import", file_path="y"))
    with catalogue.read() as s:  # the refused import added no source
        assert s.scalar(select(func.count()).select_from(ImageSource)) == 1


def test_sku_of_another_model_and_unknown_sku_are_refused(catalogue: Catalogue) -> None:
    r = ingest(catalogue, picture(4), model="Nike Dunk Low", sku="DD1391-100")
    other = ingest(catalogue, picture(5))
    with catalogue.write() as s:
        ops.get_or_create_model(s, "Air Max 90")
    with (
        catalogue.write() as s,
        pytest.raises(ops.CatalogueError, match="belongs to Nike Dunk Low"),
    ):
        ops.set_label(s, other.image_id, "Air Max 90", "DD1391-100", user="ann")
    with catalogue.write() as s, pytest.raises(ops.CatalogueError, match="unknown SKU ZZ9999-999"):
        ops.set_label(s, other.image_id, None, "ZZ9999-999", user="ann")
    with (
        catalogue.write() as s,
        pytest.raises(ops.CatalogueError, match="belongs to Nike Dunk Low"),
    ):
        ops.get_or_create_sku(s, "DD1391-100", "Air Max 90")
    with catalogue.read() as s:
        assert s.get(Image, other.image_id).status == "new"
        assert s.get(Image, r.image_id).sku.style_code == "DD1391-100"


def test_sku_alone_implies_its_model(catalogue: Catalogue) -> None:
    ingest(catalogue, picture(6), model="Nike Dunk Low", sku="DD1391-100")
    r = ingest(catalogue, picture(7))
    with catalogue.write() as s:
        image = ops.set_label(s, r.image_id, None, "DD1391-100", user="ann")
        assert image.model.name == "Nike Dunk Low" and image.labelled_by == "ann"


def test_history_and_undo(catalogue: Catalogue) -> None:
    r = ingest(catalogue, picture(8))
    with catalogue.write() as s:
        ops.get_or_create_sku(s, "DD1391-100", "Nike Dunk Low")
        ops.get_or_create_sku(s, "CW2288-111", "Nike Air Force 1")
    with catalogue.write() as s:
        ops.set_label(s, r.image_id, None, "DD1391-100", user="ann")
    with catalogue.write() as s:
        ops.set_label(s, r.image_id, None, "CW2288-111", user="bob")
    with catalogue.write() as s:
        ops.reject(s, r.image_id, user="bob")
    with catalogue.read() as s:
        events = list(
            s.scalars(
                select(LabelEvent).where(LabelEvent.image_id == r.image_id).order_by(LabelEvent.id)
            )
        )
        assert [(e.user, e.action) for e in events] == [
            ("ann", "label"),
            ("bob", "label"),
            ("bob", "reject"),
        ]
        assert events[1].before["sku"] == "DD1391-100" and events[1].after["sku"] == "CW2288-111"
    with catalogue.write() as s:
        assert ops.undo(s, r.image_id, user="bob").action == "reject"
    with catalogue.read() as s:
        assert s.get(Image, r.image_id).sku.style_code == "CW2288-111"
    with catalogue.write() as s:
        ops.undo(s, r.image_id, user="bob")
    with catalogue.read() as s:
        image = s.get(Image, r.image_id)
        assert (image.status, image.sku.style_code) == ("labelled", "DD1391-100")
    with catalogue.write() as s:
        ops.undo(s, r.image_id, user="bob")
        assert ops.undo(s, r.image_id, user="bob") is None
    with catalogue.read() as s:
        assert s.get(Image, r.image_id).status == "new"
        # the history is append-only: every undo is an event of its own
        assert s.scalar(select(func.count()).select_from(LabelEvent)) == 6


def test_bulk_label_is_all_or_nothing(catalogue: Catalogue) -> None:
    ids = [ingest(catalogue, picture(10 + i)).image_id for i in range(3)]
    with catalogue.write() as s:
        ops.get_or_create_sku(s, "DD1391-100", "Nike Dunk Low")
    with pytest.raises(ops.CatalogueError, match="no image with id 999"), catalogue.write() as s:
        ops.bulk_label(s, [*ids, 999], "Nike Dunk Low", "DD1391-100", user="ann")
    with catalogue.read() as s:
        assert s.scalar(select(func.count()).where(Image.status == "labelled")) == 0
    with catalogue.write() as s:
        assert ops.bulk_label(s, ids, "Nike Dunk Low", "DD1391-100", user="ann") == 3
    with catalogue.read() as s:
        assert ops.stats(s)["by_sku"] == [
            {"model": "Nike Dunk Low", "sku": "DD1391-100", "colourway": None, "images": 3}
        ]


def test_locked_split_does_not_move(catalogue: Catalogue) -> None:
    r = ingest(catalogue, picture(20))
    with catalogue.write() as s:
        assert ops.set_split(s, [r.image_id], "test", user="ml", lock=True) == 1
        assert ops.set_split(s, [r.image_id], "train", user="ml") == 0
        with pytest.raises(ops.CatalogueError, match="unknown split"):
            ops.set_split(s, [r.image_id], "holdout", user="ml")
    with catalogue.read() as s:
        assert s.get(Image, r.image_id).split == "test"


def test_queue_paging_filters_and_claims(catalogue: Catalogue) -> None:
    ids = []
    for i in range(30):
        src = ops.Source(
            kind="crawl", spider="nike" if i % 2 else "shopify", image_url=f"http://x/{i}"
        )
        ids.append(ingest(catalogue, picture(100 + i), source=src).image_id)
    with catalogue.write() as s:
        ops.reject(s, ids[0], user="ann")
    with catalogue.read() as s:
        first = ops.queue(s, ops.QueueFilter(), page=0, page_size=12)
        assert first.total == 29 and len(first.items) == 12 and first.items[0].id == ids[1]
        last = ops.queue(s, ops.QueueFilter(), page=2, page_size=12)
        assert len(last.items) == 5
        nike = ops.queue(s, ops.QueueFilter(spider="nike"), page_size=100)
        assert nike.total == 15 and all(i.id % 2 == ids[1] % 2 for i in nike.items)
        assert ops.queue(s, ops.QueueFilter(status="rejected")).total == 1
    with catalogue.write() as s:
        ops.claim(s, [i.id for i in first.items], user="ann")
    with catalogue.read() as s:
        bob = ops.queue(s, ops.QueueFilter(user="bob"), page_size=12)
        ann = ops.queue(s, ops.QueueFilter(user="ann"), page_size=12)
    assert not {i.id for i in bob.items} & {i.id for i in first.items}
    assert [i.id for i in ann.items] == [i.id for i in first.items]


def test_uncertainty_order_keeps_images_that_have_no_suggestion_yet(catalogue: Catalogue) -> None:
    """An image crawled after the last refresh of suggestions is not lost from the queue."""
    ids = [ingest(catalogue, picture(300 + i)).image_id for i in range(4)]
    with catalogue.write() as s:
        run = Run(name="r", status="succeeded")
        s.add(run)
        s.flush()
        for image_id, margin in zip(ids[:3], (0.9, 0.1, 0.5), strict=True):
            s.add(Prediction(image_id=image_id, run_id=run.id, model_name="M", margin=margin))
        run_id = run.id
    with catalogue.read() as s:
        uncertain = ops.queue(s, ops.QueueFilter(run_id=run_id, order="uncertain"))
        confident = ops.queue(s, ops.QueueFilter(run_id=run_id, order="confident"))
        suggested = ops.queue(s, ops.QueueFilter(run_id=run_id, suggested_model="M"))
        f = ops.QueueFilter(run_id=run_id, order="uncertain")
        pages = {
            (n, k): [i.id for i in ops.queue(s, f, page=k, page_size=n).items]
            for n, k in ((2, 0), (2, 1), (2, 2), (3, 1), (1, 3))
        }
    # pages across the end of the suggested images, and past the end of the queue
    assert pages == {
        (2, 0): [ids[1], ids[2]],
        (2, 1): [ids[0], ids[3]],
        (2, 2): [],
        (3, 1): [ids[3]],
        (1, 3): [ids[3]],
    }
    assert [i.id for i in uncertain.items] == [ids[1], ids[2], ids[0], ids[3]]
    assert uncertain.total == 4
    assert [i.id for i in confident.items] == [ids[0], ids[2], ids[1], ids[3]]
    assert suggested.total == 3


def test_style_codes_are_one_sku_however_they_are_typed(catalogue: Catalogue) -> None:
    with catalogue.write() as s:
        made = ops.get_or_create_sku(s, "dd1391-100", "Nike Dunk Low")
        again = ops.get_or_create_sku(s, " DD1391-100 ", "Nike Dunk Low")
        other = ops.get_or_create_sku(s, "Panda low", "Nike Dunk Low")
        assert made.id == again.id and made.style_code == "DD1391-100"
        assert ops.find_sku(s, "dd1391-100") is made
        assert other.style_code == "Panda low"  # not a style code: kept as written


def test_stats_counts(catalogue: Catalogue) -> None:
    ingest(catalogue, picture(40), model="Nike Dunk Low", sku="DD1391-100", split="train")
    ingest(catalogue, picture(41), model="Nike Dunk Low", split="val")
    ingest(catalogue, picture(42))
    with catalogue.read() as s:
        st = ops.stats(s)
        assert st["by_status"] == {"new": 1, "labelled": 2, "rejected": 0}
        assert st["by_model"] == {"Nike Dunk Low": 2}
        assert st["by_split"] == {"train": 1, "val": 1}
        assert s.scalar(select(func.count()).select_from(Sku)) == 1


def test_long_page_text_is_cut_to_its_column_and_long_names_refused(catalogue: Catalogue) -> None:
    """PostgreSQL refuses a value longer than its column, SQLite keeps it: cut free text
    (weak labels, titles) to fit on both, and refuse a name that would not fit."""
    title = "Nike Air Force 1 '07 " * 30
    src = ops.Source(kind="crawl", image_url="http://a/long", weak_title=title, spider="s" * 80)
    r = ingest(catalogue, picture(3), source=src)
    with catalogue.read() as s:
        row = s.get(Image, r.image_id).sources[0]
        assert len(row.weak_title) == ImageSource.__table__.c.weak_title.type.length
        assert row.weak_title.endswith("…") and title.startswith(row.weak_title[:-1])
        assert len(row.spider) == ImageSource.__table__.c.spider.type.length
    with catalogue.write() as s:
        sku = ops.get_or_create_sku(s, "DD1391-100", "Nike Dunk Low", colourway="A/" * 400)
        assert len(sku.colourway) == Sku.__table__.c.colourway.type.length
        with pytest.raises(ops.CatalogueError, match="model name too long"):
            ops.get_or_create_model(s, "Dunk " * 100)
        with pytest.raises(ops.CatalogueError, match="SKU name too long"):
            ops.get_or_create_sku(s, "X" * 101, "Nike Dunk Low")


def test_a_refused_ingest_leaves_no_file_behind(catalogue: Catalogue) -> None:
    with catalogue.write() as s:
        ops.get_or_create_sku(s, "DD1391-100", "Nike Dunk Low")
    data = picture(11)
    with pytest.raises(ops.CatalogueError, match="belongs to Nike Dunk Low"):
        ingest(catalogue, data, model="Air Max 90", sku="DD1391-100")
    assert not any((catalogue.data_dir / "images").rglob("*.jpg"))
    assert not any((catalogue.data_dir / "thumbs").rglob("*.jpg"))
    with catalogue.read() as s:
        assert s.scalar(select(func.count()).select_from(Image)) == 0
    r = ingest(catalogue, data, model="Nike Dunk Low", sku="DD1391-100")
    assert r.created and r.labelled
    assert not ingest(catalogue, data, model="Nike Dunk Low", sku="DD1391-100").labelled
