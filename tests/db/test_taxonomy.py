"""Catalogue edits: create, rename, merge, move; each recorded, labels kept consistent."""

from __future__ import annotations

import io

import pytest
from PIL import Image as PILImage
from sqlalchemy import select

from db import Catalogue, ops, taxonomy
from db.models import CatalogueEvent, Image, LabelEvent, Sku, SneakerModel
from db.ops import CatalogueError, Source


def png(seed: int) -> bytes:
    img = PILImage.new("RGB", (32, 32), (seed * 37 % 256, seed * 91 % 256, seed * 13 % 256))
    img.putpixel((seed % 32, seed // 32 % 32), (255, 255, 255))
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def add_image(cat: Catalogue, seed: int, model: str | None = None, sku: str | None = None) -> int:
    with cat.write() as s:
        if sku:
            ops.get_or_create_sku(s, sku, model or "")
        result = ops.ingest_image(
            s, cat.store, png(seed), f"{seed}.png", Source(kind="upload"), model=model, sku=sku
        )
        return result.image_id


def label_of(cat: Catalogue, image_id: int) -> tuple[str | None, str | None, str]:
    with cat.read() as s:
        image = s.get(Image, image_id)
        assert image is not None
        return (
            image.model.name if image.model else None,
            image.sku.style_code if image.sku else None,
            image.status,
        )


def events(cat: Catalogue) -> list[tuple[str, dict]]:
    with cat.read() as s:
        return [
            (e.action, e.detail)
            for e in s.scalars(select(CatalogueEvent).order_by(CatalogueEvent.id))
        ]


@pytest.fixture
def cat(catalogue: Catalogue) -> Catalogue:
    with catalogue.write() as s:
        taxonomy.create_model(s, "Nike Dunk Low", "ana")
        taxonomy.create_model(s, "Dunk Low", "ana")
        taxonomy.create_model(s, "Air Max 90", "ana")
        taxonomy.create_sku(s, "DD1391-100", "Nike Dunk Low", "ana", colourway="Panda")
        taxonomy.create_sku(s, "DD1391-101", "Dunk Low", "ana")
        taxonomy.create_sku(s, "CN8490-002", "Air Max 90", "ana")
    return catalogue


def test_create_records_events_and_refuses_duplicates(cat: Catalogue) -> None:
    acts = [a for a, _ in events(cat)]
    assert acts == ["create_model"] * 3 + ["create_sku"] * 3
    with cat.write() as s, pytest.raises(CatalogueError, match="already exists"):
        taxonomy.create_model(s, "  Air   Max 90 ", "ana")
    with cat.write() as s, pytest.raises(CatalogueError, match="already exists"):
        taxonomy.create_sku(s, "CN8490-002", "Dunk Low", "ana")
    with cat.write() as s, pytest.raises(CatalogueError, match="no sneaker model named 'Jordan 1'"):
        taxonomy.create_sku(s, "555088-134", "Jordan 1", "ana")
    assert len(events(cat)) == 6


def test_rename_model_keeps_images_and_refuses_existing_name(cat: Catalogue) -> None:
    img = add_image(cat, 1, "Air Max 90", "CN8490-002")
    with cat.write() as s:
        change = taxonomy.rename_model(s, "Air Max 90", "Nike Air Max 90", "ben")
    assert change.detail["from"] == "Air Max 90"
    assert label_of(cat, img) == ("Nike Air Max 90", "CN8490-002", "labelled")
    with cat.write() as s, pytest.raises(CatalogueError, match="merge them instead"):
        taxonomy.rename_model(s, "Dunk Low", "Nike Dunk Low", "ben")
    action, detail = events(cat)[-1]
    assert action == "rename_model"
    assert detail["to"] == "Nike Air Max 90"


def test_rename_sku_and_colourway(cat: Catalogue) -> None:
    with cat.write() as s:
        taxonomy.rename_sku(s, "DD1391-100", "DD1391-103", "ben", colourway="White Black")
    with cat.read() as s:
        sku = ops.find_sku(s, "DD1391-103")
        assert sku is not None and sku.colourway == "White Black"
        assert ops.find_sku(s, "DD1391-100") is None
    with cat.write() as s, pytest.raises(CatalogueError, match="nothing to change"):
        taxonomy.rename_sku(s, "DD1391-103", "DD1391-103", "ben")


def test_merge_models_moves_skus_and_relabels_with_history(cat: Catalogue) -> None:
    a = add_image(cat, 1, "Dunk Low", "DD1391-101")
    b = add_image(cat, 2, "Dunk Low")
    c = add_image(cat, 3, "Air Max 90", "CN8490-002")
    with cat.write() as s:
        change = taxonomy.merge_models(s, "Dunk Low", "Nike Dunk Low", "ana")
    assert change.images_relabelled == 2
    assert label_of(cat, a) == ("Nike Dunk Low", "DD1391-101", "labelled")
    assert label_of(cat, b) == ("Nike Dunk Low", None, "labelled")
    assert label_of(cat, c) == ("Air Max 90", "CN8490-002", "labelled")
    with cat.read() as s:
        assert ops.find_model(s, "Dunk Low") is None
        sku = ops.find_sku(s, "DD1391-101")
        assert sku is not None and sku.model.name == "Nike Dunk Low"
        merges = [
            (e.image_id, e.before["model"], e.after["model"])
            for e in s.scalars(
                select(LabelEvent).where(LabelEvent.how == "catalogue").order_by(LabelEvent.id)
            )
        ]
    assert merges == [
        (a, "Dunk Low", "Nike Dunk Low"),
        (b, "Dunk Low", "Nike Dunk Low"),
    ]
    action, detail = events(cat)[-1]
    assert action == "merge_models"
    assert detail["skus_moved"] == ["DD1391-101"]
    assert detail["images_relabelled"] == 2


def test_merge_skus_relabels_images_to_the_target_and_its_model(cat: Catalogue) -> None:
    a = add_image(cat, 1, "Dunk Low", "DD1391-101")
    with cat.write() as s:
        change = taxonomy.merge_skus(s, "DD1391-101", "DD1391-100", "ana")
    assert change.images_relabelled == 1
    assert label_of(cat, a) == ("Nike Dunk Low", "DD1391-100", "labelled")
    with cat.read() as s:
        assert ops.find_sku(s, "DD1391-101") is None
    # undoing the image's merge event is refused clearly: its old SKU is gone
    with cat.write() as s, pytest.raises(CatalogueError, match="no longer exists"):
        ops.undo(s, a, "ana")


def test_move_sku_relabels_the_images_model(cat: Catalogue) -> None:
    a = add_image(cat, 1, "Dunk Low", "DD1391-101")
    with cat.write() as s:
        change = taxonomy.move_sku(s, "DD1391-101", "Nike Dunk Low", "ana")
    assert change.images_relabelled == 1
    assert label_of(cat, a) == ("Nike Dunk Low", "DD1391-101", "labelled")
    # the move is undoable per image: the old model still exists
    with cat.write() as s:
        ops.undo(s, a, "ana")
    assert label_of(cat, a) == ("Dunk Low", "DD1391-101", "labelled")
    with cat.write() as s, pytest.raises(CatalogueError, match="already belongs"):
        taxonomy.move_sku(s, "DD1391-100", "Nike Dunk Low", "ana")


def test_failed_edit_writes_nothing(cat: Catalogue) -> None:
    n = len(events(cat))
    with pytest.raises(CatalogueError, match="into itself"), cat.write() as s:
        taxonomy.merge_models(s, "Dunk Low", "Dunk Low", "ana")
    with pytest.raises(CatalogueError, match="no SKU with style code 'XX'"), cat.write() as s:
        taxonomy.merge_skus(s, "XX", "DD1391-100", "ana")
    assert len(events(cat)) == n
    with cat.read() as s:
        assert s.scalar(select(SneakerModel).where(SneakerModel.name == "Dunk Low")) is not None
        assert len(list(s.scalars(select(Sku)))) == 3


def test_listing_counts_and_reference_images(cat: Catalogue) -> None:
    a = add_image(cat, 1, "Nike Dunk Low", "DD1391-100")
    add_image(cat, 2, "Nike Dunk Low", "DD1391-100")
    with cat.read() as s:
        models = {m.name: m for m in taxonomy.model_rows(s)}
        assert models["Nike Dunk Low"].images == 2
        assert models["Nike Dunk Low"].skus == 1
        assert [m.name for m in taxonomy.model_rows(s, "dunk")] == ["Dunk Low", "Nike Dunk Low"]
        skus = {r.style_code: r for r in taxonomy.sku_rows(s, search="panda")}
        assert list(skus) == ["DD1391-100"]
        assert skus["DD1391-100"].images == 2
        assert skus["DD1391-100"].reference_image_id == a
        assert [r.style_code for r in taxonomy.sku_rows(s, model="Air Max 90")] == ["CN8490-002"]
        assert taxonomy.recent_events(s, 1)[0].action == "create_sku"
