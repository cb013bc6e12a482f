"""The Predict page in a real browser: ``streamlit run labeller/app.py`` and Chromium.

The app runs on a copy of the trained demo catalogue (one succeeded, active run), so Predict
loads a real bundle. Screenshots of the Splits, Train and Predict pages are saved to
``artifacts/screenshots/``.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image as PILImage
from playwright.sync_api import expect

from db import Catalogue
from db.demo import demo_catalogue_spec, generate
from tests.labeller.conftest import screenshot
from tests.labeller.part2_data import private_copy, trained_folder

pytestmark = [pytest.mark.browser, pytest.mark.slow]

LOAD_MS = 90_000
MODELS = {m.name for m in demo_catalogue_spec()}


@pytest.fixture
def app_data(
    demo_template: Callable[[int, int], Path],
    tmp_path_factory: pytest.TempPathFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Catalogue]:
    """Overrides the harness' folder: the trained catalogue, so Predict has a real model."""
    cat = private_copy(trained_folder(demo_template, tmp_path_factory), tmp_path, monkeypatch)
    yield cat
    cat.dispose()


def _sneaker_file(tmp_path: Path) -> Path:
    item = next(i for i in generate(seed=11, per_colourway=1, size=240) if not i.junk)
    path = tmp_path / "my sneaker.png"
    # as the demo drew it (transparent, white or grey background): converting to RGB turned
    # a transparent background black, which no product photo has
    PILImage.open(io.BytesIO(item.data)).save(path, format="PNG")
    return path


def _open(page: Any, url: str, title: str) -> None:
    """Open a page through the sidebar, as a user does.

    (A deep link such as ``/predict`` would run ``labeller/views/predict.py`` as a legacy
    ``pages/`` script, outside the app's navigation.)
    """
    if not page.url.startswith(url):
        page.goto(f"{url}/?user=ana")
    page.locator("[data-testid=stSidebarNav]").get_by_text(title, exact=True).click()
    page.get_by_role("heading", name=title).first.wait_for(timeout=LOAD_MS)
    page.wait_for_load_state("networkidle")


def test_predict_in_the_browser(app_server: str, browser_page: Any, tmp_path: Path) -> None:
    page = browser_page
    _open(page, app_server, "Predict")
    page.get_by_text("Active model: run #1").wait_for(timeout=LOAD_MS)
    page.locator("input[type=file]").first.set_input_files(str(_sneaker_file(tmp_path)))
    page.get_by_text("Top 3 models").wait_for(timeout=LOAD_MS)
    page.get_by_text("Closest labelled images in the catalogue").wait_for(timeout=LOAD_MS)
    metrics = page.locator("[data-testid=stMetric]")
    expect(metrics).to_have_count(2, timeout=LOAD_MS)
    expect(metrics.nth(0).locator("[data-testid=stMetricLabel]")).to_have_text("Model")
    expect(metrics.nth(1).locator("[data-testid=stMetricLabel]")).to_have_text("SKU")
    answer = metrics.nth(0).locator("[data-testid=stMetricValue]").inner_text().strip()
    assert answer == "unknown" or answer in MODELS
    screenshot(page, "predict")

    bad = tmp_path / "notes.png"
    bad.write_text("not a picture")
    page.locator("input[type=file]").first.set_input_files([str(bad)])
    page.get_by_text("notes.png: not an image skulab reads").wait_for(timeout=LOAD_MS)
    # The bad file is refused on its own; the good photo keeps its answer.
    expect(page.locator("[data-testid=stAlertContentError]")).to_have_count(1)
    expect(page.locator("[data-testid=stMetric]")).to_have_count(2)
    screenshot(page, "predict_bad_file")


def test_screenshots_of_splits_and_train(app_server: str, browser_page: Any) -> None:
    page = browser_page
    _open(page, app_server, "Splits")
    page.get_by_text("Balance per class", exact=True).wait_for(timeout=LOAD_MS)
    page.get_by_text("Leaks between splits", exact=True).wait_for(timeout=LOAD_MS)
    assert screenshot(page, "splits").stat().st_size > 10_000
    _open(page, app_server, "Train")
    page.get_by_text("Compare runs", exact=True).wait_for(timeout=LOAD_MS)
    page.get_by_text("confusion val stage1").first.wait_for(timeout=LOAD_MS)
    assert screenshot(page, "train").stat().st_size > 10_000
