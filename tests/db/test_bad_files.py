"""Bad files and bad names at `python -m db import` / `export`, as a user meets them.

One file that cannot be taken never sinks its batch, no image file outlives a rolled-back
row, links are not followed unless asked, and export -> import gives back the same names.
"""

from __future__ import annotations

import csv
import io
import os
import struct
from pathlib import Path

import pytest
from PIL import Image as PILImage
from sqlalchemy import func, select

from db import Catalogue, ops
from db.images import ImageError, decode_image
from db.models import Image, ImageSource, Sku, SneakerModel
from tests.db.helpers import picture
from tests.db.test_cli import run_db


def _image_files(data: Path) -> list[Path]:
    folder = data / "images"
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []


def test_a_file_name_that_is_not_utf8_is_imported_with_the_rest(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "Nike Cortez").mkdir(parents=True)
    for i in range(4):
        (src / "Nike Cortez" / f"good{i}.png").write_bytes(picture(i, fmt="PNG"))
    bad = os.fsencode(src / "Nike Cortez") + b"/caf\xe9-\xff.png"
    Path(os.fsdecode(bad)).write_bytes(picture(99, fmt="PNG"))
    data = tmp_path / "data"

    out = run_db(data, "import", str(src))

    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    assert "5 new images" in out.stdout
    cat = Catalogue(data)
    with cat.read() as s:
        assert s.scalar(select(func.count()).select_from(Image)) == 5
        paths = set(s.scalars(select(ImageSource.file_path)))
        assert any(p.endswith("caf\\xe9-\\xff.png") for p in paths), paths
    assert len(_image_files(data)) == 5
    cat.dispose()


def test_a_folder_name_that_is_not_utf8_is_skipped_and_named(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "Nike Cortez").mkdir(parents=True)
    (src / "Nike Cortez" / "a.jpg").write_bytes(picture(1))
    folder = Path(os.fsdecode(os.fsencode(src) + b"/Dunk \xff"))
    folder.mkdir()
    (folder / "b.jpg").write_bytes(picture(2))

    out = run_db(tmp_path / "data", "import", str(src))

    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr
    assert "1 new images" in out.stdout
    assert "skipped Dunk \\xff/b.jpg: the folder name Dunk \\xff is not valid UTF-8" in out.stdout


def test_rows_rolled_back_take_their_new_files_with_them(catalogue: Catalogue) -> None:
    known = ops.prepare_image(picture(1), "known.jpg")
    with catalogue.write() as s:
        ops.ingest_prepared(s, catalogue.store, known, ops.Source(kind="import"))
    before = _image_files(catalogue.data_dir)
    assert len(before) == 1

    with pytest.raises(RuntimeError), catalogue.write() as s:
        for i in range(2, 6):
            prepared = ops.prepare_image(picture(i), f"{i}.jpg")
            ops.ingest_prepared(s, catalogue.store, prepared, ops.Source(kind="import"))
        ops.ingest_prepared(s, catalogue.store, known, ops.Source(kind="import", spider="x"))
        raise RuntimeError("the process is told to stop here")

    assert _image_files(catalogue.data_dir) == before  # the known image's file stays
    thumbs = [p for p in (catalogue.data_dir / "thumbs").rglob("*.jpg")]
    assert len(thumbs) == 1
    with catalogue.read() as s:
        assert s.scalar(select(func.count()).select_from(Image)) == 1


def test_symbolic_links_are_skipped_and_listed_unless_asked(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "far.jpg").write_bytes(picture(7))
    (outside / "Air Max 90").mkdir()
    (outside / "Air Max 90" / "x.jpg").write_bytes(picture(8))
    src = tmp_path / "src"
    src.mkdir()
    (src / "here.jpg").write_bytes(picture(1))
    (src / "far.jpg").symlink_to(outside / "far.jpg")
    (src / "passwd.png").symlink_to("/etc/passwd")
    (src / "Air Max 90").symlink_to(outside / "Air Max 90", target_is_directory=True)
    (src / ".cache.jpg").write_bytes(picture(3))

    out = run_db(tmp_path / "a", "import", str(src))
    assert out.returncode == 0, out.stderr
    assert "1 new images" in out.stdout
    assert "3 symbolic links skipped" in out.stdout
    for name in ("far.jpg", "passwd.png", "Air Max 90"):
        assert name in out.stdout
    assert "1 hidden file skipped (names starting with a dot): .cache.jpg" in out.stdout

    followed = run_db(tmp_path / "b", "import", str(src), "--follow-links")
    assert "3 new images" in followed.stdout, followed.stdout  # passwd.png is no image
    assert "skipped passwd.png: not an image" in followed.stdout


