"""The plain modules behind the Predict and Splits pages: uploads, nearest images, balance."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from db import Catalogue
from db.images import ImageError
from db.models import Embedding, ImageSource
from db.models import Image as ImageRow
from db.ops import Source, get_or_create_sku, ingest_image, set_label, set_split
from db.splits import class_balance, find_leaks
from labeller import similar, splitview, uploads


def _png(colour: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (40, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="PNG")
    return out.getvalue()


# --- uploads ------------------------------------------------------------------------------


def test_check_upload_decodes_a_good_image() -> None:
    up = uploads.check_upload("C:\\Users\\ana\\shoe.png", _png())
    assert up.name == "shoe.png"
    assert up.image.mode == "RGB" and up.image.size == (40, 30)


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("notes.jpg", b"this is not an image", "notes.jpg: not an image"),
        ("empty.png", b"", "empty.png: empty file"),
        ("shoe.pdf", _png(), "shoe.pdf: .pdf files are not accepted"),
        ("cut.png", _png()[:60], "cut.png: truncated or corrupt"),
    ],
)
def test_check_upload_refuses_bad_files(name: str, data: bytes, message: str) -> None:
    with pytest.raises(ImageError, match=message):
        uploads.check_upload(name, data)


def test_check_upload_size_limit() -> None:
    with pytest.raises(ImageError, match=r"big\.png: file too large .* the limit is 0 MiB"):
        uploads.check_upload("big.png", _png(), max_bytes=100)


def test_add_to_catalogue_stores_once_with_an_upload_source(catalogue: Catalogue) -> None:
    up = uploads.check_upload("shoe.png", _png())
    first = uploads.add_to_catalogue(catalogue, up, "ana")
    again = uploads.add_to_catalogue(catalogue, up, "ana")
    assert first.created and not again.created and again.image_id == first.image_id
    with catalogue.read() as s:
        image = s.get(ImageRow, first.image_id)
        assert image is not None and image.status == "new"
        assert catalogue.store.path(image).read_bytes() == up.data
        sources = list(s.scalars(select(ImageSource).where(ImageSource.image_id == image.id)))
    assert [(src.kind, src.file_path) for src in sources] == [("upload", "shoe.png")]


# --- nearest labelled images ----------------------------------------------------------------


def _image(cat: Catalogue, colour: tuple[int, int, int], sku: str | None) -> int:
    with cat.write() as s:
        image_id = ingest_image(
            s, cat.store, _png(colour), f"{colour}.png", Source("import")
        ).image_id
        if sku:
            get_or_create_sku(s, sku, "Dunk Low")
            set_label(s, image_id, None, sku, "ana")
    return image_id


def _embed(cat: Catalogue, image_id: int, vector: list[float], key: str = "tiny@64") -> None:
    vec = np.asarray(vector, dtype="<f4")
    with cat.write() as s:
        s.add(
            Embedding(
                image_id=image_id, backbone=key, view="colour", dim=vec.size, vector=vec.tobytes()
            )
        )


def test_nearest_labelled_images_by_cosine(catalogue: Catalogue) -> None:
    red = _image(catalogue, (200, 0, 0), "AA0001-600")
    blue = _image(catalogue, (0, 0, 200), "AA0001-400")
    unlabelled = _image(catalogue, (0, 200, 0), None)
    _embed(catalogue, red, [1.0, 0.0, 0.0])
    _embed(catalogue, blue, [0.0, 2.0, 0.0])
    _embed(catalogue, unlabelled, [1.0, 0.1, 0.0])  # closest, but not labelled: left out
    _embed(catalogue, red, [0.0, 0.0, 1.0], key="other@224")
    with catalogue.read() as s:
        assert similar.index_version(s, "tiny@64", "colour")[0] == 2
        index = similar.load_index(s, "tiny@64", "colour")
        hits = similar.nearest(index, np.array([0.2, 1.0, 0.0]), k=5)
        found = similar.describe(s, hits)
    assert [h.image_id for h in found] == [blue, red]
    assert found[0].sku == "AA0001-400" and found[0].model == "Dunk Low"
    assert found[0].similarity == pytest.approx(1 / np.sqrt(1.04), rel=1e-5)
    assert catalogue.store.thumbnail(found[0]).exists()


def test_nearest_on_an_empty_index_and_a_wrong_size(catalogue: Catalogue) -> None:
    with catalogue.read() as s:
        empty = similar.load_index(s, "tiny@64", "colour")
    assert len(empty) == 0 and similar.nearest(empty, np.ones(3)) == []
    red = _image(catalogue, (200, 0, 0), "AA0001-600")
    _embed(catalogue, red, [1.0, 0.0, 0.0])
    with catalogue.read() as s:
        index = similar.load_index(s, "tiny@64", "colour")
    with pytest.raises(ValueError, match="query embedding has 2 values; tiny@64/colour"):
        similar.nearest(index, np.ones(2))


# --- split balance and locking --------------------------------------------------------------


def test_balance_records_locked_counts_and_leaks(catalogue: Catalogue) -> None:
    ids = [_image(catalogue, (i * 20, 0, 0), "AA0001-600") for i in range(4)]
    ids.append(_image(catalogue, (0, 0, 200), "AA0001-400"))
    ids.append(_image(catalogue, (0, 200, 0), None))
    with catalogue.write() as s:
        set_split(s, ids[:2], "train", "ana")
        set_split(s, [ids[2], ids[4], ids[5]], "test", "ana", lock=True)
        for image_id in (ids[1], ids[2]):
            s.get(ImageRow, image_id).dup_group = 7  # type: ignore[union-attr]
    with catalogue.read() as s:
        rows = class_balance(s)
        records = splitview.balance_records(rows, splitview.sku_models(s))
        locked = splitview.locked_counts(s)
        leaks = splitview.leak_records(find_leaks(s))
    assert records == [
        {"class": "AA0001-400", "model": "Dunk Low", "train": 0, "val": 0, "test": 1,
         "none": 0, "total": 1, "train %": 0},
        {"class": "AA0001-600", "model": "Dunk Low", "train": 2, "val": 0, "test": 1,
         "none": 1, "total": 4, "train %": 67},
    ]  # fmt: skip
    assert splitview.totals(rows) == {"train": 2, "val": 0, "test": 2, "none": 1}
    assert locked == {"train": 0, "val": 0, "test": 3}  # the unlabelled one too
    assert leaks == [
        {"kind": "near-duplicates", "group": "7", "images": 2, "train": str(ids[1]), "val": "",
         "test": str(ids[2])}
    ]  # fmt: skip
