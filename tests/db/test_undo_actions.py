"""Undo takes back one action, whatever it touched, and nothing else (issue 15, point 1).

On the demo catalogue (labelled images with splits, the test split locked): a no-op records
nothing; undoing an action never reaches past it, never overwrites a later change and never
moves a locked split; the history keeps the action and its undo.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from db import Catalogue, ops
from db.models import Image, LabelEvent


def _labelled(cat: Catalogue, n: int) -> list[Image]:
    with cat.read() as s:
        return list(
            s.scalars(
                select(Image)
                .where(Image.status == "labelled")
                .options(selectinload(Image.model), selectinload(Image.sku))
                .order_by(Image.id)
                .limit(n)
            )
        )


def _state(cat: Catalogue, ids: list[int]) -> dict[int, tuple]:
    with cat.read() as s:
        return {
            i.id: (i.status, i.model_id, i.sku_id, i.split, i.split_locked, i.labelled_by)
            for i in s.scalars(select(Image).where(Image.id.in_(ids)))
        }


def _events(cat: Catalogue) -> int:
    with cat.read() as s:
        return s.scalar(select(func.count()).select_from(LabelEvent)) or 0


def _other_sku(cat: Catalogue, image_id: int) -> tuple[str, str]:
    with cat.read() as s:
        image = s.get(Image, image_id)
        assert image is not None and image.model is not None
        other = next(k for k in image.model.skus if k.id != image.sku_id)
        return image.model.name, other.style_code


def test_giving_images_the_label_they_have_records_nothing(demo_catalogue: Catalogue) -> None:
    images = _labelled(demo_catalogue, 20)
    ids = [i.id for i in images]
    before, n_events = _state(demo_catalogue, ids), _events(demo_catalogue)
    with demo_catalogue.write() as s:
        changed = sum(
            ops.label(s, i.id, i.model.name, i.sku.style_code if i.sku else None, "ana")
            for i in images
        )
    assert changed == 0
    assert _events(demo_catalogue) == n_events
    assert _state(demo_catalogue, ids) == before  # labelled_by kept too


def test_undoing_a_no_op_action_changes_nothing_and_never_reaches_past_it(
    demo_catalogue: Catalogue,
) -> None:
    images = _labelled(demo_catalogue, 30)
    ids = [i.id for i in images]
    with demo_catalogue.write() as s:  # the test split locked, by someone else
        test = [i.id for i in images if i.split == "test"]
        ops.set_split(s, test, "test", "lead", lock=True)
    before = _state(demo_catalogue, ids)
    assert test and all(before[i][4] for i in test)
    with demo_catalogue.write() as s:
        action_id = ops.begin_action(s)
        for i in images:
            ops.set_label(s, i.id, i.model.name, i.sku.style_code if i.sku else None, "ana")
    with demo_catalogue.write() as s:
        result = ops.undo_action(s, action_id, "ana")
        assert ops.last_action_by(s, "ana") is None
    assert result.n == 0 and result.undo_id is None
    assert _state(demo_catalogue, ids) == before


def test_undo_takes_back_the_whole_action_and_only_it(demo_catalogue: Catalogue) -> None:
    images = _labelled(demo_catalogue, 12)
    ids = [i.id for i in images]
    first, rest = ids[:4], ids[4:]
    with demo_catalogue.write() as s:  # an earlier action of the same user
        ops.bulk_label(s, first, *_other_sku(demo_catalogue, first[0]), "ana")
    after_first = _state(demo_catalogue, ids)
    with demo_catalogue.write() as s:
        action_id = ops.begin_action(s)
        for image_id in ids:
            ops.reject(s, image_id, "ana")
    with demo_catalogue.write() as s:
        assert ops.last_action_by(s, "ana") == (action_id, "rejected 12 images")
        result = ops.undo_action(s, action_id, "ana")
    assert sorted(result.reverted) == sorted(ids) and not result.kept
    assert _state(demo_catalogue, ids) == after_first  # the earlier relabel stays
    # the history keeps the action, marked undone, and its undo, which names it
    with demo_catalogue.read() as s:
        done = list(s.scalars(select(LabelEvent).where(LabelEvent.action_id == action_id)))
        undo = list(s.scalars(select(LabelEvent).where(LabelEvent.undo_of == action_id)))
    assert len(done) == 12 and all(e.undone for e in done)
    assert len(undo) == 12 and {e.action for e in undo} == {"undo"}
    assert {e.action_id for e in undo} == {result.undo_id}
    # undoing again finds nothing of that action; the next undo is the earlier action
    with demo_catalogue.write() as s:
        assert ops.undo_action(s, action_id, "ana").n == 0
        previous = ops.last_action_by(s, "ana")
    assert previous is not None and previous[1].startswith("labelled 4 images")
    assert _state(demo_catalogue, rest) == {i: after_first[i] for i in rest}


def test_undo_leaves_an_image_changed_since_as_it_is(demo_catalogue: Catalogue) -> None:
    images = _labelled(demo_catalogue, 3)
    ids = [i.id for i in images]
    model, sku = _other_sku(demo_catalogue, ids[0])
    with demo_catalogue.write() as s:
        action_id = ops.begin_action(s)
        ops.bulk_label(s, ids, model, sku, "ana")
    with demo_catalogue.write() as s:
        ops.reject(s, ids[0], "ben")  # a later change by someone else
    with demo_catalogue.write() as s:
        result = ops.undo_action(s, action_id, "ana")
    assert sorted(result.reverted) == sorted(ids[1:])
    assert len(result.kept) == 1 and "changed since" in result.kept[0]
    with demo_catalogue.read() as s:
        assert s.get(Image, ids[0]).status == "rejected"


def test_undo_gives_back_who_labelled_it(demo_catalogue: Catalogue) -> None:
    image = _labelled(demo_catalogue, 1)[0]
    model, sku = _other_sku(demo_catalogue, image.id)
    with demo_catalogue.write() as s:
        action_id = ops.begin_action(s)
        ops.set_label(s, image.id, model, sku, "ana")
    with demo_catalogue.write() as s:
        ops.undo_action(s, action_id, "ana")
    with demo_catalogue.read() as s:
        back = s.get(Image, image.id)
        assert (back.sku_id, back.labelled_by, back.labelled_at) == (
            image.sku_id,
            image.labelled_by,
            image.labelled_at,
        )


def test_undo_never_moves_a_locked_split(demo_catalogue: Catalogue) -> None:
    with demo_catalogue.read() as s:
        image = s.scalar(select(Image).where(Image.split == "val").limit(1))
    with demo_catalogue.write() as s:
        action_id = ops.begin_action(s)
        ops.set_split(s, [image.id], "train", "ana")
    with demo_catalogue.write() as s:  # then someone locks it where it is now
        ops.set_split(s, [image.id], "train", "ben", lock=True)
    with demo_catalogue.write() as s:
        result = ops.undo_action(s, action_id, "ana")
    assert result.n == 0 and "locked" in result.kept[0]
    with demo_catalogue.read() as s:
        assert s.get(Image, image.id).split == "train"
