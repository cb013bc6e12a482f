"""Usage of the prediction API: recorded off the request path, summarised for the app.

:class:`UsageRecorder` takes one :class:`UsageRow` per request into an in-memory queue and a
background thread writes them to the ``api_requests`` table in batches, so that a slow or
locked database never slows a prediction. :func:`usage_summary` reads them back for the
labeller's Overview (requests, errors, latency, answers by class).
"""

from __future__ import annotations

import logging
import math
import queue
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from db.catalogue import Catalogue
from db.models import ApiRequest, utcnow

log = logging.getLogger(__name__)

UNKNOWN = "unknown"
"""What the API answers (and records) for a stage whose confidence is below its threshold."""

PREDICT_ENDPOINTS = ("/v1/predict", "/v1/predict/batch")


@dataclass(frozen=True)
class UsageRow:
    """One request to the API, as it goes into the ``api_requests`` table."""

    endpoint: str
    status_code: int
    latency_ms: float
    run_id: int | None = None
    model_name: str | None = None
    sku: str | None = None
    n_images: int = 0
    error: str | None = None
    at: datetime = field(default_factory=utcnow)


_Marker = threading.Event
"""A queue item that is not a row: set once what came before it is written (flush)."""
_STOP = threading.Event()
"""The marker that also stops the writer thread."""


class UsageRecorder:
    """A queue of :class:`UsageRow` drained into the database by one background thread.

    ``record`` never blocks and never touches the database: when the queue is full (the
    database has been unreachable for a long time) the row is dropped and counted in
    ``dropped``. Rows whose write failed are kept and retried with the next batch, up to
    ``max_queue`` of them.
    """

    def __init__(
        self,
        catalogue: Catalogue,
        *,
        batch_size: int = 500,
        interval_s: float = 0.5,
        max_queue: int = 100_000,
    ):
        self._cat = catalogue
        self._batch_size = batch_size
        self._interval_s = interval_s
        self._max_queue = max_queue
        self._queue: queue.Queue[UsageRow | _Marker] = queue.Queue(maxsize=max_queue)
        self._retry: list[UsageRow] = []
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.dropped = 0
        self.written = 0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="skulab-usage", daemon=True)
            self._thread.start()

    def record(self, row: UsageRow) -> None:
        try:
            self._queue.put_nowait(row)
        except queue.Full:
            with self._lock:
                self.dropped += 1

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every row recorded so far is written; False on timeout."""
        if self._thread is None:
            return False
        done = threading.Event()
        try:
            self._queue.put(done, timeout=timeout_s)
        except queue.Full:
            return False
        return done.wait(timeout_s)

    def close(self, timeout_s: float = 10.0) -> None:
        """Write what is queued and stop the thread."""
        if self._thread is None:
            return
        try:
            self._queue.put(_STOP, timeout=timeout_s)
        except queue.Full:
            log.error(
                "API usage: the writer is stuck; %d queued records are lost", self._queue.qsize()
            )
        self._thread.join(timeout_s)
        self._thread = None
        if self.dropped:
            log.warning("API usage: %d request records were dropped", self.dropped)

    def _take(self) -> tuple[list[UsageRow], _Marker | None]:
        """Wait for a first item, then take what else is queued up to a marker."""
        rows: list[UsageRow] = []
        try:
            item = self._queue.get(timeout=self._interval_s)
        except queue.Empty:
            return rows, None
        while True:
            if not isinstance(item, UsageRow):
                return rows, item
            rows.append(item)
            if len(rows) >= self._batch_size:
                return rows, None
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return rows, None

    def _run(self) -> None:
        while True:
            rows, marker = self._take()
            self._write(self._retry + rows)
            if marker is _STOP:
                return
            if marker is not None:
                marker.set()

    def _write(self, rows: list[UsageRow]) -> None:
        if not rows:
            return
        try:
            write_usage(self._cat, rows)
        except Exception:
            log.exception("API usage: writing %d request records failed; will retry", len(rows))
            keep = rows[-self._max_queue :]
            with self._lock:
                self.dropped += len(rows) - len(keep)
            self._retry = keep
        else:
            self._retry = []
            with self._lock:
                self.written += len(rows)


def write_usage(catalogue: Catalogue, rows: Sequence[UsageRow]) -> None:
    """Insert request records in one short write transaction."""
    with catalogue.write() as session:
        session.execute(insert(ApiRequest), [asdict(r) for r in rows])


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (q in 0..100)."""
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return float(sorted_values[rank - 1])


