"""`python -m db` as a user runs it: init, import, export, stats."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from db import Catalogue
from db.models import Image, ImageSource
from tests.db.helpers import picture

ROOT = Path(__file__).resolve().parents[2]


def run_db(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SKULAB_DATA": str(data)}
    return subprocess.run(
        [sys.executable, "-m", "db", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def write_tree(root: Path, layout: dict[str, int], seed: int = 0) -> None:
    """layout: relative folder -> number of images to put there."""
    n = seed
    for folder, count in layout.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            fmt, ext = [("JPEG", "jpg"), ("PNG", "png"), ("WEBP", "webp")][i % 3]
            (root / folder / f"img{i}.{ext}").write_bytes(picture(n, fmt=fmt))
            n += 1


def test_init_creates_the_catalogue(tmp_path: Path) -> None:
    out = run_db(tmp_path / "d", "init")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "d" / "skulab.db").exists()
    assert "0 images" in out.stdout


def test_import_tree_with_labels_errors_and_reimport(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_tree(src, {"Nike Dunk Low/dd1391-100": 4, "Nike Dunk Low/DD1503-101": 3, "Air Max 90": 5})
    (src / "Air Max 90" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    (src / "Air Max 90" / "empty.png").write_bytes(b"")
    (src / "notes.txt").write_text("not an image")
    data = tmp_path / "data"

    out = run_db(data, "import", str(src), "--source", "studio")
    assert out.returncode == 1, out.stderr  # two files skipped: says so in the exit status
    assert "12 new images" in out.stdout
    assert "skipped Air Max 90/broken.jpg" in out.stdout
    assert "skipped Air Max 90/empty.png: empty file" in out.stdout

    cat = Catalogue(data)
    with cat.read() as s:
        labels = {
            (i.model.name, i.sku.style_code if i.sku else None) for i in s.scalars(select(Image))
        }
        assert labels == {
            ("Nike Dunk Low", "DD1391-100"),
            ("Nike Dunk Low", "DD1503-101"),
            ("Air Max 90", None),
        }
        assert s.scalar(select(func.count()).where(ImageSource.spider == "studio")) == 12
        splits = dict(s.execute(select(Image.split, func.count()).group_by(Image.split)).all())
    assert None not in splits and set(splits) <= {"train", "val", "test"}
    assert splits["train"] >= 6

    again = run_db(data, "import", str(src))
    assert "0 new images, 12 already in the catalogue" in again.stdout
    with cat.read() as s:
        assert s.scalar(select(func.count()).select_from(Image)) == 12


def test_split_folders_set_the_split(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_tree(
        src,
        {"train/Nike Cortez/DM4044-100": 3, "val/Nike Cortez/DM4044-100": 2, "test/Nike Cortez": 1},
    )
    out = run_db(tmp_path / "data", "import", str(src))
    assert out.returncode == 0, out.stderr
    with Catalogue(tmp_path / "data").read() as s:
        splits = dict(s.execute(select(Image.split, func.count()).group_by(Image.split)).all())
    assert splits == {"train": 3, "val": 2, "test": 1}


def test_mixed_split_and_model_folders_are_refused(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_tree(src, {"train/Nike Cortez": 1, "Nike Cortez": 1})
    out = run_db(tmp_path / "data", "import", str(src))
    assert out.returncode == 2
    assert "mixes split folders (train) with other folders (Nike Cortez)" in out.stderr


def test_export_then_import_round_trips(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_tree(src, {"train/Nike Dunk Low/DD1391-100": 3, "test/Air Max 90": 2})
    run_db(tmp_path / "a", "import", str(src))
    out = run_db(tmp_path / "a", "export", str(tmp_path / "out"))
    assert out.returncode == 0, out.stderr
    with (tmp_path / "out" / "manifest.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 5
    assert {r["split"] for r in rows} == {"train", "test"}
    assert all((tmp_path / "out" / r["path"]).is_file() for r in rows)
    assert all(str(src) in r["sources"] for r in rows)
    dunk = [r for r in rows if r["sku"]]
    assert {r["path"].split("/")[:3] == ["train", "Nike Dunk Low", "DD1391-100"] for r in dunk} == {
        True
    }

    back = run_db(tmp_path / "b", "import", str(tmp_path / "out"))
    assert back.returncode == 0, back.stderr
    assert "5 new images" in back.stdout
    assert (
        run_db(tmp_path / "a", "stats").stdout.split("images by status")[1]
        == run_db(tmp_path / "b", "stats").stdout.split("images by status")[1]
    )


def test_stats_prints_every_breakdown(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_tree(src, {"train/Nike Dunk Low/DD1391-100": 2})
    run_db(tmp_path / "d", "import", str(src))
    out = run_db(tmp_path / "d", "stats").stdout
    for title in ("images by status", "by split", "by model", "by SKU"):
        assert title in out
    assert "DD1391-100" in out


@pytest.mark.parametrize("bad", ["--split=holdout"])
def test_bad_arguments_exit_with_usage(tmp_path: Path, bad: str) -> None:
    out = run_db(tmp_path / "d", "import", str(tmp_path), bad)
    assert out.returncode == 2 and "invalid choice" in out.stderr


def test_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    """`python -m db stats | head`: the reader goes away; no BrokenPipeError traceback."""
    data = tmp_path / "data"
    assert run_db(data, "demo", "--per-colourway", "1").returncode == 0
    for args in (["stats"], ["splits", "check"], ["health"], ["duplicates"], ["--help"]):
        read_end, write_end = os.pipe()
        os.close(read_end)  # the reader is gone before the first line: every write fails
        proc = subprocess.run(
            [sys.executable, "-m", "db", *args],
            cwd=ROOT,
            env={**os.environ, "SKULAB_DATA": str(data)},
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=300,
        )
        os.close(write_end)
        assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, args
        # 141 as after SIGPIPE; argparse's --help swallows the error on its own (0)
        assert proc.returncode == (0 if args == ["--help"] else 141), (args, proc.stderr)


def test_bad_database_settings_are_named(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cases = {
        "nonsense": "is not a database URL",
        "foo://somewhere/x": "cannot use the database foo://somewhere/x",
        "sqlite:////nonexistent-folder/x/skulab.db": "cannot open the catalogue at sqlite:",
    }
    for url, message in cases.items():
        out = subprocess.run(
            [sys.executable, "-m", "db", "stats"],
            cwd=ROOT,
            env={**os.environ, "SKULAB_DATA": str(data), "DATABASE_URL": url},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 2, (url, out.stderr)
        assert message in out.stderr and "Traceback" not in out.stderr, (url, out.stderr)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    out = run_db(blocker / "data", "stats")
    assert out.returncode == 2 and "cannot use the data folder" in out.stderr


def test_password_in_the_database_url_is_never_printed(tmp_path: Path) -> None:
    from db.cli import _open

    with pytest.raises(Exception, match=r"\*\*\*") as info:
        os.environ["DATABASE_URL"] = "postgresql+psycopg://ann:s3cret@127.0.0.1:1/skulab"
        try:
            _open(str(tmp_path / "data"))
        finally:
            del os.environ["DATABASE_URL"]
    assert "s3cret" not in str(info.value)


def test_reimport_reports_nothing_new_and_names_ignored_files(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_tree(src, {"Nike Dunk Low/dd1391-100": 3})
    (src / "notes.txt").write_text("not an image")
    (src / "Nike Dunk Low" / "Thumbs.db").write_bytes(b"\0")
    data = tmp_path / "data"
    first = run_db(data, "import", str(src))
    assert "3 labelled now" in first.stdout
    assert "2 files ignored" in first.stdout and "notes.txt" in first.stdout
    again = run_db(data, "import", str(src))
    assert again.returncode == 0, again.stderr
    assert "0 new images, 3 already in the catalogue, 0 labelled now" in again.stdout
    assert "splits assigned" not in again.stdout