def _bad_crc_png() -> bytes:
    data = bytearray(picture(1, fmt="PNG"))
    ihdr_crc = 8 + 8 + 13  # signature, length + type, IHDR data
    data[ihdr_crc : ihdr_crc + 4] = struct.pack(">I", 0x12345678)
    return bytes(data)


def test_a_png_with_a_bad_checksum_is_called_damaged() -> None:
    with pytest.raises(ImageError, match=r"x\.png: damaged PNG"):
        decode_image(_bad_crc_png(), "x.png")
    with pytest.raises(ImageError, match="not an image skulab reads"):
        decode_image(b"hello, this is text", "x.png")


def test_tiny_pictures_are_refused_at_import(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "big.jpg").write_bytes(picture(1))
    one = io.BytesIO()
    PILImage.new("RGB", (1, 1), "white").save(one, format="PNG")
    (src / "pixel.png").write_bytes(one.getvalue())
    out = run_db(tmp_path / "data", "import", str(src))
    assert out.returncode == 1
    assert "skipped pixel.png: too small (1x1 px; at least 16 px a side)" in out.stdout
    assert "1 new images" in out.stdout
    assert run_db(tmp_path / "d2", "import", str(src), "--min-side", "1").returncode == 0


@pytest.mark.parametrize("bad", ["Dunk/Low", "Dunk\\Low", "Dunk:Low", "Dunk\x00Low", ".", ".."])
def test_names_with_path_characters_are_refused_where_they_are_made(
    catalogue: Catalogue, bad: str
) -> None:
    from db import taxonomy

    with pytest.raises(ops.CatalogueError, match="name"), catalogue.write() as s:
        taxonomy.create_model(s, bad, user="ann")
    with pytest.raises(ops.CatalogueError, match="name"), catalogue.write() as s:
        ops.get_or_create_sku(s, bad, "Nike Dunk Low")
    with catalogue.write() as s:
        taxonomy.create_model(s, "Nike Dunk Low", user="ann")
    with pytest.raises(ops.CatalogueError, match="name"), catalogue.write() as s:
        taxonomy.rename_model(s, "Nike Dunk Low", bad, user="ann")
    with catalogue.read() as s:
        assert list(s.scalars(select(SneakerModel.name))) == ["Nike Dunk Low"]


def test_export_then_import_keeps_every_name(tmp_path: Path) -> None:
    """Names alike once made safe, a name of 800 bytes, a name ending like a hash tag,
    and images without a split: export -> import gives back the same catalogue."""
    a = Catalogue(tmp_path / "a")
    a.migrate()
    long_name = "Ж" * 199 + "x"  # 400 bytes of UTF-8 in a 200-character column
    models = ["Dunk-Low", "Dunk Low", "Dunk*Low", "Dunk?Low", "dunk low.", long_name, "A~0badc0de"]
    skus = {"Dunk-Low": "X1", "Dunk*Low": "X1-*", "Dunk?Low": "x1-\u00e9" * 20}
    expected = {}
    n = 0
    with a.write() as s:
        for m in models:
            for split in ("train", None):
                n += 1
                r = ops.ingest_image(
                    s, a.store, picture(n), f"{n}.jpg", ops.Source(kind="import"),
                    model=m, sku=skus.get(m), split=split,
                )  # fmt: skip
                expected[r.sha256] = (m, skus.get(m), split)
    out = tmp_path / "out"
    assert run_db(tmp_path / "a", "export", str(out)).returncode == 0
    with (out / "manifest.csv").open(newline="", encoding="utf-8") as fh:
        assert len(list(csv.DictReader(fh))) == len(expected)
    assert all(len(p.name.encode()) <= 128 for p in out.rglob("*"))

    back = run_db(tmp_path / "b", "import", str(out))
    assert back.returncode == 0, back.stdout + back.stderr
    b = Catalogue(tmp_path / "b")
    with b.read() as s:
        got = {
            i.sha256: (i.model.name, i.sku.style_code if i.sku else None, i.split)
            for i in s.scalars(select(Image))
        }
        assert s.scalar(select(func.count()).select_from(SneakerModel)) == len(models)
        assert s.scalar(select(func.count()).select_from(Sku)) == len(skus)
    assert got == expected
    a.dispose()
    b.dispose()
