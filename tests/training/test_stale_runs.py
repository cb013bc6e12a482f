"""A fit killed with -9 does not stay "running": the next command finds it by its lock.

Also `python -m training evaluate` on a run that does not exist or has not finished says
so in a sentence (no traceback).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from db import Catalogue
from db.models import Run
from db.runs import acquire, lock_held, reap_stale_runs
from tests.training.helpers import demo_copy

ROOT = Path(__file__).resolve().parents[2]


def run_training(data: Path, *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SKULAB_DATA": str(data)}
    return subprocess.run(
        [sys.executable, "-m", "training", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _run(cat: Catalogue, run_id: int) -> Run:
    with cat.read() as s:
        run = s.get(Run, run_id)
        assert run is not None
        return run


def _add_run(cat: Catalogue, status: str, pid: int | None = None) -> int:
    with cat.write() as s:
        run = Run(status=status, params={"backbone": "tiny"}, pid=pid)
        s.add(run)
        s.flush()
        return run.id


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("demo-cache")


def test_a_fit_killed_with_sigkill_is_marked_failed_by_the_next_command(
    tmp_path: Path, cache: Path
) -> None:
    cat = demo_copy(tmp_path, cache)
    env = {**os.environ, "SKULAB_DATA": str(cat.data_dir)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "training", "fit", "--backbone", "tiny", "--image-size", "64"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            with cat.read() as s:
                run = s.query(Run).order_by(Run.id.desc()).first()
            if run is not None and run.status == "running" and lock_held(cat, run.id):
                break
            assert proc.poll() is None, "the fit ended before it could be killed"
            time.sleep(0.02)
        else:
            pytest.fail("the fit never started")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    run_id = run.id
    assert _run(cat, run_id).status == "running"  # nobody wrote how it ended
    # a process now lives under the dead run's pid (a recycled pid): it must not fool anyone
    with cat.write() as s:
        s.get(Run, run_id).pid = os.getpid()  # type: ignore[union-attr]
    (cat.data_dir / "runs" / str(run_id) / "bundle.json").write_text("{half")  # half-written

    out = run_training(cat.data_dir, "evaluate", str(run_id))

    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert f"run {run_id} failed: it has no model bundle" in out.stderr
    run = _run(cat, run_id)
    assert run.status == "failed" and "ended without finishing" in (run.error or "")
    assert not (cat.data_dir / "runs" / str(run_id) / "bundle.json").exists()
    cat.dispose()


def test_evaluate_names_a_missing_or_unfinished_run(catalogue: Catalogue) -> None:
    data = catalogue.data_dir
    missing = run_training(data, "evaluate", "999")
    assert missing.returncode == 2 and "Traceback" not in missing.stderr, missing.stderr
    assert "error: no run 999" in missing.stderr

    running = _add_run(catalogue, "running", pid=os.getpid())
    lock = acquire(catalogue, running)  # this process "executes" it
    try:
        out = run_training(data, "evaluate", str(running))
    finally:
        lock.release()
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert f"run {running} is still running: evaluate it once it has finished" in out.stderr
    assert _run(catalogue, running).status == "running"  # its process lives: left alone


def test_only_runs_without_a_process_are_reaped(catalogue: Catalogue) -> None:
    held = _add_run(catalogue, "running", pid=1)
    lock = acquire(catalogue, held)
    freed = _add_run(catalogue, "running", pid=os.getpid())  # a live, unrelated pid
    acquire(catalogue, freed).release()  # its process took the lock, then died
    old_dead = _add_run(catalogue, "running", pid=2**22 + 7)  # no lock file, pid gone
    waiting = _add_run(catalogue, "queued")  # queued, its process not started yet
    try:
        assert reap_stale_runs(catalogue) == [freed, old_dead]
    finally:
        lock.release()
    assert _run(catalogue, held).status == "running"
    assert _run(catalogue, waiting).status == "queued"
    assert _run(catalogue, freed).status == "failed"
