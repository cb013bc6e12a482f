"""The one decoder on the oddities real product images have."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from db import images
from db.images import ImageError, decode_image


def encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt, **kw)
    return out.getvalue()


def test_transparent_png_is_flattened_onto_white() -> None:
    img = Image.new("RGBA", (40, 30), (0, 0, 0, 0))
    img.paste((200, 0, 0, 255), (10, 10, 20, 20))
    out = decode_image(encode(img, "PNG"), "shoe.png")
    assert out.mode == "RGB"
    assert out.getpixel((0, 0)) == (255, 255, 255)
    assert out.getpixel((15, 15)) == (200, 0, 0)


def test_palette_png_with_transparency_is_flattened_onto_white() -> None:
    img = Image.new("P", (20, 20), 0)
    img.putpalette([0, 0, 0, 10, 200, 10] + [0] * 762)
    img.paste(1, (5, 5, 15, 15))
    data = encode(img, "PNG", transparency=0)
    out = decode_image(data, "palette.png")
    assert out.getpixel((0, 0)) == (255, 255, 255)
    assert out.getpixel((10, 10)) == (10, 200, 10)


def test_gray_alpha_and_webp_alpha_flatten() -> None:
    la = Image.new("LA", (10, 10), (0, 0))
    assert decode_image(encode(la, "PNG"), "la.png").getpixel((1, 1)) == (255, 255, 255)
    rgba = Image.new("RGBA", (10, 10), (0, 0, 255, 0))
    out = decode_image(encode(rgba, "WEBP", lossless=True), "a.webp")
    assert out.getpixel((1, 1)) == (255, 255, 255)


def test_cmyk_jpeg_becomes_rgb() -> None:
    img = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red in CMYK
    out = decode_image(encode(img, "JPEG", quality=95), "cmyk.jpg")
    r, g, b = out.getpixel((8, 8))
    assert out.mode == "RGB" and r > 200 and g < 60 and b < 60


def test_16_bit_png_keeps_its_range() -> None:
    arr = np.linspace(0, 65535, 64 * 8, dtype=np.uint16).reshape(8, 64)
    img = Image.fromarray(arr)
    out = np.asarray(decode_image(encode(img, "PNG"), "deep.png"))
    assert out.shape == (8, 64, 3)
    assert out[0, 0, 0] < 5 and out[-1, -1, 0] > 250


def test_exif_orientation_is_applied() -> None:
    img = Image.new("RGB", (60, 30), (255, 255, 255))
    img.paste((0, 0, 0), (0, 0, 10, 30))  # black band on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    out = decode_image(encode(img, "JPEG", exif=exif, quality=95), "rotated.jpg")
    assert out.size == (30, 60)
    assert sum(out.getpixel((15, 2))) < 100  # the band is now at the top


def test_gif_first_frame() -> None:
    frames = [Image.new("RGB", (10, 10), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    r, _g, b = decode_image(buf.getvalue(), "anim.gif").getpixel((5, 5))
    assert r > 200 and b < 50


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty file"),
        (b"this is a text file, not a picture", "not an image"),
        (b"%PDF-1.4\n", "not an image"),
    ],
)
def test_bad_files_are_named_and_explained(data: bytes, reason: str) -> None:
    with pytest.raises(ImageError, match=rf"^bad\.jpg: .*{reason}"):
        decode_image(data, "bad.jpg")


def test_truncated_jpeg_is_refused() -> None:
    noise = Image.fromarray(
        np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)
    )
    data = encode(noise, "JPEG")
    with pytest.raises(ImageError, match=r"cut\.jpg: truncated or corrupt"):
        decode_image(data[: len(data) // 2], "cut.jpg")


def test_decompression_bomb_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    data = encode(Image.new("L", (2000, 2000)), "PNG")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)
    with pytest.raises(ImageError, match=r"bomb\.png: refused as a decompression bomb"):
        decode_image(data, "bomb.png")


def test_real_decompression_bomb_at_default_limit() -> None:
    # 20000 x 20000 pixels of one colour compress to a few hundred kB: over Pillow's limit.
    data = encode(Image.new("1", (20000, 20000)), "PNG")
    assert len(data) < 2_000_000
    with pytest.raises(ImageError, match="decompression bomb"):
        decode_image(data, "huge.png")


def test_oversized_file_is_refused_before_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images, "MAX_FILE_BYTES", 1000)
    data = encode(Image.new("RGB", (100, 100)), "BMP")
    with pytest.raises(ImageError, match=r"big\.bmp: file too large"):
        decode_image(data, "big.bmp")


def test_phash_is_stable_under_resize_and_differs_between_pictures() -> None:
    rng = np.random.default_rng(1)
    a = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).resize((256, 256))
    b = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).resize((256, 256))
    ha, ha2, hb = images.phash(a), images.phash(a.resize((128, 128))), images.phash(b)
    dist = lambda x, y: bin(int(x, 16) ^ int(y, 16)).count("1")  # noqa: E731
    assert len(ha) == 16
    assert dist(ha, ha2) <= 6
    assert dist(ha, hb) > 16


def test_store_is_content_addressed_and_makes_thumbnails(tmp_path) -> None:
    store = images.ImageStore(tmp_path)
    data = encode(Image.new("RGB", (800, 400), (10, 20, 30)), "JPEG")
    sha = images.sha256_hex(data)
    rel = store.put(data, sha, "jpg")
    assert rel == f"images/{sha[:2]}/{sha}.jpg"
    assert store.put(data, sha, "jpg") == rel
    assert (tmp_path / rel).read_bytes() == data

    class Row:
        sha256 = sha
        path = rel

    thumb = Image.open(store.thumbnail(Row()))
    assert max(thumb.size) == images.THUMB_SIZE


def test_a_file_that_is_no_image_is_told_which_formats_are_read() -> None:
    Image.init()
    avif = "AVIF" in Image.OPEN  # Pillow reads AVIF from 11.2 on, where it was built with it
    assert images.accepted_text() == "JPEG, PNG, WebP, GIF" + (", AVIF" if avif else "")
    with pytest.raises(ImageError) as err:
        decode_image(b"just some text", "notes.jpg")
    assert str(err.value) == (
        f"notes.jpg: not an image skulab reads (accepted: {images.accepted_text()})"
    )
