"""The health report: short classes, leaks, duplicate rate, junk rate by source."""

from __future__ import annotations

import json

import pytest

from db import Catalogue, ops
from db.cli import main as db_main
from db.health import health_report
from db.models import Image
from tests.curation.helpers import add_image


def test_health_report_counts_what_is_wrong(
    catalogue: Catalogue, capsys: pytest.CaptureFixture[str]
) -> None:
    with catalogue.write() as s:
        ids = [
            add_image(s, n, model="Model A", sku="A-1", spider="nike", kind="crawl")
            for n in range(12)
        ]
        junk = [add_image(s, 100 + n, spider="shopify", kind="crawl") for n in range(4)]
        ops.reject(s, junk[0], "ann")
        ops.set_split(s, ids[:10], "train", "ann")
        ops.set_split(s, ids[10:], "test", "ann")
        for i in (ids[0], ids[11]):  # a duplicate pair across train and test
            s.get(Image, i).dup_group = ids[0]
    with catalogue.read() as s:
        report = health_report(s)
    assert [c["name"] for c in report["short_classes"]] == ["A-1"]
    assert report["short_classes"][0]["lacking"] == {"val": 2}
    assert [(leak["kind"], leak["splits"]) for leak in report["leaks"]] == [
        ("dup_group", {"train": 1, "test": 1})
    ]
    assert report["duplicates"]["groups"] == 1
    assert report["duplicates"]["redundant"] == 1
    junk_rates = {
        (r["kind"], r["spider"]): (r["rejected"], r["images"]) for r in report["junk_by_source"]
    }
    assert junk_rates == {("crawl", "nike"): (0, 12), ("crawl", "shopify"): (1, 4)}
    assert "python -m training issues" in report["label_issues"]["note"]
    assert db_main(["--data", str(catalogue.data_dir), "health", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["duplicates"] == report["duplicates"]
    assert db_main(["--data", str(catalogue.data_dir), "health"]) == 0
    assert "junk rate by source" in capsys.readouterr().out
