"""Photos are centred on the field copies' mean: a shift shared by every photo is not a model.

Synthetic embeddings: each model is a direction; product shots lie near their model's
direction, field copies (and the photos asked about) carry the same models plus one large
shift that every photo shares (background, light, camera). A head fitted on product shots and
centred on their mean reads that shift as whichever model it points at; centred on the
field copies' mean, it reads the model.
"""

from __future__ import annotations

from pathlib import Path

import torch

from inference.bundle import Bundle, load_bundle, save_bundle
from inference.cascade import decide
from inference.preprocess import Preprocessing
from training.cascade_fit import Embedded, fit_cascade

DIM, MODELS, PER_MODEL, COLOURWAYS = 64, 4, 24, 6


def _data(seed: int = 0) -> tuple[Embedded, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    directions = torch.randn(MODELS, DIM, generator=g) * 3
    shift = directions[0] * 1.5 + torch.randn(DIM, generator=g) * 4  # leans to model 0
    y = torch.arange(MODELS).repeat_interleave(PER_MODEL)
    colourway = [f"M{m}-{i % COLOURWAYS}" for m, i in zip(y.tolist(), range(len(y)), strict=True)]

    def sample(n_shift: float) -> torch.Tensor:
        return directions[y] + torch.randn(len(y), DIM, generator=g) + n_shift * shift

    train = Embedded(
        image_ids=list(range(len(y))),
        models=[f"model {m}" for m in y.tolist()],
        skus=colourway,
        gray=sample(0),
        colour=sample(0),
        field_rows=list(range(len(y))),
        field_gray=sample(1),
        field_colour=sample(1),
    )
    photos_y = torch.arange(1, MODELS).repeat_interleave(10)  # photos of models 1..3
    photos = directions[photos_y] + torch.randn(len(photos_y), DIM, generator=g) + shift
    return train, photos, photos_y, shift


def test_photos_are_read_as_models_not_as_their_shared_shift(tmp_path: Path) -> None:
    train, photos, photos_y, _ = _data()
    cascade, report = fit_cascade(train)
    assert report["photo_center"] and not report["field_in_heads"]
    assert cascade.stage1.photo_center is not None and cascade.stage2 is not None
    assert cascade.stage2.photo_center is not None

    def right(photo: bool) -> float:
        flags = torch.full((len(photos),), photo)
        answers = decide(cascade, photos, photos, flags)
        top = [a.model_top3[0][0] for a in answers]
        return sum(t == f"model {m}" for t, m in zip(top, photos_y.tolist(), strict=True)) / len(
            top
        )

    assert right(photo=True) >= 0.9
    assert right(photo=False) <= 0.5  # the shift reads as model 0 without the photo centre

    # the photo centre travels with the bundle
    pre = Preprocessing(32, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    save_bundle(Bundle("tiny", pre, cascade), tmp_path / "b")
    loaded = load_bundle(tmp_path / "b").cascade
    assert loaded.stage1.photo_center is not None
    assert torch.allclose(loaded.stage1.photo_center, cascade.stage1.photo_center)


def test_without_field_copies_every_picture_uses_the_product_centre() -> None:
    train, photos, _, _ = _data(seed=1)
    plain = Embedded(train.image_ids, train.models, train.skus, train.gray, train.colour)
    cascade, report = fit_cascade(plain)
    assert cascade.stage1.photo_center is None and not report["photo_center"]
    flags = torch.ones(len(photos), dtype=torch.bool)
    with_flag = decide(cascade, photos, photos, flags)
    without = decide(cascade, photos, photos)
    assert [a.model_top3 for a in with_flag] == [a.model_top3 for a in without]
