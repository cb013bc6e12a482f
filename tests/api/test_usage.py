"""Usage: every API request lands in the api_requests table, off the request path, and
usage_summary reads it back for the app."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import select, text

from db.catalogue import Catalogue
from db.models import ApiRequest
from inference.api import create_app
from inference.api_usage import UsageRecorder, UsageRow, usage_summary, write_usage
from tests.api.helpers import add_bundle_run, live_server, settings, sneaker_jpeg


def test_requests_are_recorded_with_their_answers(fresh_catalogue: Catalogue) -> None:
    cat = fresh_catalogue
    run = add_bundle_run(cat, "first", active=True)
    jpeg = sneaker_jpeg()
    app = create_app(settings(), catalogue=cat)
    with live_server(app) as srv, httpx.Client(base_url=srv.url, timeout=60) as c:
        ok = c.post("/v1/predict", content=jpeg, headers={"Content-Type": "image/jpeg"}).json()
        c.post("/v1/predict", content=b"nope", headers={"Content-Type": "image/jpeg"})
        c.post("/v1/predict/batch", files=[("files", ("a.jpg", jpeg, "image/jpeg"))] * 3)
        c.get("/v1/model")
        c.get("/healthz")
        c.get("/openapi.json")
        assert app.state.service.recorder.flush()
    with cat.read() as s:
        rows = s.scalars(select(ApiRequest).order_by(ApiRequest.id)).all()
    assert [(r.endpoint, r.status_code) for r in rows] == [
        ("/v1/predict", 200),
        ("/v1/predict", 400),
        ("/v1/predict/batch", 200),
        ("/v1/model", 200),
    ]
    single, bad, batch, model = rows
    assert (single.run_id, single.n_images, single.error) == (run, 1, None)
    assert single.model_name == ok["model"]["name"]
    assert single.sku == ok["sku"]["name"]
    assert single.latency_ms > 0
    assert (bad.error, bad.n_images, bad.model_name) == ("not_an_image", 0, None)
    assert (batch.run_id, batch.n_images) == (run, 3)
    assert model.run_id == run


def _row(endpoint: str, status: int, latency: float, **kw: object) -> UsageRow:
    return UsageRow(endpoint=endpoint, status_code=status, latency_ms=latency, **kw)  # type: ignore[arg-type]


def test_usage_summary(catalogue: Catalogue) -> None:
    now = datetime.now(UTC).replace(tzinfo=None)
    old = now - timedelta(days=10)
    rows = [
        _row("/v1/predict", 200, float(ms), run_id=1, n_images=1, model_name=m, sku=s, at=now)
        for ms, m, s in [
            (10, "Dunk Low", "DD1391-100"),
            (20, "Dunk Low", "DD1391-100"),
            (30, "Dunk Low", "unknown"),
            (40, "unknown", "unknown"),
        ]
    ]
    rows += [
        _row("/v1/predict/batch", 200, 100.0, run_id=2, n_images=5, at=now),
        _row("/v1/predict", 400, 1.0, error="not_an_image", at=now),
        _row("/v1/model", 401, 0.5, error="unauthorized", at=now),
        _row("/v1/predict", 200, 999.0, run_id=1, n_images=1, model_name="Old", at=old),
    ]
    write_usage(catalogue, rows)
    with catalogue.read() as s:
        summary = usage_summary(s, now - timedelta(days=1))
    assert summary["requests"] == 7
    assert summary["predict_requests"] == 6
    assert summary["images"] == 9
    assert summary["errors"] == 2
    assert summary["by_status"] == {"200": 5, "400": 1, "401": 1}
    assert summary["by_error"] == {"not_an_image": 1, "unauthorized": 1}
    assert summary["by_run"] == {"1": 4, "2": 1}
    assert summary["latency_ms"]["count"] == 5
    assert summary["latency_ms"]["p50"] == 30.0
    assert summary["latency_ms"]["p99"] == 100.0
    assert summary["latency_ms"]["max"] == 100.0
    assert summary["models"] == [
        {"name": "Dunk Low", "count": 3},
        {"name": "unknown", "count": 1},
    ]
    assert {(d["name"], d["count"]) for d in summary["skus"]} == {
        ("DD1391-100", 2),
        ("unknown", 2),
    }
    assert summary["unknown_model_rate"] == 0.25
    assert summary["unknown_sku_rate"] == 0.5
    assert summary["per_day"] == [{"day": now.date().isoformat(), "requests": 7, "errors": 2}]
    # An aware ``since`` means the same moment; everything since long ago includes the old row.
    with catalogue.read() as s:
        aware = usage_summary(s, (now - timedelta(days=1)).replace(tzinfo=UTC))
        everything = usage_summary(s, old - timedelta(seconds=1))
    assert aware["requests"] == 7
    assert everything["requests"] == 8
    with catalogue.read() as s:
        empty = usage_summary(s, now + timedelta(days=1))
    assert empty["requests"] == 0 and empty["latency_ms"]["p50"] is None


def test_recorder_keeps_rows_while_the_database_fails(catalogue: Catalogue) -> None:
    recorder = UsageRecorder(catalogue, interval_s=0.05)
    recorder.start()
    with catalogue.engine.begin() as conn:
        conn.execute(text("ALTER TABLE api_requests RENAME TO api_requests_away"))
    try:
        for i in range(5):
            recorder.record(_row("/v1/predict", 200, float(i)))
        assert recorder.flush()
        assert recorder.written == 0
    finally:
        with catalogue.engine.begin() as conn:
            conn.execute(text("ALTER TABLE api_requests_away RENAME TO api_requests"))
    recorder.record(_row("/v1/predict", 200, 5.0))
    assert recorder.flush()
    recorder.close()
    with catalogue.read() as s:
        latencies = s.scalars(select(ApiRequest.latency_ms).order_by(ApiRequest.id)).all()
    assert latencies == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert recorder.written == 6 and recorder.dropped == 0


def test_recorder_drops_rather_than_blocks_when_full(catalogue: Catalogue) -> None:
    recorder = UsageRecorder(catalogue, max_queue=3)  # not started: nothing drains the queue
    for i in range(5):
        recorder.record(_row("/v1/predict", 200, float(i)))
    assert recorder.dropped == 2
