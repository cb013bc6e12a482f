"""Long work started from the app, run outside it: training runs and suggestion refreshes.

The app never trains in its own process. It writes a queued :class:`db.models.Run` row,
starts ``python -m training fit --run-id N`` as a detached process and reads the run's
``status``/``progress``/``message`` back from the database, so that any page, any user
and any later session sees the same state. Suggestion refreshes (``python -m training
suggest``) are tracked by a small JSON file under ``<data>/jobs``.

Nothing here imports Streamlit: the pages call these functions and render the results.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from db import Catalogue
from db.config import DATA_ENV
from db.models import Image, Run, utcnow

LOG_NAME = "log.txt"
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".svg")
FINISHED = ("succeeded", "failed")
UNFINISHED = ("queued", "running")

# Processes this server started: polling them reaps them, so they do not linger as zombies
# (a zombie still answers ``kill(pid, 0)`` and would look alive).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class JobError(RuntimeError):
    """A job that cannot be started or changed, with a message for the user."""


# --- processes ----------------------------------------------------------------------------


def _child_env(cat: Catalogue) -> dict[str, str]:
    env = dict(os.environ)
    env[DATA_ENV] = str(cat.data_dir)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def spawn(cat: Catalogue, args: Sequence[str], log_path: Path) -> int:
    """Start ``python -m <args>`` detached from this process, output appended to ``log_path``.

    The child gets its own session (a Streamlit rerun or a closed browser tab does not
    stop it) and ``SKULAB_DATA`` pointing at this catalogue. Returns its pid.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", *args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_child_env(cat),
            cwd=str(cat.data_dir),
            start_new_session=True,
        )
    _CHILDREN[proc.pid] = proc
    return proc.pid


