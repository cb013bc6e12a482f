"""The Label page in a real browser: two labellers at once, and the searchable pickers.

``streamlit run labeller/app.py`` on a private demo catalogue with a fake active run (see
conftest.py), driven in Debian's Chromium. Screenshots go to ``artifacts/screenshots/``.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import select

from db import Catalogue
from db.models import Image, LabelEvent, Sku
from tests.labeller.conftest import new_page, screenshot, settled

pytestmark = pytest.mark.browser

LOAD_MS = 60_000


def _open(browser: Any, url: str) -> Any:
    page = new_page(browser, LOAD_MS)
    page.goto(url)
    settled(page, LOAD_MS)
    return page


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
    settled(page, LOAD_MS)


def test_two_labellers_in_two_browsers_get_different_images(app_server: str, browser: Any) -> None:
    ana = _open(browser, f"{app_server}/label?user=ana")
    ben = _open(browser, f"{app_server}/label?user=ben")
    ana_ids, ben_ids = _card_ids(ana), _card_ids(ben)
    assert len(ana_ids) == len(ben_ids) == 36
    assert not set(ana_ids) & set(ben_ids)
    screenshot(ben, "label_second_labeller")
    # a reload gives each one the same page back; their next pages stay apart too
    ben.reload()
    settled(ben, LOAD_MS)
    assert _card_ids(ben) == ben_ids
    ana.locator("h1").first.click()
    ana.keyboard.press("n")
    settled(ana, LOAD_MS)
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
    assert page.locator(".st-key-lab_label").get_by_role("button").is_disabled()
    # a colourway names one SKU of the model: its reference picture shows, labelling works
    _type_into(page, "lab_pick_sku", "grey fog")
    page.get_by_text("DD1391-103 · White/Grey Fog").first.wait_for()
    for image_id in (first, second):
        page.locator(f".st-key-lab_sel_{image_id} label").click()
        settled(page, LOAD_MS)
    screenshot(page, "label_picker", full_page=False)
    page.locator("h1").first.click()
    page.keyboard.press("l")
    page.wait_for_selector('[data-testid="stToast"]')
    settled(page, LOAD_MS)
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
