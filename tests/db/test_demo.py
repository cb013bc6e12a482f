"""The demo data: a deterministic, labelled-enough synthetic sneaker catalogue."""

from __future__ import annotations

import io
import itertools
import re
from collections import Counter

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import func, select

from db import Catalogue
from db.demo import (
    DEMO_HOST,
    DemoImage,
    demo_catalogue_spec,
    demo_count,
    demo_truth,
    generate,
    load_demo,
    render_sneaker,
)
from db.images import decode_image
from db.models import Image, ImageSource, LabelEvent, Sku, SneakerModel
from db.ops import CatalogueError

STYLE_CODE = re.compile(r"^[A-Z0-9]{6}-\d{3}$")
SMALL = 4  # images per colourway in the generated sets below


@pytest.fixture(scope="module")
def small_set() -> list[DemoImage]:
    return list(generate(seed=7, per_colourway=SMALL, size=96))


def test_catalogue_spec_has_realistic_models_and_codes() -> None:
    models = demo_catalogue_spec()
    assert len(models) >= 6
    assert len({m.name for m in models}) == len(models)
    assert "Nike Dunk Low" in {m.name for m in models}
    prefixes = [m.prefix for m in models]
    assert len(set(prefixes)) == len(prefixes)
    codes = [cw.style_code for m in models for cw in m.colourways]
    assert len(set(codes)) == len(codes)
    for m in models:
        assert len(m.colourways) >= 4
        assert len({cw.colourway for cw in m.colourways}) == len(m.colourways)
        for cw in m.colourways:
            assert STYLE_CODE.match(cw.style_code), cw.style_code
            assert cw.style_code.startswith(m.prefix + "-")
            assert re.match(r"^[A-Z][A-Za-z ]+/[A-Z][A-Za-z ]+(-[A-Z][A-Za-z ]+)?$", cw.colourway)
            assert cw.title.endswith("Shoes") and len(cw.title) > len("Shoes") + 5


def test_same_seed_gives_same_bytes_other_seed_differs() -> None:
    a = list(itertools.islice(generate(seed=3, per_colourway=2, size=64), 12))
    b = list(itertools.islice(generate(seed=3, per_colourway=2, size=64), 12))
    c = list(itertools.islice(generate(seed=4, per_colourway=2, size=64), 12))
    assert a == b
    assert [x.data for x in a] != [x.data for x in c]
    assert len({x.data for x in a} & {x.data for x in c}) == 0


def test_counts_and_label_structure(small_set: list[DemoImage]) -> None:
    models = demo_catalogue_spec()
    n_skus = sum(len(m.colourways) for m in models)
    sneakers = [x for x in small_set if not x.junk]
    junk = [x for x in small_set if x.junk]
    assert len(small_set) == demo_count(SMALL)
    assert len(sneakers) == n_skus * SMALL
    assert 0.03 <= len(junk) / len(small_set) <= 0.07
    assert len({x.name for x in small_set}) == len(small_set)
    assert len({x.image_url for x in small_set}) == len(small_set)

    per_sku = Counter(x.style_code for x in sneakers)
    assert set(per_sku.values()) == {SMALL}
    labelled_per_sku = Counter(x.style_code for x in sneakers if x.labelled)
    assert len(labelled_per_sku) == n_skus  # every SKU has a labelled image
    assert 0.15 <= sum(labelled_per_sku.values()) / len(sneakers) <= 0.3

    model_of = {cw.style_code: m.name for m in models for cw in m.colourways}
    colourway_of = {cw.style_code: cw.colourway for m in models for cw in m.colourways}
    for x in sneakers:
        assert x.model == model_of[x.style_code] and x.colourway == colourway_of[x.style_code]
        assert x.weak_model == x.model  # the page is right about the model...
        assert (
            x.weak_sku is not None and model_of[x.weak_sku] == x.model
        )  # ...and names one of its SKUs
        assert x.weak_colourway == colourway_of[x.weak_sku]
        assert x.weak_title and x.weak_title.endswith("Shoes")
        assert x.page_url == f"{DEMO_HOST}/t/{_slug(x.weak_title)}/{x.weak_sku}"
        assert x.image_url.startswith(f"{DEMO_HOST}/images/{x.weak_sku}/")
        assert x.image_url.endswith(x.name.rsplit(".", 1)[1])
    wrong = [x for x in sneakers if x.weak_sku != x.style_code]
    assert 1 <= len(wrong) <= 0.06 * len(sneakers)
    for x in junk:
        assert not x.labelled and x.model is None and x.style_code is None and x.colourway is None
        assert x.weak_model is None and x.weak_sku is None and x.weak_title
        assert x.page_url.startswith(DEMO_HOST + "/")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower().replace("'", "")).strip("-")


