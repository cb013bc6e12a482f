"""A JOBDIR that a killed crawl left behind is not trusted: the crawl starts over.

Scrapy writes its request queue to ``JOBDIR/requests.queue`` as it goes and its list of
requests already made to ``JOBDIR/requests.seen``. A crawl stopped with Ctrl-C closes
both properly and resumes where it stopped. A crawl killed (``kill -9``, out of memory,
a reboot) leaves a queue whose last writes never reached the disk (a 0-byte file, a
half record) while ``requests.seen`` already lists the pages that were queued: resumed
from that state, the crawl loses those pages silently (``struct.error`` in the log,
exit status 0).

:class:`JobDirGuard` writes ``JOBDIR/skulab-crawl.running`` when a crawl opens and
removes it when the crawl closes. Finding it at the start means the last crawl did not
close: its queue and seen-list are set aside (moved to ``JOBDIR/unfinished/``, with a warning) and the crawl
starts again from its start pages. Nothing is lost by that: the catalogue skips every
picture it already has without downloading it, so only pages are fetched again.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from scrapy import signals
from scrapy.exceptions import NotConfigured

log = logging.getLogger(__name__)

MARKER = "skulab-crawl.running"
ASIDE = "unfinished"
"""Where the state of the last killed crawl is kept (replaced by the next one)."""
STATE = ("requests.queue", "requests.seen", "spider.state")
"""What Scrapy keeps in a JOBDIR (the queue, the seen-list, the spider's state)."""


class JobDirGuard:
    def __init__(self, jobdir: Path):
        self.jobdir = jobdir
        self.marker = jobdir / MARKER
        self.started_over = False

    @classmethod
    def from_crawler(cls, crawler: Any) -> JobDirGuard:
        jobdir = crawler.settings.get("JOBDIR")
        if not jobdir:
            raise NotConfigured("no JOBDIR")
        guard = cls(Path(jobdir))
        guard.open()
        crawler.signals.connect(guard.spider_closed, signal=signals.spider_closed)
        crawler.signals.connect(guard.spider_opened, signal=signals.spider_opened)
        return guard

    def open(self) -> None:
        """Before Scrapy's scheduler reads the JOBDIR: set aside what a killed crawl left."""
        self.jobdir.mkdir(parents=True, exist_ok=True)
        if self.marker.exists():
            self.set_aside()
        tmp = self.marker.with_suffix(".tmp")
        tmp.write_text(f"{os.getpid()}\n")
        tmp.replace(self.marker)

    def set_aside(self) -> None:
        aside = self.jobdir / ASIDE
        shutil.rmtree(aside, ignore_errors=True)
        moved = []
        for name in STATE:
            path = self.jobdir / name
            if path.exists():
                aside.mkdir(exist_ok=True)
                shutil.move(str(path), str(aside / name))
                moved.append(name)
        self.marker.unlink(missing_ok=True)
        self.started_over = bool(moved)
        if moved:
            log.warning(
                "%s: the last crawl with this JOBDIR did not stop cleanly (killed?), so its "
                "request queue cannot be trusted; starting again from the start pages "
                "(pictures already in the catalogue are not downloaded again). Its state "
                "was moved to %s",
                self.jobdir,
                aside,
            )

    def spider_opened(self, spider: Any) -> None:
        if self.started_over and spider.crawler.stats is not None:
            spider.crawler.stats.set_value("skulab/jobdir_started_over", 1)

    def spider_closed(self, spider: Any, reason: str) -> None:
        self.marker.unlink(missing_ok=True)
