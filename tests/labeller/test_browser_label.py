"""The Label page in a real browser: two labellers at once, and the searchable pickers.

``streamlit run labeller/app.py`` on a private demo catalogue with a fake active run (see
conftest.py), driven in Debian's Chromium. Screenshots go to ``artifacts/screenshots/``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from db import Catalogue
from db.models import Image, LabelEvent, Sku
from tests.labeller.conftest import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS

pytestmark = pytest.mark.browser

LOAD_MS = 60_000


@pytest.fixture
def browser() -> Iterator[Any]:
    """Debian's Chromium, for tests that need more than one browser context."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install it with `apt-get install -y chromium`")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def _open(browser: Any, url: str) -> Any:
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(LOAD_MS)
    page.goto(url)
    _settle(page)
    return page


def _settle(page: Any) -> None:
    """Wait until the script run (and its fragments) ended and the grid is drawn."""
    page.wait_for_selector("h1", timeout=LOAD_MS)
    page.wait_for_timeout(300)
    page.wait_for_selector(
        "[data-testid=stApp][data-test-script-state]:not([data-test-script-state=running])",
        timeout=LOAD_MS,
    )
    page.wait_for_timeout(300)


def _card_ids(page: Any) -> list[int]:
    classes = page.locator('[class*="st-key-lab_card_"]').evaluate_all(
        "els => els.map(e => e.className)"
    )
    return [int(re.search(r"lab_card_(\d+)", c).group(1)) for c in classes]  # type: ignore[union-attr]


def _type_into(page: Any, key: str, text: str) -> None:
    """Type into a searchable picker and press Enter, as a hurried user does."""
    page.locator(f".st-key-{key} input").click()
    page.keyboard.type(text)
    page.wait_for_timeout(300)
    page.keyboard.press("Enter")
    _settle(page)


def test_two_labellers_in_two_browsers_get_different_images(app_server: str, browser: Any) -> None:
    ana = _open(browser, f"{app_server}/label?user=ana")
    ben = _open(browser, f"{app_server}/label?user=ben")
    ana_ids, ben_ids = _card_ids(ana), _card_ids(ben)
    assert len(ana_ids) == len(ben_ids) == 36
    assert not set(ana_ids) & set(ben_ids)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    ben.screenshot(path=str(SCREENSHOTS / "label_second_labeller.png"), full_page=True)
    # a reload gives each one the same page back; their next pages stay apart too
    ben.reload()
    _settle(ben)
    assert _card_ids(ben) == ben_ids
    ana.locator("h1").first.click()
    ana.keyboard.press("n")
    _settle(ana)
    assert not set(_card_ids(ana)) & set(ben_ids)


def test_searching_the_sku_picker_never_creates_a_junk_sku(
    app_server: str, browser: Any, app_data: Catalogue
) -> None:
    page = _open(browser, f"{app_server}/label?user=ana")
    first, second = _card_ids(page)[:2]
    _type_into(page, "lab_pick_model", "Dunk")
    # a partial style code and Enter: refused with the matches, nothing to click
    _type_into(page, "lab_pick_sku", "dd1391-10")
    page.get_by_text("matches").first.wait_for()
    assert "DD1391-100" in page.locator("[data-testid=stAlertContentWarning]").inner_text()
    assert page.locator(".st-key-lab_label button").is_disabled()
    # a colourway names one SKU of the model: its reference picture shows, labelling works
    _type_into(page, "lab_pick_sku", "grey fog")
    page.get_by_text("DD1391-103 · White/Grey Fog").first.wait_for()
    for image_id in (first, second):
        page.locator(f".st-key-lab_sel_{image_id} label").click()
        _settle(page)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "label_picker.png"))
    page.locator("h1").first.click()
    page.keyboard.press("l")
    page.wait_for_selector('[data-testid="stToast"]')
    _settle(page)
    with app_data.read() as s:
        rows = s.execute(
            select(Image.id, Image.status).where(Image.id.in_([first, second])).order_by(Image.id)
        ).all()
        labelled = {
            e.image_id: e.after.get("sku")
            for e in s.scalars(select(LabelEvent).where(LabelEvent.user == "ana"))
        }
        codes = set(s.scalars(select(Sku.style_code)))
    assert [status for _, status in rows] == ["labelled", "labelled"]
    assert labelled == {first: "DD1391-103", second: "DD1391-103"}
    assert not {"dd1391-10", "DD1391-10", "grey fog"} & codes  # no SKU was made of a search