def pid_alive(pid: int | None) -> bool:
    """Whether a process with this pid is still running (zombies count as finished)."""
    if pid is None or pid <= 0:
        return False
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        del _CHILDREN[pid]
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    try:
        # "pid (comm) S ...": the state letter follows the last ')'.
        state = stat.read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def tail(path: Path, max_lines: int = 30, max_bytes: int = 64_000) -> str:
    """The last lines of a text file ('' when it does not exist)."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            text = fh.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    # A progress bar rewrites its line with '\r': keep only the newest state of each line.
    lines = [line.rstrip("\r").rsplit("\r", 1)[-1] for line in text.split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines[-max_lines:])


# --- training runs ------------------------------------------------------------------------


def run_dir(cat: Catalogue, run_id: int) -> Path:
    return cat.runs_dir / str(run_id)


def run_log(cat: Catalogue, run_id: int) -> Path:
    return run_dir(cat, run_id) / LOG_NAME


def start_fit(
    cat: Catalogue, params: Mapping[str, Any], name: str | None = None, promote: bool = False
) -> int:
    """Create a queued run and start ``python -m training fit --run-id N`` for it; the run id.

    Unknown parameters are refused before anything is written. When the process cannot be
    started the run is marked failed with the reason, so that nothing stays queued forever.
    """
    try:
        from training.jobs import create_run  # imports torch: only when a run starts

        run_id = create_run(cat, dict(params), name=(name or "").strip() or None)
    except (TypeError, ValueError) as exc:
        raise JobError(f"cannot start a run: {exc}") from exc
    args = ["training", "fit", "--run-id", str(run_id)] + (["--promote"] if promote else [])
    try:
        pid = spawn(cat, args, run_log(cat, run_id))
    except OSError as exc:
        with cat.write() as s:
            _fail(s, run_id, f"could not start the training process: {exc}")
        raise JobError(f"run {run_id}: could not start the training process: {exc}") from exc
    with cat.write() as s:
        # The child may already have taken over the row; only fill in the pid.
        s.execute(update(Run).where(Run.id == run_id, Run.pid.is_(None)).values(pid=pid))
    return run_id


@dataclass(frozen=True)
class Readiness:
    """What a training run would learn from, and what stops or weakens it."""

    per_split: dict[str, int]
    models: int
    skus: int
    problems: tuple[str, ...]
    warnings: tuple[str, ...]

    @property
    def labelled(self) -> int:
        return sum(self.per_split.values())

    @property
    def summary(self) -> str:
        s = self.per_split
        return (
            f"{self.labelled:,} labelled images (train {s['train']:,}, val {s['val']:,}, "
            f"test {s['test']:,}, no split {s['none']:,}) of {self.models} models and "
            f"{self.skus} SKUs"
        )


def training_readiness(session: Session) -> Readiness:
    """Whether a run can start: training needs labelled images in the train split.

    Without val images there is nothing to calibrate on or pick the "unknown" thresholds
    with, and without test images no honest score; both are said, neither stops a run.
    """
    counts = dict(
        session.execute(
            select(Image.split, func.count())
            .where(Image.status == "labelled")
            .group_by(Image.split)
        ).all()
    )
    per_split = {s: int(counts.get(s, 0)) for s in ("train", "val", "test")}
    per_split["none"] = int(counts.get(None, 0))
    labelled = Image.status == "labelled"
    models = session.scalar(select(func.count(func.distinct(Image.model_id))).where(labelled))
    skus = session.scalar(select(func.count(func.distinct(Image.sku_id))).where(labelled))
    problems: list[str] = []
    warnings: list[str] = []
    if not sum(per_split.values()):
        problems.append("No labelled images yet: label some on the Label page first.")
    elif not per_split["train"]:
        problems.append(
            "No labelled image is in the train split: assign splits on the Splits page first."
        )
    else:
        if not per_split["val"]:
            warnings.append(
                "No labelled val images: the run will have no val scores, and its "
                "confidences and 'unknown' thresholds come from cross-validation on train."
            )
        if not per_split["test"]:
            warnings.append("No labelled test images: the run will have no test scores.")
        if per_split["none"]:
            warnings.append(
                f"{per_split['none']:,} labelled images have no split and are left out: "
                "assign splits on the Splits page to use them."
            )
        if (models or 0) < 2:
            warnings.append(
                "Only one sneaker model is labelled: stage 1 has nothing to tell apart."
            )
    return Readiness(per_split, int(models or 0), int(skus or 0), tuple(problems), tuple(warnings))


def _fail(session: Session, run_id: int, error: str) -> bool:
    """Mark an unfinished run failed; False when it had finished meanwhile."""
    result = session.execute(
        update(Run)
        .where(Run.id == run_id, Run.status.in_(UNFINISHED))
        .values(status="failed", error=error, message="failed", finished_at=utcnow())
    )
    return bool(result.rowcount)


def _alive(cat: Catalogue, run: Run) -> bool:
    """Whether the run's process lives: the lock it holds (db.runs; a recycled pid cannot
    fool it), or its pid where it has no lock yet (queued, its process starting)."""
    from db.runs import lock_held

    held = lock_held(cat, run.id)
    return held if held is not None else pid_alive(run.pid)


def check_run(cat: Catalogue, run_id: int) -> Run | None:
    """The run, after marking it failed if its process died without saying so.

    A process killed by the OS (out of memory, a reboot) cannot write its own failure;
    the check runs inside a write transaction, so a process that finishes properly at the
    same moment wins.
    """
    with cat.read() as s:
        run = s.get(Run, run_id)
    if run is None or run.status in FINISHED or run.pid is None or _alive(cat, run):
        return run
    with cat.write() as s:
        current = s.get(Run, run_id)
        if current is not None and current.status in UNFINISHED and not _alive(cat, current):
            last = tail(run_log(cat, run_id), max_lines=8)
            error = f"the training process (pid {current.pid}) exited without finishing"
            if last:
                error += f"; last lines of its log:\n{last}"
            _fail(s, run_id, error)
    with cat.read() as s:
        return s.get(Run, run_id)


def cancel_run(cat: Catalogue, run_id: int) -> bool:
    """Stop an unfinished run's process and mark it failed ("cancelled"); False if finished."""
    with cat.read() as s:
        run = s.get(Run, run_id)
    if run is None:
        raise JobError(f"no run with id {run_id}")
    if run.status in FINISHED:
        return False
    if run.pid is not None and pid_alive(run.pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(run.pid, signal.SIGTERM)
    with cat.write() as s:
        return _fail(s, run_id, "cancelled by a user")


def list_runs(session: Session, limit: int = 50) -> list[Run]:
    return list(session.scalars(select(Run).order_by(Run.id.desc()).limit(limit)))


def active_run(session: Session) -> Run | None:
    return session.scalar(select(Run).where(Run.active).order_by(Run.id.desc()).limit(1))


def promote(cat: Catalogue, run_id: int) -> None:
    """Make a succeeded run the one active model (training's rule: exactly one active)."""
    try:
        from training.jobs import promote_run

        promote_run(cat, run_id)
    except (LookupError, ValueError) as exc:
        raise JobError(str(exc)) from exc


_EXCEPTION_PREFIX = re.compile(r"^(?:[A-Za-z_][\w.]*)?(?:Error|Exception|Exit): ")


def failure_text(run: Run) -> str:
    """Why a run failed, in words: its error without the Python exception's class name."""
    error = (run.error or "").strip()
    if not error:
        return "The run failed without saying why: see its log."
    return _EXCEPTION_PREFIX.sub("", error, count=1)


def failure_details(run: Run) -> str | None:
    """The technical side of a failure (the traceback the run recorded), if any."""
    message = (run.message or "").strip()
    if not message or message in ("failed", (run.error or "").strip()):
        return None
    return message


def run_label(run: Run) -> str:
    name = f" {run.name}" if run.name else ""
    return f"#{run.id}{name} ({run.params.get('backbone', '?')}, {run.status})"


def elapsed(run: Run, now: datetime | None = None) -> float | None:
    """Seconds the run has been going (or took), None before it started."""
    if run.started_at is None:
        return None
    end = run.finished_at or now or utcnow()
    return max(0.0, (end - run.started_at).total_seconds())


# --- comparing runs -----------------------------------------------------------------------


def flatten_metrics(metrics: Mapping[str, Any] | None, prefix: str = "") -> dict[str, Any]:
    """Nested metrics to ``{"stage.name": scalar}``; lists and per-class tables are left out."""
    flat: dict[str, Any] = {}
    for key, value in (metrics or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            if _is_table(value):
                continue
            flat.update(flatten_metrics(value, f"{name}."))
        elif isinstance(value, bool | int | float | str) or value is None:
            flat[name] = value
    return flat


def _is_table(value: Mapping[str, Any]) -> bool:
    """A mapping of row name -> mapping of scalars (a per-class table)."""
    return bool(value) and all(
        isinstance(row, Mapping)
        and row
        and all(isinstance(v, bool | int | float | str) or v is None for v in row.values())
        for row in value.values()
    )


def metric_tables(
    metrics: Mapping[str, Any] | None, prefix: str = ""
) -> dict[str, dict[str, dict[str, Any]]]:
    """The per-class tables inside a run's metrics: ``{"stage.per_class": {class: {col: v}}}``.

    A list of records with a ``class``/``name``/``label`` field counts as a table too.
    """
    tables: dict[str, dict[str, dict[str, Any]]] = {}
    for key, value in (metrics or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            if _is_table(value):
                tables[name] = {str(k): dict(v) for k, v in value.items()}
            else:
                tables.update(metric_tables(value, f"{name}."))
        elif isinstance(value, list) and value and all(isinstance(r, Mapping) for r in value):
            label = next(
                (f for f in ("class", "name", "label", "sku", "model") if f in value[0]), None
            )
            if label is not None:
                tables[name] = {
                    str(r[label]): {k: v for k, v in r.items() if k != label} for r in value
                }
    return tables


def compare_table(runs: Sequence[Run], params_last: bool = False) -> dict[str, dict[str, Any]]:
    """``{metric: {run label: value}}`` for every scalar metric and parameter of the runs.

    Parameters come first, or last with ``params_last`` (the page: scores before settings).
    """
    flats = {f"#{r.id}": flatten_metrics(r.metrics) for r in runs}
    params = {f"#{r.id}": {f"param.{k}": v for k, v in (r.params or {}).items()} for r in runs}
    keys: list[str] = []
    for source in (flats, params) if params_last else (params, flats):
        for flat in source.values():
            keys.extend(k for k in flat if k not in keys)
    return {k: {label: {**params[label], **flats[label]}.get(k) for label in flats} for k in keys}


def format_value(value: Any) -> str:
    """A metric or parameter as the comparison shows it: floats to 4 significant digits."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def run_pictures(cat: Catalogue, run: Run) -> list[Path]:
    """Pictures a run left in its folder (confusion matrices, curves), sorted by name."""
    folders = [run_dir(cat, run.id)]
    if run.bundle_path:
        bundle = cat.data_dir / run.bundle_path
        folders.append(bundle if bundle.is_dir() else bundle.parent)
    seen: dict[Path, None] = {}
    for folder in folders:
        if folder.is_dir():
            for path in sorted(folder.rglob("*")):
                if path.suffix.lower() in PICTURE_SUFFIXES and path.is_file():
                    seen.setdefault(path.resolve(), None)
    return sorted(seen, key=lambda p: p.name)


# --- other background jobs: suggestions, near-duplicates ----------------------------------

_COUNT = re.compile(r"(\d+)\s*/\s*(\d+)")
_PERCENT = re.compile(r"(\d+(?:\.\d+)?)\s*%")

SUGGEST = "suggest"
DUPLICATES = "duplicates"
ISSUES = "issues"
JOB_COMMANDS: dict[str, tuple[str, ...]] = {
    SUGGEST: ("training", "suggest", "--labelled"),  # labelled too: Review's "model disagrees"
    DUPLICATES: ("db", "duplicates", "--apply"),
    ISSUES: ("training", "issues", "--limit", "0"),  # saves the ranking, prints none
}
"""The background jobs the app starts besides training runs: name -> ``python -m`` args."""
JOB_TITLES = {
    SUGGEST: "Refreshing suggestions",
    DUPLICATES: "Finding near-duplicates",
    ISSUES: "Ranking label issues",
}


@dataclass(frozen=True)
class Job:
    """A ``python -m ...`` process started from the app (one per job name and data folder)."""

    pid: int
    started_at: str
    log: str
    args: tuple[str, ...] = ()

    def to_json(self) -> str:
        return json.dumps(asdict(self))


@dataclass(frozen=True)
class JobStatus:
    running: bool
    fraction: float | None
    last_line: str
    log_tail: str
    job: Job


def _job_state(cat: Catalogue, name: str) -> Path:
    return cat.data_dir / "jobs" / f"{name}.json"


def read_job(cat: Catalogue, name: str) -> Job | None:
    try:
        raw = json.loads(_job_state(cat, name).read_text())
        return Job(raw["pid"], raw["started_at"], raw["log"], tuple(raw.get("args", ())))
    except (FileNotFoundError, KeyError, TypeError, ValueError):
        return None


def start_job(cat: Catalogue, name: str, extra: Sequence[str] = ()) -> Job:
    """Start the background job ``name`` of :data:`JOB_COMMANDS` (one at a time per folder)."""
    if name not in JOB_COMMANDS:
        raise JobError(f"unknown job {name!r} (use one of {', '.join(JOB_COMMANDS)})")
    current = read_job(cat, name)
    if current is not None and pid_alive(current.pid):
        title = JOB_TITLES.get(name, name)
        raise JobError(f"{title} is already under way (pid {current.pid}); wait for it to end")
    args = (*JOB_COMMANDS[name], *extra)
    stamp = utcnow().strftime("%Y%m%d-%H%M%S")
    log = cat.data_dir / "jobs" / f"{name}-{stamp}.log"
    try:
        pid = spawn(cat, args, log)
    except OSError as exc:
        raise JobError(f"could not start {name}: {exc}") from exc
    job = Job(pid, utcnow().isoformat(timespec="seconds"), str(log), args)
    state = _job_state(cat, name)
    tmp = state.with_suffix(".tmp")
    tmp.write_text(job.to_json())
    tmp.replace(state)
    return job


def job_status(cat: Catalogue, name: str) -> JobStatus | None:
    """Where the newest job ``name`` stands (None if there never was one)."""
    job = read_job(cat, name)
    if job is None:
        return None
    text = tail(Path(job.log), max_lines=40)
    last = next((line for line in reversed(text.splitlines()) if line.strip()), "")
    return JobStatus(pid_alive(job.pid), parse_progress(text), last, text, job)


def job_running(cat: Catalogue, name: str) -> bool:
    """Whether job ``name`` runs now (its process is alive; its log is not read)."""
    job = read_job(cat, name)
    return job is not None and pid_alive(job.pid)


def started_text(job: Job) -> str:
    """'2026-12-02 21:37 UTC' from the job's ISO time stamp."""
    try:
        return datetime.fromisoformat(job.started_at).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return job.started_at


def start_suggest(cat: Catalogue, run_id: int | None = None) -> Job:
    """Start refreshing suggestions (one refresh at a time per data folder)."""
    return start_job(cat, SUGGEST, ("--run", str(run_id)) if run_id is not None else ())


def suggest_status(cat: Catalogue) -> JobStatus | None:
    """Where the newest suggestion refresh stands (None if there never was one)."""
    return job_status(cat, SUGGEST)


def parse_progress(text: str) -> float | None:
    """The newest progress in a log, 0..1: ``[ 45.0%] ...`` lines (skulab's CLIs), tqdm bars
    or ``done/total`` counters; None when there is none."""
    for line in reversed(text.splitlines()):
        percent = _PERCENT.findall(line)
        if percent:
            return min(1.0, float(percent[0]) / 100)
        count = _COUNT.findall(line)
        if count:
            done, total = (int(v) for v in count[-1])
            return min(1.0, done / total) if total else None
    return None
