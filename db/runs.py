"""Whether a training run's process still lives, judged by any command; stale runs cleaned up.

A run's process holds an exclusive lock (``flock``) on ``runs/<id>/run.lock`` from the
moment it takes the run until it has written how it ended. The kernel drops the lock
when the process dies, however it dies (``kill -9``, out of memory), so any other
process can ask "is someone executing run N?" by trying the lock: a recycled pid cannot
fool it. Runs from before the lock (no lock file) are judged by their pid, as before.

:func:`reap_stale_runs` marks a run that says "running" (or "queued" with a dead
process) but has no process failed, and removes the bundle files its process left
half-written (the log stays). ``training`` calls it before a fit, a promotion and an
evaluation; ``python -m db check`` reports such runs and ``--repair`` reaps them.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select, update

from db.catalogue import Catalogue
from db.models import Run, utcnow

LOCK_NAME = "run.lock"
KEEP = (LOCK_NAME, "log.txt")
"""Files a run's folder keeps when its half-written bundle is removed."""
UNFINISHED = ("queued", "running")


class RunBusy(RuntimeError):
    """Another process holds the run (it is being executed)."""


def run_folder(cat: Catalogue, run_id: int) -> Path:
    return cat.data_dir / "runs" / str(run_id)


def lock_path(cat: Catalogue, run_id: int) -> Path:
    return run_folder(cat, run_id) / LOCK_NAME


@dataclass
class RunLock:
    """The lock of a run, held by the process that executes it (release, or just exit)."""

    path: Path
    fd: int

    def release(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = -1


def acquire(cat: Catalogue, run_id: int, wait_s: float = 2.0) -> RunLock:
    """Take run ``run_id``'s lock; :class:`RunBusy` if another process holds it.

    Waits a little: a check by another command holds it for a moment only.
    """
    path = lock_path(cat, run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise RunBusy(f"run {run_id} is being executed by another process") from None
            time.sleep(0.05)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return RunLock(path, fd)


def lock_held(cat: Catalogue, run_id: int) -> bool | None:
    """True while a process holds the run's lock, False when its lock file is free, None
    when the run has no lock file (not started yet, or started before locks existed)."""
    path = lock_path(cat, run_id)
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops a lock this check took
    return False


def pid_alive(pid: int | None) -> bool:
    """Whether a process with this pid runs (a zombie counts as ended). A recycled pid
    fools this: it is only the fallback for runs without a lock file."""
    if pid is None or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def process_alive(cat: Catalogue, run: Run) -> bool:
    """Whether run ``run``'s process still lives: its lock if it has one, else its pid."""
    held = lock_held(cat, run.id)
    if held is not None:
        return held
    return pid_alive(run.pid)


def is_stale(cat: Catalogue, run: Run) -> bool:
    """An unfinished run that nobody executes any longer.

    "running" with its lock free (or, without a lock file, its pid gone); "queued" with a
    pid whose process is gone (a queued run without a pid is waiting for its process).
    """
    if run.status == "running":
        return not process_alive(cat, run)
    if run.status == "queued":
        return run.pid is not None and not process_alive(cat, run)
    return False


def clear_bundle(folder: Path) -> list[str]:
    """Remove what a run's process wrote into its folder, except its lock and log."""
    removed: list[str] = []
    if not folder.is_dir():
        return removed
    for path in sorted(folder.iterdir()):
        if path.name in KEEP:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path.name)
    return removed


def stale_runs(cat: Catalogue) -> list[Run]:
    with cat.read() as s:
        runs = list(s.scalars(select(Run).where(Run.status.in_(UNFINISHED)).order_by(Run.id)))
    return [r for r in runs if is_stale(cat, r)]


def reap_stale_runs(cat: Catalogue) -> list[int]:
    """Mark every stale run failed (saying why) and remove its half-written bundle.

    Each run is judged again inside the write transaction, so a process that finishes
    properly at the same moment wins. Returns the ids of the runs marked failed.
    """
    reaped: list[int] = []
    for run in stale_runs(cat):
        with cat.write() as s:
            current = s.get(Run, run.id)
            if current is None or not is_stale(cat, current):
                continue
            what = "process" if current.status == "running" else "process it was started in"
            s.execute(
                update(Run)
                .where(Run.id == run.id, Run.status.in_(UNFINISHED))
                .values(
                    status="failed",
                    active=False,
                    error=(
                        f"the training {what} (pid {current.pid}) ended without finishing "
                        "(killed, out of memory, or the machine restarted); found by "
                        "another command"
                    ),
                    message="failed",
                    finished_at=utcnow(),
                )
            )
        clear_bundle(run_folder(cat, run.id))
        reaped.append(run.id)
    return reaped
