"""``python -m inference serve``: the real command, in its own process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from sqlalchemy import func, select

from db.catalogue import Catalogue
from db.models import ApiRequest
from tests.api.helpers import add_bundle_run, free_port, sneaker_jpeg, write_keys


def _serve(data: Path, *args: str, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    cmd = [sys.executable, "-m", "inference", "serve", "--data", str(data), "--port", str(port)]
    env = {**os.environ, "SKULAB_API_KEYS": ""}
    with log.open("wb") as out:
        proc = subprocess.Popen([*cmd, *args], stdout=out, stderr=subprocess.STDOUT, env=env)
    return proc, f"http://127.0.0.1:{port}"


def _wait_healthy(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"the server did not become healthy:\n{log.read_text()}")


def test_serve_command_with_keys_and_a_pinned_run(catalogue: Catalogue, tmp_path: Path) -> None:
    first = add_bundle_run(catalogue, "first", active=True)
    second = add_bundle_run(catalogue, "second", seed=1)
    keys = write_keys(tmp_path / "keys.txt", ["cli-key-0123456789"])
    log = tmp_path / "serve.log"
    proc, url = _serve(
        catalogue.data_dir, "--run", str(second), "--api-keys-file", str(keys), log=log
    )
    try:
        _wait_healthy(proc, url, log)
        jpeg = sneaker_jpeg()
        headers = {"Content-Type": "image/jpeg"}
        assert httpx.post(f"{url}/v1/predict", content=jpeg, headers=headers).status_code == 401
        r = httpx.post(
            f"{url}/v1/predict",
            content=jpeg,
            headers={**headers, "X-API-Key": "cli-key-0123456789"},
            timeout=60,
        )
        assert r.status_code == 200, r.text
        assert r.json()["run_id"] == second != first
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0, log.read_text()
    # The usage queue is written before the process exits.
    with catalogue.read() as s:
        assert s.scalar(select(func.count()).select_from(ApiRequest)) == 2


def test_serve_refuses_an_unknown_run(catalogue: Catalogue, tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    proc, _ = _serve(catalogue.data_dir, "--run", "missing", log=log)
    assert proc.wait(120) == 2
    assert "--run missing: no run with that id or name" in log.read_text()
