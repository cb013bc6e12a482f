"""The model behind the prediction API: which run serves, hot swaps, micro-batched prediction.

:class:`ModelHolder` keeps one reference to the :class:`LoadedRun` in service. A background
task polls the catalogue's active run id (one indexed query every couple of seconds); when
it changes, the new run's predictor is loaded completely in a worker thread and only then
swapped in with one assignment. A request takes the reference once at its start and keeps
it, so a swap never fails or mixes a request in flight. A run whose bundle cannot be loaded
(missing, half-copied, corrupt) is tried again once its files change, or after a while, so
repairing the bundle brings the service back without a restart.

:class:`MicroBatcher` runs the CPU-bound prediction in a small thread pool, so the event
loop never waits for it, with a bounded number of predictions at once (one per core by
default, each with one torch thread: the fastest on a CPU, see bench/bench_api.py). It can
also gather the images of concurrent requests into one forward pass (micro-batching) while
its threads are busy; that pays on a GPU, while on a CPU a batch costs more per image than
single images do, so the service's default is not to batch. What waits for the model is
bounded in pixels (decoded images are what takes the memory), not in images: sixteen 640x800
product shots weigh what one 8-megapixel phone photo does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import anyio
from PIL import Image
from sqlalchemy import select

from db.catalogue import Catalogue
from db.models import Run, utcnow
from inference.cascade import CascadePrediction

RETRY_FAILED_S = 60.0
"""A run that failed to load is tried again after this long even if its files look unchanged."""

log = logging.getLogger(__name__)


class PredictorLike(Protocol):
    def predict_images(self, images: Sequence[Image.Image]) -> list[CascadePrediction]: ...


PredictorLoader = Callable[[Path, int], Any]
"""(bundle folder, run id) -> a loaded predictor."""


class RunNotFound(LookupError):
    """A run named on the command line that the catalogue does not have or cannot serve."""


class Overloaded(RuntimeError):
    """More images are waiting for the model than the service accepts."""


def load_predictor(bundle_dir: Path, run_id: int) -> Any:
    from inference.predictor import Predictor

    return Predictor.load(bundle_dir, run_id=run_id)


@dataclass(frozen=True)
class LoadedRun:
    """A run in service: its id, its predictor and what ``GET /v1/model`` tells about it."""

    run_id: int
    predictor: PredictorLike
    info: dict[str, Any]
    loaded_at: datetime = field(default_factory=utcnow)


def _bundle_info(predictor: Any) -> dict[str, Any]:
    """Class lists, backbone and thresholds from a loaded predictor's bundle."""
    bundle = getattr(predictor, "bundle", None)
    if bundle is None:
        return {"models": [], "skus": []}
    cascade = bundle.cascade
    stage2 = cascade.stage2
    return {
        "backbone": bundle.backbone,
        "backbone_finetuned": bundle.backbone_state is not None,
        "preprocessing": bundle.preprocessing.to_dict(),
        "models": list(cascade.models),
        "skus": [
            {"style_code": s, "model": cascade.models[m]}
            for s, m in zip(cascade.skus, cascade.sku_model, strict=True)
        ],
        "thresholds": {
            "model_min_confidence": cascade.stage1.min_confidence,
            "model_min_similarity": cascade.stage1.min_similarity,
            "sku_min_confidence": None if stage2 is None else stage2.min_confidence,
            "sku_min_similarity": None if stage2 is None else stage2.min_similarity,
        },
    }


def _run_info(run: Run) -> dict[str, Any]:
    return {
        "run_id": run.id,
        "name": run.name,
        "status": run.status,
        "created_at": run.created_at,
        "trained_at": run.finished_at,
        "params": dict(run.params or {}),
        "metrics": dict(run.metrics or {}),
        "fingerprint": run.fingerprint,
    }


def resolve_run(catalogue: Catalogue, ref: str) -> int:
    """The id of the run named ``ref`` on the command line: an id, or a run name (newest)."""
    with catalogue.read() as s:
        run = s.get(Run, int(ref)) if ref.isdigit() else None
        if run is None:
            run = s.scalars(select(Run).where(Run.name == ref).order_by(Run.id.desc())).first()
        if run is None:
            raise RunNotFound(f"--run {ref}: no run with that id or name in {catalogue.data_dir}")
        if run.status != "succeeded" or not run.bundle_path:
            raise RunNotFound(f"--run {ref}: run {run.id} has no model bundle ({run.status})")
        return run.id


