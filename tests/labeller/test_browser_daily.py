"""The labeller in daily use, in Chromium at 1440×1000 (issue 15).

- undo after a no-op: accepting a page of verified labels changes nothing and says so, and
  the Undo that follows takes nothing back (it used to revert each image's previous change:
  verified labels and splits lost);
- keys act whenever focus is not in a text field: A right after unticking a card, L right
  after choosing in a picker, and a hint while typing;
- the images an accept left without an SKU wait in their own queue and get their SKU there.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import select

from db import Catalogue
from db.models import Image, Prediction, Run, Sku
from tests.labeller.conftest import screenshot, settled

pytestmark = pytest.mark.browser

LOAD_MS = 60_000
VIEWPORT = {"width": 1440, "height": 1000}


def _open(browser: Any, url: str) -> Any:
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(LOAD_MS)
    page.goto(url)
    settled(page, LOAD_MS)
    return page


def _card_ids(page: Any) -> list[int]:
    classes = page.locator('[class*="st-key-lab_card_"]').evaluate_all(
        "els => els.map(e => e.className)"
    )
    return [int(re.search(r"lab_card_(\d+)", c).group(1)) for c in classes]  # type: ignore[union-attr]


def _choose(page: Any, key: str, option: str) -> None:
    """Open a select box and click one of its options, as a user does (no click after)."""
    page.locator(f".st-key-{key} input").click()
    page.get_by_role("option", name=re.compile(re.escape(option))).first.click()
    settled(page, LOAD_MS)


def _toast(page: Any) -> str:
    toast = page.locator('[data-testid="stToast"]').last
    toast.wait_for()
    text = toast.locator("[data-testid=stMarkdownContainer]").first.text_content() or ""
    settled(page, LOAD_MS)
    return text


def _press(page: Any, key: str) -> str:
    """Press a key where the focus is now, and return the message it brought."""
    page.evaluate("document.querySelectorAll('[data-testid=stToast]').forEach(t => t.remove())")
    page.keyboard.press(key)
    return _toast(page)


def _state(cat: Catalogue) -> dict[int, tuple[Any, ...]]:
    with cat.read() as s:
        return {
            i.id: (i.status, i.model_id, i.sku_id, i.split, i.split_locked, i.labelled_by)
            for i in s.scalars(select(Image).where(Image.status == "labelled"))
        }


def _active_run(cat: Catalogue) -> int:
    with cat.read() as s:
        return int(s.scalar(select(Run.id).where(Run.active)))  # type: ignore[arg-type]


def _predict_labelled_as_labelled(cat: Catalogue) -> None:
    """The active run agrees with every label (as ``suggest --labelled`` would store it)."""
    run_id = _active_run(cat)
    with cat.write() as s:
        for image in s.scalars(select(Image).where(Image.status == "labelled")):
            s.add(
                Prediction(
                    image_id=image.id,
                    run_id=run_id,
                    model_name=image.model.name if image.model else None,
                    model_conf=0.97,
                    sku=image.sku.style_code if image.sku else None,
                    sku_conf=0.9,
                    margin=0.9,
                    top={},
                )
            )


def test_undo_after_accepting_verified_labels_takes_nothing_back(
    app_server: str, browser: Any, app_data: Catalogue
) -> None:
    _predict_labelled_as_labelled(app_data)
    with app_data.write() as s:  # the test split is locked, as a team does before training
        for image in s.scalars(select(Image).where(Image.split == "test")):
            image.split_locked = True
    page = _open(browser, f"{app_server}/label?user=ana")
    # verified work of this session: a page of suggestions accepted
    page.locator("h1").first.click()
    assert _press(page, "a").startswith("Accepted 36 suggestions")
    verified = _state(app_data)
    # Filter → status labelled: every card ticked, every suggestion already the label
    _choose(page, "lab_queue", "Filter")
    _choose(page, "lab_f_status", "labelled")
    assert len(_card_ids(page)) == 36
    said = _press(page, "a")
    assert "Nothing changed" in said and "nothing recorded" in said
    said = _press(page, "u")
    assert said.startswith("Nothing to undo"), said
    screenshot(page, "label_undo_after_no_op", full_page=False)
    assert _state(app_data) == verified  # every verified label and split in place
    # the next Undo is the accept of this session, named, and takes back that page only
    said = _press(page, "u")
    assert said.startswith("Undid: accepted 36 suggestions"), said
    after = _state(app_data)
    assert len(verified) - len(after) == 36
    assert all(after[i] == verified[i] for i in after)


def test_keys_work_right_after_a_checkbox_or_a_picker(
    app_server: str, browser: Any, app_data: Catalogue
) -> None:
    page = _open(browser, f"{app_server}/label?user=ana")
    ids = _card_ids(page)
    # untick the first card's suggestion, then press A: no extra click
    page.locator(f".st-key-lab_acc_{ids[0]} label").click()
    settled(page, LOAD_MS)
    assert _press(page, "a").startswith("Accepted 35 suggestions")
    with app_data.read() as s:
        status = dict(s.execute(select(Image.id, Image.status).where(Image.id.in_(ids))).all())
    assert status[ids[0]] == "new"
    assert all(status[i] == "labelled" for i in ids[1:])
    # a model chosen in the picker, two cards selected, then L: no extra click
    ids = _card_ids(page)
    for image_id in ids[:2]:
        page.locator(f".st-key-lab_sel_{image_id} label").click()
        settled(page, LOAD_MS)
    _choose(page, "lab_pick_model", "Nike Cortez")
    assert page.evaluate("document.activeElement.getAttribute('role')") != "combobox"
    assert _press(page, "l").startswith("Labelled 2 images Nike Cortez")
    # typing in a search box: the letters go in, keys are off, and a hint says so
    page.locator(".st-key-lab_pick_sku input").click()
    page.keyboard.type("xa")
    hint = page.locator("#skulab-keys-hint")
    assert hint.is_visible() and "Keys off" in hint.inner_text()
    screenshot(page, "label_keys_hint", full_page=False)
    page.keyboard.press("Escape")
    assert not hint.is_visible()
    with app_data.read() as s:
        assert s.scalar(select(Image.status).where(Image.id == ids[2])) == "new"


def test_images_accepted_without_sku_wait_in_their_queue(
    app_server: str, browser: Any, app_data: Catalogue
) -> None:
    """A third of the suggestions have a model and 'SKU unknown' (with a best guess): the
    accept says how many get no SKU, the new queue lists exactly those, and accepting the
    guesses there gives them their SKU."""
    run_id = _active_run(app_data)
    with app_data.write() as s:
        owner = {k.style_code: k.model.name for k in s.scalars(select(Sku))}
        for p in s.scalars(select(Prediction).where(Prediction.run_id == run_id)):
            if p.image_id % 3 == 0:
                p.top = {"sku_top3": [{"name": p.sku, "confidence": 0.41}]}
                p.sku = None
    page = _open(browser, f"{app_server}/label?user=ana")
    shown = _card_ids(page)
    no_sku = sorted(i for i in shown if i % 3 == 0)
    page.get_by_text("SKU unknown (best guess").first.wait_for()
    page.locator("h1").first.click()
    said = _press(page, "a")
    assert f"{len(no_sku)} images got a model but no SKU" in said, said
    _choose(page, "lab_queue", "Model labelled, SKU missing")
    listed = _card_ids(page)
    assert sorted(listed) == no_sku
    screenshot(page, "label_missing_sku_queue", full_page=False)
    page.locator("h1").first.click()
    assert _press(page, "a").startswith(f"Accepted {len(no_sku)} suggestions")
    with app_data.read() as s:
        rows = s.execute(
            select(Image.id, Sku.style_code, Image.model_id).join(Sku, Image.sku_id == Sku.id)
        ).all()
        got = {i: code for i, code, _ in rows if i in no_sku}
    assert sorted(got) == no_sku
    assert all(owner[code] for code in got.values())
    page.locator("[data-testid=stSidebarNav]").get_by_text("Overview", exact=True).click()
    settled(page, LOAD_MS)
    page.get_by_text("labelled with SKU").first.wait_for()


def test_app_started_from_the_project_stays_on_this_machine(
    app_data: Catalogue, browser: Any, tmp_path: Any
) -> None:
    """``streamlit run labeller/app.py`` from the project folder, with no flag but a port,
    as ``make app`` starts it: 127.0.0.1 only, headless, no usage statistics (the browser
    asks nothing of any other address), no Deploy button."""
    import os
    import subprocess
    import sys
    import urllib.parse

    from tests.labeller.conftest import ROOT, free_port, wait_healthy

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMLIT_")}
    env["SKULAB_DATA"] = str(app_data.data_dir)
    log = (tmp_path / "streamlit.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "labeller/app.py", "--server.port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc)
        context = browser.new_context(viewport=VIEWPORT)
        hosts: set[str] = set()
        context.on("request", lambda r: hosts.add(urllib.parse.urlsplit(r.url).hostname or ""))
        page = context.new_page()
        page.set_default_timeout(LOAD_MS)
        page.goto(f"{url}/?user=ana")
        settled(page, LOAD_MS)
        assert page.locator("[data-testid=stAppDeployButton]").count() == 0
        assert not page.get_by_text("Deploy", exact=True).count()
        assert hosts == {"127.0.0.1"}, hosts
        context.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()
    printed = (tmp_path / "streamlit.log").read_text()
    assert f"http://127.0.0.1:{port}" in printed
    assert "Network URL" not in printed and "External URL" not in printed, printed
