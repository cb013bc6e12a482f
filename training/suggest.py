"""Suggestions: the active model's answers for every image not labelled yet (and, asked
for, the labelled ones too, for the Review page's "the model disagrees with the label").

Stored as ``predictions`` rows (one per image and run) with the stage-1 margin, so the
labelling queue can show the least certain first.
"""

from __future__ import annotations

from sqlalchemy import delete

from db import Catalogue
from db.models import Prediction, utcnow
from inference.bundle import load_bundle
from inference.cascade import decide
from inference.predictor import active_bundle_dir, run_bundle_dir
from training.dataset import Example, image_ids
from training.fit import Progress, served_embeddings
from training.jobs import _bundle_data

WRITE_CHUNK = 500


def suggest(
    cat: Catalogue,
    run_id: int | None = None,
    progress: Progress | None = None,
    labelled: bool = False,
) -> int:
    """Predict every unlabelled image with run ``run_id`` (default: the active run); with
    ``labelled``, every labelled image as well (rejected images never).

    Returns how many predictions were stored; earlier ones of the same run are replaced.
    """
    say = progress or (lambda _f, _m: None)
    if run_id is None:
        run_id, folder = active_bundle_dir(cat)
    else:
        folder = run_bundle_dir(cat, run_id)
    bundle = load_bundle(folder)
    ids = image_ids(cat, "new", "labelled") if labelled else image_ids(cat, "new")
    if not ids:
        say(1.0, "no images to predict" if labelled else "no unlabelled images")
        return 0
    pseudo = [Example(i, "", "", None, "unlabelled") for i in ids]
    data = _bundle_data(cat, bundle, pseudo, lambda f, m: say(0.9 * f, m))
    gray, colour = served_embeddings(data, bundle.preprocessing)
    answers = decide(bundle.cascade, gray, colour)
    now = utcnow()
    rows = [
        Prediction(
            image_id=image_id,
            run_id=run_id,
            model_name=a.model,
            model_conf=a.model_confidence,
            sku=a.sku,
            sku_conf=a.sku_confidence,
            margin=a.margin,
            top=a.to_dict(),
            created_at=now,
        )
        for image_id, a in zip(data.image_ids, answers, strict=True)
    ]
    for start in range(0, len(rows), WRITE_CHUNK):
        chunk = rows[start : start + WRITE_CHUNK]
        with cat.write() as s:
            s.execute(
                delete(Prediction).where(
                    Prediction.run_id == run_id,
                    Prediction.image_id.in_([r.image_id for r in chunk]),
                )
            )
            s.add_all(chunk)
        say(
            0.9 + 0.1 * (start + len(chunk)) / len(rows), f"stored {start + len(chunk)} suggestions"
        )
    return len(rows)
