"""`python -m db check [--repair]`: rows and files, history and labels, runs and bundles."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select, update

from db import Catalogue
from db.models import Image, Run
from db.runs import acquire
from tests.db.test_cli import run_db, write_tree


def test_check_finds_each_fault_and_repairs_what_is_safe(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_tree(src, {"Nike Cortez/DM4044-100": 4, "Air Max 90": 2})
    data = tmp_path / "data"
    assert run_db(data, "import", str(src)).returncode == 0
    clean = run_db(data, "check")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "everything agrees" in clean.stdout

    cat = Catalogue(data)
    with cat.read() as s:
        images = list(s.scalars(select(Image).order_by(Image.id)))
    # what a killed import leaves: a file without a row, a half-written file, a thumbnail
    orphan = data / "images" / "ab" / ("ab" + "0" * 62 + ".jpg")
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"x" * 10)
    half = data / "images" / "ab" / ".tmp-123abc"
    half.write_bytes(b"x")
    thumb = data / "thumbs" / "256" / "cd" / ("cd" + "1" * 62 + ".jpg")
    thumb.parent.mkdir(parents=True, exist_ok=True)
    thumb.write_bytes(b"x")
    # faults no command can repair: a missing file, a label that its history does not explain
    (data / images[0].path).unlink()
    with cat.write() as s:
        s.execute(update(Image).where(Image.id == images[1].id).values(status="rejected"))
        dead = Run(status="running", params={}, pid=1)
        failed = Run(status="failed", params={})
        s.add_all([dead, failed])
        s.flush()
        dead_id, failed_id = dead.id, failed.id
    acquire(cat, dead_id).release()  # its process took the lock and died
    (data / "runs" / str(dead_id) / "bundle.json").write_text("{}")
    (data / "runs" / str(failed_id)).mkdir(parents=True)
    (data / "runs" / str(failed_id) / "heads.safetensors").write_bytes(b"x")
    (data / "runs" / str(failed_id) / "log.txt").write_text("the log")
    (data / "runs" / "999").mkdir()

    found = run_db(data, "check")
    assert found.returncode == 1
    for kind in (
        "missing file",
        "orphan file",
        "half-written file",
        "orphan thumbnail",
        "history disagrees",
        "stale run",
        "orphan bundle",
        "orphan run folder",
    ):
        assert kind in found.stdout, (kind, found.stdout)
    assert orphan.exists()  # a check alone changes nothing
    health = run_db(data, "health")
    assert "integrity (python -m db check): problems:" in health.stdout
    assert "missing file 1" in health.stdout

    repaired = run_db(data, "check", "--repair")
    assert repaired.returncode == 1  # the missing file and the history remain
    assert "repaired 6" in repaired.stdout, repaired.stdout
    assert not orphan.exists() and not half.exists() and not thumb.exists()
    assert not (data / "runs" / "999").exists()
    assert sorted(p.name for p in (data / "runs" / str(failed_id)).iterdir()) == ["log.txt"]
    assert not (data / "runs" / str(dead_id) / "bundle.json").exists()
    with cat.read() as s:
        assert s.get(Run, dead_id).status == "failed"  # type: ignore[union-attr]
    after = run_db(data, "check")
    assert after.returncode == 1
    assert "missing file" in after.stdout and "history disagrees" in after.stdout
    assert "orphan" not in after.stdout and "stale run" not in after.stdout
    cat.dispose()