def test_images_decode_in_varied_sizes_formats_and_backgrounds(small_set: list[DemoImage]) -> None:
    exts = Counter(x.name.rsplit(".", 1)[1] for x in small_set)
    assert exts["jpg"] > exts["png"] > 0 and exts["webp"] > 0
    transparent = 0
    widths = []
    for x in small_set:
        img = decode_image(x.data, x.name)
        assert img.mode == "RGB"
        assert 0.75 * 96 - 1 <= img.width <= 2 * 96 + 1
        widths.append(img.width)
        raw = PILImage.open(io.BytesIO(x.data))
        assert raw.format == {"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}[x.name.rsplit(".", 1)[1]]
        if raw.mode == "RGBA" and raw.getchannel("A").getextrema()[0] == 0:
            transparent += 1
    assert transparent > 0
    assert max(widths) - min(widths) > 96 * 0.8


def test_demo_truth_matches_generate(small_set: list[DemoImage]) -> None:
    truth = demo_truth(seed=7, per_colourway=SMALL)
    assert set(truth) == {x.image_url for x in small_set}
    for x in small_set:
        t = truth[x.image_url]
        assert (t.model, t.style_code, t.junk) == (x.model, x.style_code, x.junk)


def _mean_mask(model_idx: int, colourway_idx: int, seeds: range) -> np.ndarray:
    model = demo_catalogue_spec()[model_idx]
    cw = model.colourways[colourway_idx]
    masks = [
        np.asarray(render_sneaker(model, cw, np.random.default_rng(s), 96).getchannel("A")) / 255.0
        for s in seeds
    ]
    return np.mean(masks, axis=0)


def test_silhouette_tells_the_model_not_the_colourway() -> None:
    n = len(demo_catalogue_spec())
    first = [_mean_mask(i, 0, range(0, 6)) for i in range(n)]
    second = [_mean_mask(i, 1, range(100, 106)) for i in range(n)]
    within = [float(np.abs(first[i] - second[i]).mean()) for i in range(n)]
    between = [
        float(np.abs(first[i] - second[j]).mean()) for i in range(n) for j in range(n) if i != j
    ]
    assert max(within) < 0.015, within
    assert min(between) > 0.03, between
    assert min(between) > 3 * max(within)


def test_colourways_of_a_model_differ_in_colour_only() -> None:
    for model in demo_catalogue_spec():
        drawn = [
            np.asarray(render_sneaker(model, cw, np.random.default_rng(5), 96)).astype(int)
            for cw in model.colourways
        ]
        for a, b in itertools.combinations(drawn, 2):
            assert np.array_equal(a[..., 3], b[..., 3])  # same rng: the very same shape
            fg = a[..., 3] > 0
            assert np.abs(a[..., :3] - b[..., :3])[fg].mean() > 8, model.name


def test_bad_arguments_are_refused() -> None:
    model = demo_catalogue_spec()[0]
    with pytest.raises(ValueError, match="size"):
        render_sneaker(model, model.colourways[0], np.random.default_rng(0), 8)
    with pytest.raises(ValueError, match="per_colourway"):
        next(generate(per_colourway=0))
    with pytest.raises(ValueError, match="seed"):
        next(generate(seed=-1))
    with pytest.raises(ValueError, match="size"):
        next(generate(size=10))


def test_load_demo_fills_an_empty_catalogue(catalogue: Catalogue) -> None:
    calls: list[tuple[int, int]] = []
    counts = load_demo(
        catalogue, seed=1, per_colourway=2, size=64, progress=lambda d, t: calls.append((d, t))
    )
    total = demo_count(2)
    assert calls[0] == (0, total) and calls[-1] == (total, total)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    expected = list(generate(seed=1, per_colourway=2, size=64))
    assert counts["images"] == total == len(expected)
    assert counts["labelled"] == sum(x.labelled for x in expected)
    assert counts["junk"] == sum(x.junk for x in expected)
    with catalogue.read() as s:
        assert s.scalar(select(func.count()).select_from(Image)) == total
        status = dict(s.execute(select(Image.status, func.count()).group_by(Image.status)).all())
        assert status == {"labelled": counts["labelled"], "new": total - counts["labelled"]}
        # the labelled images get splits by the catalogue's rule; unlabelled ones wait for a label
        assert s.scalar(select(func.count()).where(Image.split.is_not(None))) == counts["labelled"]
        assert (
            s.scalar(select(func.count()).where(Image.status == "new", Image.split.is_not(None)))
            == 0
        )
        assert s.scalar(select(func.count()).select_from(SneakerModel)) == counts["models"]
        assert s.scalar(select(func.count()).select_from(Sku)) == counts["skus"]
        assert all(sku.colourway and sku.title for sku in s.scalars(select(Sku)))
        sources = {src.image_url: src for src in s.scalars(select(ImageSource))}
        assert len(sources) == total
        for x in expected:
            src = sources[x.image_url]
            assert src.kind == "demo" and src.page_url == x.page_url
            assert (src.weak_model, src.weak_sku, src.weak_title) == (
                x.weak_model,
                x.weak_sku,
                x.weak_title,
            )
            image = src.image
            if x.labelled:
                assert image.model.name == x.model and image.sku.style_code == x.style_code
                assert image.labelled_by == "demo"
            else:
                assert image.model_id is None and image.status == "new"
        events = s.scalars(select(LabelEvent).where(LabelEvent.action == "label")).all()
        assert len(events) == counts["labelled"]
        assert {(e.user, e.how) for e in events} == {("demo", "import")}
        splits = s.scalars(select(LabelEvent).where(LabelEvent.action == "split")).all()
        assert len(splits) == counts["labelled"] and {e.user for e in splits} == {"demo"}


def test_load_demo_refuses_a_catalogue_with_images(catalogue: Catalogue) -> None:
    load_demo(catalogue, seed=0, per_colourway=1, size=64)
    with catalogue.read() as s:
        before = s.scalar(select(func.count()).select_from(Image))
    with pytest.raises(CatalogueError, match="already holds"):
        load_demo(catalogue, seed=2, per_colourway=1, size=64)
    with catalogue.read() as s:
        assert s.scalar(select(func.count()).select_from(Image)) == before


def test_an_interrupted_demo_load_is_completed_by_the_next(catalogue: Catalogue) -> None:
    def stop_after_first_batch(done: int, total: int) -> None:
        if done:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        load_demo(
            catalogue, seed=3, per_colourway=2, size=64, batch=20, progress=stop_after_first_batch
        )
    with catalogue.read() as s:
        assert s.scalar(select(func.count()).select_from(Image)) == 20
    counts = load_demo(catalogue, seed=3, per_colourway=2, size=64, batch=20)
    total = demo_count(2)
    assert counts["images"] == total - 20  # only what was missing
    with catalogue.read() as s:
        assert s.scalar(select(func.count()).select_from(Image)) == total
        assert s.scalar(select(func.count()).select_from(ImageSource)) == total
    with pytest.raises(CatalogueError, match="already holds"):  # complete now
        load_demo(catalogue, seed=3, per_colourway=2, size=64)