def bundle_signature(folder: Path | None) -> tuple[tuple[str, int, int], ...] | None:
    """Names, sizes and modification times of a bundle folder's files (None: no folder).

    Cheap (a few ``stat`` calls): it tells whether a bundle that failed to load has changed.
    """
    if folder is None:
        return None
    try:
        return tuple(
            sorted(
                (p.name, st.st_size, st.st_mtime_ns)
                for p in folder.iterdir()
                if p.is_file() and (st := p.stat())
            )
        )
    except OSError:
        return None


@dataclass
class _Failure:
    run_id: int
    signature: tuple[tuple[str, int, int], ...] | None
    at: float


class ModelHolder:
    """The run in service, and how it changes: pinned to one run, or following the active one."""

    def __init__(
        self,
        catalogue: Catalogue,
        *,
        pinned_run: int | None = None,
        loader: PredictorLoader = load_predictor,
        retry_failed_s: float = RETRY_FAILED_S,
    ):
        self.catalogue = catalogue
        self.pinned_run = pinned_run
        self._loader = loader
        self._retry_failed_s = retry_failed_s
        self.current: LoadedRun | None = None
        self._failed: _Failure | None = None
        self.last_error: str | None = None
        """Why the wanted run is not in service (None when it is)."""

    def active_run_id(self) -> int | None:
        """The active run's id: one indexed query, cheap enough to poll."""
        with self.catalogue.read() as s:
            return s.scalar(
                select(Run.id).where(Run.active.is_(True)).order_by(Run.id.desc()).limit(1)
            )

    def bundle_dir(self, run_id: int) -> Path | None:
        """The folder of run ``run_id``'s bundle, or None when the run has none."""
        with self.catalogue.read() as s:
            path = s.scalar(select(Run.bundle_path).where(Run.id == run_id))
        return self.catalogue.data_dir / path if path else None

    def load_run(self, run_id: int) -> LoadedRun:
        """Load run ``run_id`` completely (blocking: call it from a worker thread)."""
        with self.catalogue.read() as s:
            run = s.get(Run, run_id)
            if run is None or not run.bundle_path:
                raise RunNotFound(f"run {run_id} has no model bundle")
            info = _run_info(run)
            bundle_dir = self.catalogue.data_dir / run.bundle_path
        predictor = self._loader(bundle_dir, run_id)
        info.update(_bundle_info(predictor))
        return LoadedRun(run_id=run_id, predictor=predictor, info=info)

    def wanted_run(self) -> int | None:
        return self.pinned_run if self.pinned_run is not None else self.active_run_id()

    def _worth_retrying(self, failure: _Failure) -> bool:
        """A run that failed is tried again when its bundle's files changed, or after a while."""
        if time.monotonic() - failure.at >= self._retry_failed_s:
            return True
        return bundle_signature(self.bundle_dir(failure.run_id)) != failure.signature

    def refresh(self) -> bool:
        """Load and swap in the wanted run if it is not the one in service; True if swapped.

        A run that failed to load is not loaded again every poll: only once its bundle's
        files change (it was repaired or finished copying) or ``retry_failed_s`` later.
        """
        wanted = self.wanted_run()
        current = self.current
        if wanted is None or (current is not None and current.run_id == wanted):
            if self._failed is not None:  # the broken run is no longer wanted
                self._failed = None
                self.last_error = None
            return False
        failed = self._failed
        if failed is not None and failed.run_id == wanted and not self._worth_retrying(failed):
            return False
        signature = bundle_signature(self.bundle_dir(wanted))
        try:
            loaded = self.load_run(wanted)
        except Exception as exc:
            again = failed is not None and failed.run_id == wanted
            self._failed = _Failure(wanted, signature, time.monotonic())
            self.last_error = f"run {wanted} cannot be loaded: {exc}"
            if again:
                log.error("run %s still cannot be loaded: %s", wanted, exc)
            else:
                log.exception("could not load run %s; still serving %s", wanted, _run_of(current))
            return False
        self.current = loaded  # the swap: one reference, assigned once the run is loaded
        self._failed = None
        self.last_error = None
        log.info("now serving run %s (was %s)", wanted, _run_of(current))
        return True

    async def watch(self, interval_s: float) -> None:
        """Poll for a new active run forever (cancel the task to stop)."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await anyio.to_thread.run_sync(self.refresh)
            except Exception:
                log.exception("checking the active run failed; will try again")


def _run_of(loaded: LoadedRun | None) -> str:
    return "nothing" if loaded is None else f"run {loaded.run_id}"


@dataclass
class _Job:
    predictor: PredictorLike
    images: list[Image.Image]
    future: asyncio.Future[list[CascadePrediction]]


class MicroBatcher:
    """Prediction off the event loop, batching the images of concurrent requests.

    ``threads`` forward passes run at once at most; each takes every queued job up to
    ``max_images`` images (jobs of different predictors, as during a swap, go in separate
    passes). A request whose images would bring the decoded pixels waiting for the model
    over ``max_pending_pixels`` raises :class:`Overloaded`; a request that arrives when
    nothing waits is always taken, however large, so that no valid request is refused
    on an idle service.
    """

    def __init__(
        self, *, threads: int = 1, max_images: int = 16, max_pending_pixels: int = 256_000_000
    ):
        self.threads = threads
        self.max_images = max_images
        self.max_pending_pixels = max_pending_pixels
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._pending = 0
        """Pixels of the images accepted and not answered yet."""
        self._executor: ThreadPoolExecutor | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.batches = 0
        self.images = 0

    @property
    def pending_pixels(self) -> int:
        return self._pending

    def start(self) -> None:
        self._executor = ThreadPoolExecutor(self.threads, thread_name_prefix="skulab-predict")
        self._tasks = [asyncio.create_task(self._worker()) for _ in range(self.threads)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        while not self._queue.empty():
            _fail([self._queue.get_nowait()], "the service is stopping")
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    async def predict(
        self, predictor: PredictorLike, images: list[Image.Image]
    ) -> list[CascadePrediction]:
        weight = sum(im.width * im.height for im in images)
        if self._pending and self._pending + weight > self.max_pending_pixels:
            raise Overloaded(
                f"{self._pending / 1e6:.0f} megapixels of images are waiting for the model "
                f"(limit {self.max_pending_pixels / 1e6:.0f})"
            )
        future: asyncio.Future[list[CascadePrediction]] = asyncio.get_running_loop().create_future()
        self._pending += weight
        self._queue.put_nowait(_Job(predictor, images, future))
        try:
            return await future
        finally:
            self._pending -= weight

    def _take(self, first: _Job) -> list[_Job]:
        jobs, n = [first], len(first.images)
        while n < self.max_images and not self._queue.empty():
            job = self._queue.get_nowait()
            jobs.append(job)
            n += len(job.images)
        return [j for j in jobs if not j.future.done()]  # drop requests already cancelled

    async def _run(self, predictor: PredictorLike, jobs: list[_Job]) -> None:
        """One forward pass for ``jobs``; when it fails, each job alone, so only the culprit fails."""
        loop = asyncio.get_running_loop()
        images = [im for j in jobs for im in j.images]
        try:
            answers = await loop.run_in_executor(self._executor, predictor.predict_images, images)
        except Exception as exc:
            if len(jobs) > 1:
                for job in jobs:
                    await self._run(predictor, [job])
                return
            log.exception("prediction failed for a request of %d images", len(images))
            if not jobs[0].future.done():
                jobs[0].future.set_exception(exc)
            return
        self.batches += 1
        self.images += len(images)
        start = 0
        for job in jobs:
            part = answers[start : start + len(job.images)]
            start += len(job.images)
            if not job.future.done():
                job.future.set_result(part)

    async def _worker(self) -> None:
        while True:
            jobs = self._take(await self._queue.get())
            try:
                for predictor in {id(j.predictor): j.predictor for j in jobs}.values():
                    await self._run(predictor, [j for j in jobs if j.predictor is predictor])
            except asyncio.CancelledError:
                _fail(jobs, "the service is stopping")
                raise
            # let go of the pictures now: this frame would hold the last batch (gigabytes
            # after a big one) until the next request arrives
            del jobs


def _fail(jobs: list[_Job], why: str) -> None:
    for job in jobs:
        if not job.future.done():
            job.future.set_exception(Overloaded(why))
