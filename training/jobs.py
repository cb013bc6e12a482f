"""Training runs as records: create, execute (with progress in the ``runs`` row), promote.

The Streamlit app creates a queued run with :func:`create_run` and starts
``python -m training fit --run-id N`` in a separate process; the command line calls
:func:`run_fit`, which does both in this process. A failed run records why and leaves
the active model alone. The first run to succeed on a catalogue with no active model
becomes the active one; after that only a promotion changes it.
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from collections.abc import Callable
from typing import Any

from sqlalchemy import select, update

from db import Catalogue
from db.models import Run, utcnow
from db.runs import RunBusy, acquire, clear_bundle, reap_stale_runs
from training.fit import FitParams, Progress, train

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 0.5
"""Progress is written to the run row at most this often (it takes the write lock)."""


def create_run(cat: Catalogue, params: FitParams | dict[str, Any], name: str | None = None) -> int:
    """A queued run with these parameters; returns its id."""
    p = params if isinstance(params, FitParams) else FitParams.from_dict(params)
    with cat.write() as s:
        run = Run(name=name, status="queued", progress=0.0, params=p.to_dict(), message="queued")
        s.add(run)
        s.flush()
        return run.id


def _db_progress(cat: Catalogue, run_id: int, callback: Progress | None) -> Progress:
    last = [0.0]

    def report(fraction: float, message: str) -> None:
        if callback:
            callback(fraction, message)
        now = time.monotonic()
        if now - last[0] >= PROGRESS_EVERY_S or fraction >= 1.0:
            last[0] = now
            with cat.write() as s:
                s.execute(
                    update(Run)
                    .where(Run.id == run_id)
                    .values(progress=round(fraction, 4), message=message[:500])
                )

    return report


def execute_run(
    cat: Catalogue, run_id: int, progress: Progress | None = None, promote: bool = False
) -> int:
    """Run the queued run ``run_id`` to the end; returns ``run_id`` (its status says how it went).

    The process holds the run's lock (:mod:`db.runs`) from taking the run until it has
    written how it ended, so that any other command can tell a run whose process died.
    Runs left "running" by a dead process are marked failed first.
    """
    reap_stale_runs(cat)
    try:
        lock = acquire(cat, run_id)
    except RunBusy as exc:
        raise ValueError(str(exc)) from None
    try:
        return _execute_locked(cat, run_id, progress, promote)
    finally:
        lock.release()


def _execute_locked(cat: Catalogue, run_id: int, progress: Progress | None, promote: bool) -> int:
    with cat.write() as s:
        run = s.get(Run, run_id)
        if run is None:
            raise LookupError(f"no run {run_id} in {cat.data_dir}")
        if run.status != "queued":
            raise ValueError(f"run {run_id} is {run.status}, not queued")
        run.status = "running"
        run.started_at = utcnow()
        run.pid = os.getpid()
        run.message = "starting"
        params = FitParams.from_dict(run.params or {})
    out_dir = cat.runs_dir / str(run_id)
    report = _db_progress(cat, run_id, progress)
    try:
        result = train(cat, params, out_dir, progress=report, run_id=run_id)
    except Exception as exc:  # record any failure in the run, then re-raise nothing
        log.exception("run %s failed", run_id)
        clear_bundle(out_dir)
        with cat.write() as s:
            run = s.get(Run, run_id)
            assert run is not None
            run.status = "failed"
            run.error = f"{type(exc).__name__}: {exc}"
            run.message = traceback.format_exc(limit=5)[-2000:]
            run.finished_at = utcnow()
        return run_id
    with cat.write() as s:
        run = s.get(Run, run_id)
        assert run is not None
        run.status = "succeeded"
        run.progress = 1.0
        run.message = "done"
        run.metrics = result.metrics
        run.fingerprint = result.fingerprint
        run.bundle_path = out_dir.relative_to(cat.data_dir).as_posix()
        run.finished_at = utcnow()
    if promote:
        promote_run(cat, run_id)
    else:
        promote_if_none_active(cat, run_id)
    return run_id


def run_fit(
    cat: Catalogue,
    params: FitParams | dict[str, Any] | None = None,
    progress: Progress | None = None,
    promote: bool = False,
    name: str | None = None,
) -> int:
    """Create a run and execute it here; returns the run id (see its status)."""
    run_id = create_run(cat, params or FitParams(), name=name)
    return execute_run(cat, run_id, progress=progress, promote=promote)


def promote_run(cat: Catalogue, run_id: int) -> None:
    """Make a succeeded run the active model (and no other)."""
    reap_stale_runs(cat)
    with cat.write() as s:
        run = s.get(Run, run_id)
        if run is None:
            raise LookupError(f"no run {run_id} in {cat.data_dir}")
        if not _servable(run):
            raise ValueError(f"run {run_id} is {run.status}: only a succeeded run can be active")
        s.execute(update(Run).where(Run.id != run_id).values(active=False))
        run.active = True


def promote_if_none_active(cat: Catalogue, run_id: int) -> bool:
    """Make succeeded run ``run_id`` active if no run is (the catalogue's first model), so
    that ``fit`` then ``predict`` works without ``--promote``; True if it did. A catalogue
    that has an active model keeps it until a run is promoted."""
    with cat.write() as s:
        if s.scalar(select(Run.id).where(Run.active.is_(True)).limit(1)) is not None:
            return False
        run = s.get(Run, run_id)
        if run is None or not _servable(run):
            return False
        run.active = True
        return True


def _servable(run: Run) -> bool:
    """A run that may be the active model: it succeeded and has its bundle."""
    return run.status == "succeeded" and bool(run.bundle_path)


def run_status(cat: Catalogue, run_id: int) -> dict[str, Any]:
    with cat.read() as s:
        run = s.get(Run, run_id)
        if run is None:
            raise LookupError(f"no run {run_id} in {cat.data_dir}")
        return {
            "id": run.id,
            "status": run.status,
            "progress": run.progress,
            "message": run.message,
            "error": run.error,
            "bundle_path": run.bundle_path,
            "active": run.active,
        }


PrintProgress = Callable[[float, str], None]


def print_progress(fraction: float, message: str) -> None:
    print(f"[{fraction * 100:5.1f}%] {message}", flush=True)


def _bundle_data(cat: Catalogue, bundle: Any, examples: list[Any], progress: Progress) -> Any:
    """Embeddings of ``examples`` as ``bundle`` sees them (cache, or its fine-tuned backbone)."""
    from inference.predictor import load_backbone
    from training.fit import embed_examples

    params = FitParams.from_dict(bundle.meta.get("params") or {"backbone": bundle.backbone})
    params.flip_augment = bundle.preprocessing.tta_flip
    backbone = load_backbone(bundle) if bundle.backbone_state is not None else None
    data, _notes = embed_examples(cat, examples, params, bundle.preprocessing, progress, backbone)
    return data


def evaluate_run(cat: Catalogue, run_id: int, progress: Progress | None = None) -> dict[str, Any]:
    """Evaluate run ``run_id``'s bundle on today's val and test; store the metrics and pictures."""
    from inference.bundle import load_bundle
    from inference.predictor import run_bundle_dir
    from training.dataset import labelled_examples
    from training.evaluate import write_pictures
    from training.fit import evaluate_splits

    say = progress or (lambda _f, _m: None)
    reap_stale_runs(cat)
    with cat.read() as s:
        run = s.get(Run, run_id)
        if run is None:
            raise LookupError(f"no run {run_id} in {cat.data_dir}")
        if run.status in ("queued", "running"):
            raise ValueError(
                f"run {run_id} is still {run.status}: evaluate it once it has finished"
            )
        if run.status != "succeeded" or not run.bundle_path:
            raise ValueError(f"run {run_id} {run.status}: it has no model bundle to evaluate")
    folder = run_bundle_dir(cat, run_id)
    if not (folder / "bundle.json").is_file():
        raise LookupError(f"run {run_id}'s model bundle is missing ({folder})")
    bundle = load_bundle(folder)
    examples = [e for e in labelled_examples(cat) if e.split in ("val", "test")]
    data = _bundle_data(cat, bundle, examples, lambda f, m: say(0.8 * f, m))
    say(0.85, "evaluating")
    by_id = {e.image_id: e for e in examples}
    result = evaluate_splits(bundle.cascade, data, by_id, bundle.preprocessing)
    with cat.write() as s:
        run = s.get(Run, run_id)
        assert run is not None
        metrics = dict(run.metrics or {})
        metrics.update(result)
        metrics["evaluated_at"] = utcnow().isoformat()
        metrics["pictures"] = write_pictures(metrics, folder)
        run.metrics = metrics
    say(1.0, "done")
    return metrics
