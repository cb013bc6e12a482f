"""Several writers on one SQLite file at once: a crawl and two labellers, as separate processes."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

from sqlalchemy import func, select

from db import Catalogue, ops
from db.models import Image, LabelEvent
from tests.db.helpers import picture


def _crawler(folder: str, start: int, n: int) -> None:
    cat = Catalogue(folder)
    for i in range(start, start + n):
        prepared = ops.prepare_image(picture(i, size=(120, 80)), f"{i}.jpg")
        with cat.write() as s:
            ops.ingest_prepared(
                s, cat.store, prepared, ops.Source(kind="crawl", image_url=f"http://x/{i}")
            )


def _labeller(folder: str, user: str, ids: list[int]) -> None:
    cat = Catalogue(folder)
    for image_id in ids:
        with cat.write() as s:
            # read-then-write inside one transaction: the write lock is taken at BEGIN
            image = s.get(Image, image_id)
            assert image is not None
            ops.set_label(s, image_id, "Nike Dunk Low", None, user=user)


def test_a_crawl_and_two_labellers_write_at_once(tmp_path: Path) -> None:
    cat = Catalogue(tmp_path)
    cat.migrate()
    for i in range(40):
        with cat.write() as s:
            ops.ingest_image(
                s, cat.store, picture(i, size=(120, 80)), f"{i}.jpg", ops.Source(kind="import")
            )
    with cat.write() as s:
        ops.get_or_create_model(s, "Nike Dunk Low")
    with cat.read() as s:
        ids = list(s.scalars(select(Image.id).order_by(Image.id)))
    ctx = mp.get_context("spawn")
    procs = [
        ctx.Process(target=_crawler, args=(str(tmp_path), 1000, 60)),
        ctx.Process(target=_crawler, args=(str(tmp_path), 2000, 60)),
        ctx.Process(target=_labeller, args=(str(tmp_path), "ann", ids[:20])),
        ctx.Process(target=_labeller, args=(str(tmp_path), "bob", ids[20:])),
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    with cat.read() as s:
        assert s.scalar(select(func.count()).select_from(Image)) == 160
        assert s.scalar(select(func.count()).where(Image.status == "labelled")) == 40
        by_user = dict(
            s.execute(select(LabelEvent.user, func.count()).group_by(LabelEvent.user)).all()
        )
    assert by_user == {"ann": 20, "bob": 20}