def _naive_utc(moment: datetime) -> datetime:
    """The catalogue stores naive UTC times: convert an aware ``since`` to that."""
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


def _counts(counter: Counter[Any], top: int) -> list[dict[str, Any]]:
    return [{"name": name, "count": n} for name, n in counter.most_common(top)]


def usage_summary(session: Session, since: datetime, *, top: int = 20) -> dict[str, Any]:
    """What the prediction API did since ``since`` (naive UTC, or aware), for the app.

    Keys: ``since``; ``requests`` (all recorded requests), ``predict_requests``,
    ``images`` (images answered), ``errors`` (4xx/5xx), ``error_rate``; ``by_status``,
    ``by_endpoint``, ``by_error`` (error codes), ``by_run`` (run id -> answered requests);
    ``latency_ms`` (count, mean, p50, p95, p99, max of the successful predictions);
    ``models`` and ``skus`` (the top answers of single-image predictions, ``unknown``
    included, as ``[{"name", "count"}]``), ``unknown_model_rate``, ``unknown_sku_rate``;
    ``per_day`` (``[{"day": "YYYY-MM-DD", "requests", "errors"}]``).
    """
    start = _naive_utc(since)
    rows = session.execute(
        select(
            ApiRequest.at,
            ApiRequest.endpoint,
            ApiRequest.status_code,
            ApiRequest.latency_ms,
            ApiRequest.run_id,
            ApiRequest.model_name,
            ApiRequest.sku,
            ApiRequest.n_images,
            ApiRequest.error,
        ).where(ApiRequest.at >= start)
    ).all()
    by_status: Counter[str] = Counter()
    by_endpoint: Counter[str] = Counter()
    by_error: Counter[str] = Counter()
    by_run: Counter[str] = Counter()
    models: Counter[str] = Counter()
    skus: Counter[str] = Counter()
    per_day: dict[str, Counter[str]] = {}
    latencies: list[float] = []
    images = predict_requests = errors = answered_single = 0
    for r in rows:
        by_status[str(r.status_code)] += 1
        by_endpoint[r.endpoint] += 1
        day = per_day.setdefault(r.at.date().isoformat(), Counter())
        day["requests"] += 1
        failed = r.status_code >= 400
        if failed:
            errors += 1
            day["errors"] += 1
            by_error[r.error or str(r.status_code)] += 1
        if r.endpoint not in PREDICT_ENDPOINTS:
            continue
        predict_requests += 1
        if failed:
            continue
        images += r.n_images
        latencies.append(r.latency_ms)
        if r.run_id is not None:
            by_run[str(r.run_id)] += 1
        if r.endpoint == "/v1/predict" and r.model_name is not None:
            answered_single += 1
            models[r.model_name] += 1
            skus[r.sku or UNKNOWN] += 1
    latencies.sort()
    latency: dict[str, float | int | None] = {"count": len(latencies)}
    for key, q in (("p50", 50), ("p95", 95), ("p99", 99)):
        latency[key] = _percentile(latencies, q) if latencies else None
    latency["mean"] = sum(latencies) / len(latencies) if latencies else None
    latency["max"] = latencies[-1] if latencies else None
    return {
        "since": start.isoformat(),
        "requests": len(rows),
        "predict_requests": predict_requests,
        "images": images,
        "errors": errors,
        "error_rate": errors / len(rows) if rows else 0.0,
        "by_status": dict(by_status),
        "by_endpoint": dict(by_endpoint),
        "by_error": dict(by_error),
        "by_run": dict(by_run),
        "latency_ms": latency,
        "models": _counts(models, top),
        "skus": _counts(skus, top),
        "unknown_model_rate": models[UNKNOWN] / answered_single if answered_single else 0.0,
        "unknown_sku_rate": skus[UNKNOWN] / answered_single if answered_single else 0.0,
        "per_day": [
            {"day": d, "requests": c["requests"], "errors": c["errors"]}
            for d, c in sorted(per_day.items())
        ],
    }
