"""Fault injection: ``kill -9`` of an import, a crawl and a fit at seeded random points,
then the same command again, as an operator would.

Afterwards `python -m db check` finds rows and files agreeing (no image missing, none
twice, no orphan), no run is left "running", and the active model answers as before.
The kill points are drawn from a seeded generator (``FAULT_SEED`` changes them) and are
points in the work (files written, pictures fetched, training progress), not times.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select

from db import Catalogue
from db.models import Image, ImageSource, Run
from tests.db.test_cli import run_db, write_tree
from tests.scraper.conftest import local_settings
from tests.scraper.local_site import LocalSite, serve
from tests.scraper.test_crawl_resume import PAGES, PER_PAGE, paged_store
from tests.training.helpers import demo_copy

pytestmark = [pytest.mark.faults, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SEED = int(os.environ.get("FAULT_SEED", "16"))
KILLS = 3


def _env(data: Path) -> dict[str, str]:
    env = {**os.environ, "SKULAB_DATA": str(data)}
    env.pop("DATABASE_URL", None)
    return env


def kill_when(cmd: list[str], data: Path, reached: Callable[[], bool], what: str) -> bool:
    """Start ``cmd``, ``kill -9`` it as soon as ``reached()``; False if it ended first."""
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=_env(data), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 300
        while not reached():
            if proc.poll() is not None:
                return False
            assert time.monotonic() < deadline, f"never reached {what}"
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        return True
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)


def check_clean(data: Path) -> dict:
    out = run_db(data, "check", "--json")
    report = json.loads(out.stdout)
    # a kill inside an atomic write can leave its '.tmp-' file: named, and safe to remove
    assert set(report["problems"]) <= {"half-written file"}, report
    if report["problems"]:
        assert run_db(data, "check", "--repair").returncode == 0
    assert run_db(data, "check").returncode == 0
    return report


AFTER_A_KILL = {"orphan file", "orphan thumbnail", "half-written file"}
"""What a kill between writing files and committing their rows may leave: files only, all
repairable, and adopted by the next run of the same command. Never a row without a file."""


def check_after_kill(data: Path) -> None:
    report = json.loads(run_db(data, "check", "--json").stdout)
    assert set(report["problems"]) <= AFTER_A_KILL, report
    assert all(p["repairable"] for p in report["details"]), report


def _count_files(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


def test_import_killed_at_random_points_then_run_again(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    src = tmp_path / "src"
    layout = {"Nike Dunk Low/DD1391-100": 90, "Nike Cortez/DM4044-100": 90, "Air Max 90": 60}
    write_tree(src, layout)
    total = sum(layout.values())
    data = tmp_path / "data"
    assert run_db(data, "init").returncode == 0
    cmd = [sys.executable, "-m", "db", "import", str(src)]
    points = sorted(rng.sample(range(1, total - 20), KILLS))
    killed = 0
    for point in points:
        # files are written inside the batch, before its commit: kill between the two
        killed += kill_when(
            cmd, data, lambda p=point: _count_files(data / "images") >= p, f"{point} files"
        )
        check_after_kill(data)
    assert killed == KILLS
    again = run_db(data, "import", str(src))
    assert again.returncode == 0, again.stdout + again.stderr
    check_clean(data)
    cat = Catalogue(data)
    with cat.read() as s:
        assert s.scalar(select(func.count()).select_from(Image)) == total
        assert s.scalar(select(func.count(func.distinct(Image.sha256)))) == total
        assert s.scalar(select(func.count()).where(Image.status == "labelled")) == total
    assert _count_files(data / "images") == total
    cat.dispose()


def test_crawl_killed_at_random_points_then_run_again(tmp_path: Path) -> None:
    rng = random.Random(SEED + 1)
    site = LocalSite(delay_s=0.02)
    with serve(site):
        paged_store(site)
        data, jobdir = tmp_path / "data", tmp_path / "job"
        args = ["-a", f"stores={site.base}", "-s", f"JOBDIR={jobdir}"]
        cmd = [sys.executable, "-m", "scrapy", "crawl", "shopify", *local_settings(site), *args]
        pictures = PAGES * PER_PAGE
        killed = 0
        # the n-th picture fetched by this run (a rerun fetches only the pictures it lacks)
        for point in (rng.randint(1, pictures // (KILLS + 1)) for _ in range(KILLS)):
            before = len(site.paths("/cdn/"))
            killed += kill_when(
                cmd,
                data,
                lambda p=point, b=before: len(site.paths("/cdn/")) - b >= p,
                f"picture {point}",
            )
            if (data / "skulab.db").exists():
                check_after_kill(data)
        assert killed == KILLS
        again = subprocess.run(
            cmd, cwd=ROOT, env=_env(data), capture_output=True, text=True, timeout=300
        )
        assert again.returncode == 0, again.stderr[-3000:]
    check_clean(data)
    cat = Catalogue(data)
    with cat.read() as s:
        assert s.scalar(select(func.count()).select_from(Image)) == pictures
        per_url = s.execute(
            select(ImageSource.image_url, func.count()).group_by(ImageSource.image_url)
        ).all()
    assert len(per_url) == pictures and {n for _url, n in per_url} == {1}
    cat.dispose()


def _predict(data: Path, images: list[Path]) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "inference", "predict", *map(str, images)],
        cwd=ROOT,
        env=_env(data),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_fit_killed_at_random_points_then_run_again(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    rng = random.Random(SEED + 2)
    cat = demo_copy(tmp_path, tmp_path_factory.mktemp("demo-cache"))
    data = cat.data_dir
    fit = [sys.executable, "-m", "training", "fit", "--backbone", "tiny", "--image-size", "64"]
    first = subprocess.run(fit, cwd=ROOT, env=_env(data), capture_output=True, text=True)
    assert first.returncode == 0, first.stderr[-3000:]
    with cat.read() as s:
        active = s.scalar(select(Run.id).where(Run.active))
        sample = [data / p for p in s.scalars(select(Image.path).order_by(Image.id).limit(6))]
    assert active is not None
    answers = _predict(data, sample)

    def progress_at(point: float, after: int) -> Callable[[], bool]:
        """The fit started now has reached ``point`` (runs up to ``after`` are earlier kills,
        whose rows still say running until a later command marks them failed)."""

        def reached() -> bool:
            with cat.read() as s:
                run = s.scalar(select(Run).where(Run.id > after).order_by(Run.id.desc()))
            return run is not None and run.status == "running" and run.progress >= point

        return reached

    killed = 0
    for point in sorted(rng.uniform(0.0, 0.9) for _ in range(KILLS)):
        with cat.read() as s:
            newest = s.scalar(select(Run.id).order_by(Run.id.desc()).limit(1))
        killed += kill_when(fit, data, progress_at(point, newest), f"progress {point:.2f}")
    assert killed == KILLS
    again = subprocess.run(fit, cwd=ROOT, env=_env(data), capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-3000:]
    with cat.read() as s:
        runs = {r.id: r for r in s.scalars(select(Run))}
    assert not [r.id for r in runs.values() if r.status in ("queued", "running")]
    failed = [r for r in runs.values() if r.status == "failed"]
    assert len(failed) == KILLS
    assert all("ended without finishing" in (r.error or "") for r in failed)
    assert [r.id for r in runs.values() if r.active] == [active]
    check_clean(data)
    assert _predict(data, sample) == answers
    cat.dispose()
