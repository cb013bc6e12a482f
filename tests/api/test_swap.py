"""Promotion: the service switches to the newly active run without a restart or a failed request."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from db.catalogue import Catalogue
from inference.api import create_app
from inference.api_service import ModelHolder, RunNotFound, load_predictor
from tests.api.helpers import add_bundle_run, live_server, promote, settings, sneaker_jpeg

# One prediction thread that batches concurrent requests: during a swap, a batch holds
# requests for both runs, which must go to their own run.
FAST_POLL = settings(poll_s=0.1, record_usage=False, predict_threads=1, batch_images=4)


def _wait_for(check: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _health(url: str) -> httpx.Response:
    return httpx.get(f"{url}/healthz", timeout=30)


def test_promotion_under_load_fails_no_request(fresh_catalogue: Catalogue) -> None:
    cat = fresh_catalogue
    first = add_bundle_run(cat, "first", seed=0, active=True)
    second = add_bundle_run(cat, "second", seed=1)
    jpeg = sneaker_jpeg(seed=3)
    results: list[list[tuple[int, int | None, float | None]]] = [[], [], []]
    stop = threading.Event()

    def hammer(slot: int, url: str) -> None:
        with httpx.Client(base_url=url, timeout=60) as c:
            while not stop.is_set():
                if slot == 2:  # one client sends batches
                    r = c.post(
                        "/v1/predict/batch", files=[("files", ("a.jpg", jpeg, "image/jpeg"))] * 2
                    )
                else:
                    r = c.post("/v1/predict", content=jpeg, headers={"Content-Type": "image/jpeg"})
                body = r.json() if r.status_code == 200 else {}
                answer = body["predictions"][0] if slot == 2 and body else body
                conf = answer["model"]["confidence"] if answer else None
                results[slot].append((r.status_code, body.get("run_id"), conf))

    with live_server(create_app(FAST_POLL, catalogue=cat)) as srv:
        threads = [threading.Thread(target=hammer, args=(i, srv.url)) for i in range(3)]
        for t in threads:
            t.start()
        try:
            _wait_for(lambda: all(len(r) >= 3 for r in results))
            promote(cat, second)
            _wait_for(lambda: all(sum(1 for _, run, _ in r if run == second) >= 3 for r in results))
        finally:
            stop.set()
            for t in threads:
                t.join(60)

    for per_client in results:
        assert [s for s, _, _ in per_client] == [200] * len(per_client)
        runs = [run for _, run, _ in per_client]
        assert set(runs) == {first, second}
        # Requests of one client are sequential: once the new run answered, the old never does.
        switched = runs.index(second)
        assert runs[switched:] == [second] * (len(runs) - switched)
    # The new run is a different model: the same image gets a different confidence.
    by_run = {run: conf for _, run, conf in results[0]}
    assert by_run[first] != by_run[second]


def test_no_model_until_a_run_is_promoted(fresh_catalogue: Catalogue) -> None:
    cat = fresh_catalogue
    with live_server(create_app(FAST_POLL, catalogue=cat)) as srv:
        r = _health(srv.url)
        assert r.status_code == 503
        assert r.headers["retry-after"] == "1"
        assert r.json()["status"] == "no_model" and r.json()["run_id"] is None
        assert "no run is active" in r.json()["message"]
        assert httpx.head(f"{srv.url}/healthz").status_code == 503
        p = httpx.post(
            f"{srv.url}/v1/predict", content=b"x", headers={"Content-Type": "image/jpeg"}
        )
        assert p.status_code == 503
        assert p.headers["retry-after"] == "1"
        assert p.json()["error"]["code"] == "no_model"
        assert "promote" in p.json()["error"]["message"]
        run = add_bundle_run(cat, "late", active=True)
        _wait_for(lambda: _health(srv.url).status_code == 200)
        assert _health(srv.url).json() == {"status": "ok", "run_id": run, "message": None}


def test_a_broken_bundle_keeps_the_old_run_in_service(fresh_catalogue: Catalogue) -> None:
    cat = fresh_catalogue
    good = add_bundle_run(cat, "good", active=True)
    broken = add_bundle_run(cat, "broken", seed=1)
    (cat.data_dir / "runs" / str(broken) / "bundle" / "heads.safetensors").write_bytes(b"junk")
    later = add_bundle_run(cat, "later", seed=2)
    jpeg = sneaker_jpeg()
    with live_server(create_app(FAST_POLL, catalogue=cat)) as srv:
        app_holder = srv.server.config.app.state.service.holder
        promote(cat, broken)
        _wait_for(lambda: app_holder.last_error is not None)
        assert f"run {broken}" in app_holder.last_error
        r = httpx.post(
            f"{srv.url}/v1/predict", content=jpeg, headers={"Content-Type": "image/jpeg"}
        )
        assert r.status_code == 200
        assert r.json()["run_id"] == good
        health = _health(srv.url).json()  # still healthy, and it says why the old run answers
        assert health["run_id"] == good and f"run {broken} cannot be loaded" in health["message"]
        promote(cat, later)
        _wait_for(lambda: _health(srv.url).json()["run_id"] == later)
        assert _health(srv.url).json()["message"] is None


def test_a_missing_bundle_at_start_is_served_once_restored(fresh_catalogue: Catalogue) -> None:
    """The active run's folder is gone when the service starts (a restore in progress, a
    wrong volume): it answers 503 saying why, and serves the run as soon as the folder is
    back, without a restart."""
    cat = fresh_catalogue
    run = add_bundle_run(cat, "restored", active=True)
    folder = cat.data_dir / "runs" / str(run)
    away = folder.with_name(f"{run}.away")
    folder.rename(away)
    with live_server(create_app(FAST_POLL, catalogue=cat)) as srv:
        r = _health(srv.url)
        assert r.status_code == 503
        assert f"run {run} cannot be loaded" in r.json()["message"]
        p = httpx.post(
            f"{srv.url}/v1/predict", content=b"x", headers={"Content-Type": "image/jpeg"}
        )
        assert p.status_code == 503
        assert "repair the bundle or promote another run" in p.json()["error"]["message"]
        away.rename(folder)
        _wait_for(lambda: _health(srv.url).status_code == 200)
        assert _health(srv.url).json() == {"status": "ok", "run_id": run, "message": None}


def test_a_corrupt_bundle_is_tried_again_only_when_it_changes(fresh_catalogue: Catalogue) -> None:
    """A broken bundle is not reloaded every poll, but a repaired one is picked up."""
    cat = fresh_catalogue
    run = add_bundle_run(cat, "corrupt", active=True)
    heads = cat.data_dir / "runs" / str(run) / "bundle" / "heads.safetensors"
    good = heads.read_bytes()
    heads.write_bytes(b"junk")
    calls: list[int] = []

    def loader(bundle_dir: Path, run_id: int) -> object:
        calls.append(run_id)
        return load_predictor(bundle_dir, run_id)

    holder = ModelHolder(cat, loader=loader, retry_failed_s=3600)
    assert holder.refresh() is False and calls == [run]
    assert holder.refresh() is False and calls == [run]  # unchanged: not loaded again
    heads.write_bytes(good[:-10])  # a half-copied repair: changed, tried, still broken
    assert holder.refresh() is False and calls == [run, run]
    assert holder.refresh() is False and calls == [run, run]
    heads.write_bytes(good)
    assert holder.refresh() is True and calls == [run, run, run]
    assert holder.current is not None and holder.current.run_id == run
    assert holder.last_error is None


def test_a_failed_run_is_retried_after_a_while(fresh_catalogue: Catalogue) -> None:
    cat = fresh_catalogue
    run = add_bundle_run(cat, "flaky", active=True)
    failures = [OSError("the volume is not mounted yet")]

    def loader(bundle_dir: Path, run_id: int) -> object:
        if failures:
            raise failures.pop()
        return load_predictor(bundle_dir, run_id)

    holder = ModelHolder(cat, loader=loader, retry_failed_s=0.0)
    assert holder.refresh() is False
    assert holder.last_error == f"run {run} cannot be loaded: the volume is not mounted yet"
    assert holder.refresh() is True


def test_a_pinned_run_does_not_follow_promotion(fresh_catalogue: Catalogue) -> None:
    cat = fresh_catalogue
    first = add_bundle_run(cat, "first", active=True)
    second = add_bundle_run(cat, "second", seed=1)
    app = create_app(settings(run="first", poll_s=0.1, record_usage=False), catalogue=cat)
    with live_server(app) as srv:
        promote(cat, second)
        time.sleep(0.5)  # several poll intervals
        info = httpx.get(f"{srv.url}/v1/model", timeout=30).json()
        assert info["run_id"] == first
        assert info["pinned"] is True
        assert info["active"] is False


def test_an_unknown_run_is_refused(fresh_catalogue: Catalogue) -> None:
    add_bundle_run(fresh_catalogue, "first")
    with pytest.raises(RunNotFound, match="--run nope"):
        create_app(settings(run="nope"), catalogue=fresh_catalogue)
    with pytest.raises(RunNotFound, match="--run 7"):
        create_app(settings(run="7"), catalogue=fresh_catalogue)
