"""Which run is the active model: the first success when there is none, then promotions."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from db import Catalogue
from db.models import Run
from training import cli
from training.jobs import promote_if_none_active


def _run(cat: Catalogue, status: str = "succeeded") -> int:
    with cat.write() as s:
        run = Run(name="r", status=status, bundle_path="runs/x" if status == "succeeded" else None)
        s.add(run)
        s.flush()
        return run.id


def _active(cat: Catalogue) -> list[int]:
    with cat.read() as s:
        return list(s.scalars(select(Run.id).where(Run.active)))


def test_the_first_successful_run_becomes_active_and_later_ones_wait(catalogue: Catalogue) -> None:
    failed = _run(catalogue, "failed")
    assert not promote_if_none_active(catalogue, failed)
    assert _active(catalogue) == []
    first, second = _run(catalogue), _run(catalogue)
    assert promote_if_none_active(catalogue, first)
    assert not promote_if_none_active(catalogue, second)
    assert _active(catalogue) == [first]


def test_promote_command(catalogue: Catalogue, capsys: pytest.CaptureFixture[str]) -> None:
    first, second = _run(catalogue), _run(catalogue)
    queued = _run(catalogue, "queued")
    data = str(catalogue.data_dir)
    assert cli.main(["--data", data, "promote", str(second)]) == 0
    assert _active(catalogue) == [second]
    assert cli.main(["--data", data, "promote", str(first)]) == 0
    assert _active(catalogue) == [first]
    assert cli.main(["--data", data, "promote", str(queued)]) == 2
    assert cli.main(["--data", data, "promote", "999"]) == 2
    err = capsys.readouterr().err
    assert f"run {queued} is queued" in err and "no run 999" in err
    assert _active(catalogue) == [first]
