"""Fixtures for the app's tests: demo data folders, a fake active run, the app in a browser.

- ``app_data``: a private copy of the small demo catalogue with ``SKULAB_DATA`` pointing at it,
  and an active run whose predictions (suggestions) cover every unlabelled image.
- ``app_server``: ``streamlit run labeller/app.py`` on a free port of 127.0.0.1, on such a
  folder; yields its URL.
- ``browser_page``: a Playwright page in Debian's Chromium (skipped when it is missing).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from db import Catalogue
from db.models import Image, ImageSource, Prediction, Run, Sku

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DEMO_PER_COLOURWAY = 4
SCREENSHOTS = ROOT / "artifacts" / "screenshots"


@pytest.fixture(autouse=True)
def _keep_main_module() -> Iterator[None]:
    """Put back ``sys.modules["__main__"]``, which Streamlit's AppTest replaces with its
    temporary script and leaves there: a later test that starts processes with
    multiprocessing's spawn would make every child run that script, and fail."""
    main = sys.modules["__main__"]
    yield
    sys.modules["__main__"] = main


def add_fake_run(cat: Catalogue, name: str = "fake run") -> int:
    """An active, succeeded run with a prediction for every unlabelled image.

    The prediction is the image's weak label where that SKU exists (else the first SKU),
    with confidences that vary with the image id, so the 'most uncertain' order is defined.
    """
    with cat.write() as s:
        run = Run(
            name=name,
            status="succeeded",
            progress=1.0,
            active=True,
            metrics={"test": {"model_accuracy": 0.93, "sku_accuracy": 0.81}},
        )
        s.add(run)
        s.flush()
        skus = {k.style_code: k for k in s.scalars(select(Sku))}
        fallback = next(iter(skus.values()))
        rows = s.execute(
            select(Image.id, ImageSource.weak_sku)
            .join(ImageSource, ImageSource.image_id == Image.id)
            .where(Image.status == "new")
            .order_by(Image.id)
        ).all()
        seen: set[int] = set()
        for image_id, weak_sku in rows:
            if image_id in seen:
                continue
            seen.add(image_id)
            sku = skus.get(weak_sku or "", fallback)
            conf = 0.35 + (image_id * 37 % 60) / 100
            s.add(
                Prediction(
                    image_id=image_id,
                    run_id=run.id,
                    model_name=sku.model.name,
                    model_conf=min(conf + 0.05, 0.99),
                    sku=sku.style_code,
                    sku_conf=conf,
                    margin=conf - 0.3,
                    top={},
                )
            )
        return run.id


@pytest.fixture
def app_data(
    demo_template: Callable[[int, int], Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Catalogue]:
    """A private demo catalogue (4 images per colourway) with a fake active run; SKULAB_DATA set."""
    folder = tmp_path / "data"
    shutil.copytree(demo_template(DEMO_PER_COLOURWAY, 0), folder)
    monkeypatch.setenv("SKULAB_DATA", str(folder))
    cat = Catalogue(folder)
    cat.migrate()
    add_fake_run(cat)
    yield cat
    cat.dispose()


@pytest.fixture
def empty_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "empty"
    folder.mkdir()
    monkeypatch.setenv("SKULAB_DATA", str(folder))
    return folder


# --- the app in a real browser -------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {proc.returncode} before serving")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"streamlit did not answer {url}/_stcore/health within {timeout:.0f} s")


@pytest.fixture
def app_server(app_data: Catalogue, tmp_path: Path) -> Iterator[str]:
    """``streamlit run labeller/app.py`` on the ``app_data`` folder; yields its URL."""
    port = free_port()
    env = {
        **os.environ,
        "SKULAB_DATA": str(app_data.data_dir),
        "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
    }
    log = (tmp_path / "streamlit.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(ROOT / "labeller" / "app.py"),
            "--server.headless",
            "true",
            "--server.port",
            str(port),
            "--server.address",
            "127.0.0.1",
            "--server.fileWatcherType",
            "none",
            "--browser.gatherUsageStats",
            "false",
        ],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
def browser() -> Iterator[Any]:
    """Debian's Chromium, driven by Playwright (a test may open several contexts in it)."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install it with `apt-get install -y chromium`")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def new_page(browser: Any, timeout_ms: int = 30_000) -> Any:
    """A page in a context of its own (its own cookies and session), 1600×1000."""
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(timeout_ms)
    return page


@pytest.fixture
def browser_page(browser: Any) -> Iterator[Any]:
    """A Playwright page in Debian's Chromium, 1600×1000."""
    page = new_page(browser)
    try:
        yield page
    finally:
        page.context.close()


def settled(page: Any, timeout_ms: int = 60_000) -> None:
    """Wait until the app's script run (and its fragments) ended and its pictures loaded."""
    page.wait_for_selector("h1", timeout=timeout_ms)
    page.wait_for_timeout(300)  # a click's rerun may not have started yet
    page.wait_for_selector(
        "[data-testid=stApp][data-test-script-state]:not([data-test-script-state=running])",
        timeout=timeout_ms,
    )
    page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached", timeout=timeout_ms)
    page.wait_for_selector('[data-testid="stSkeleton"]', state="detached", timeout=timeout_ms)
    page.wait_for_load_state("networkidle")
    page.wait_for_function(
        "Array.from(document.images)"
        ".every(i => i.loading === 'lazy' || (i.complete && i.naturalWidth > 0))",
        timeout=timeout_ms,
    )
    page.wait_for_timeout(300)


def screenshot(page: Any, name: str, full_page: bool = True) -> Path:
    """Save what the page shows, once it has settled, as ``artifacts/screenshots/<name>.png``."""
    settled(page)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path
