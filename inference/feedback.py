"""Photos from the field back into the catalogue: a photo that was predicted (in the app or
through the API) is stored for labelling, and so is each sneaker region found in it.

The photo and its regions arrive unlabelled ("new"), with a source of kind ``upload`` (the
app) or ``api``; a region's source says which photo it was cut from, where, and what the
model answered for it. Once labelled they train the next run like any other image.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

from db import Catalogue
from db.images import decode_image
from db.ops import Source, ingest_prepared, prepare_image
from inference.localise import crop_region
from inference.predictor import PhotoAnswer

REGION_QUALITY = 95


@dataclass
class Added:
    """What :func:`add_photo` stored: the photo's image id and its regions' image ids."""

    photo_id: int
    photo_created: bool
    region_ids: list[int] = field(default_factory=list)
    regions_created: int = 0

    def message(self) -> str:
        said = (
            f"Added as image #{self.photo_id}"
            if self.photo_created
            else f"Already in the catalogue as image #{self.photo_id}"
        )
        said += "; it waits in the Label queue"
        if self.region_ids:
            ids = ", ".join(f"#{i}" for i in self.region_ids)
            said += f" with the {len(self.region_ids)} sneaker region(s) cut from it ({ids})"
        return said + "."


def _region_bytes(data: bytes, name: str, box: tuple[int, int, int, int]) -> bytes:
    picture = decode_image(data, name)
    buf = io.BytesIO()
    crop_region(picture, box).save(buf, "JPEG", quality=REGION_QUALITY)
    return buf.getvalue()


def add_photo(
    cat: Catalogue,
    data: bytes,
    name: str,
    answer: PhotoAnswer | None,
    user: str,
    kind: str = "upload",
) -> Added:
    """Store the photo and each sneaker region of ``answer`` (none: the photo only).

    Decoding, cropping and hashing happen before the one write transaction; a photo
    already in the catalogue keeps its row and gains a source.
    """
    prepared = prepare_image(data, name)
    regions = [s for s in (answer.sneakers if answer else []) if not s.region.whole]
    crops = []
    for n, sneaker in enumerate(regions, start=1):
        crop_name = f"{name}#sneaker{n}.jpg"
        crops.append(
            (sneaker, prepare_image(_region_bytes(data, name, sneaker.region.box), crop_name))
        )
    extra = {"uploaded_by": user}
    with cat.write() as s:
        photo = ingest_prepared(
            s,
            cat.store,
            prepared,
            Source(kind=kind, file_path=name, extra=extra),
            user=user,
            how=kind,
        )
        added = Added(photo.image_id, photo.created)
        for sneaker, prep in crops:
            p = sneaker.prediction
            source = Source(
                kind=kind,
                file_path=f"{name} (sneaker at {','.join(map(str, sneaker.region.box))})",
                weak_model=None,
                extra={
                    **extra,
                    "region_of": prepared.sha256,
                    "box": list(sneaker.region.box),
                    "answered": {"model": p.model, "sku": p.sku},
                },
            )
            result = ingest_prepared(s, cat.store, prep, source, user=user, how=kind)
            added.region_ids.append(result.image_id)
            added.regions_created += result.created
    return added
