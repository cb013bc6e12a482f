"""Scrapy settings of skulab's crawlers: polite by default.

Only what differs from Scrapy's defaults; see https://docs.scrapy.org/en/latest/topics/settings.html.
Override any of them per run: ``scrapy crawl nike -s SKULAB_MIN_IMAGE_SIDE=300``.
"""

from db.images import MAX_FILE_BYTES

BOT_NAME = "skulab"
SPIDER_MODULES = ["scraper.spiders"]
NEWSPIDER_MODULE = "scraper.spiders"
USER_AGENT = "skulab/0.1 (+https://github.com/skulab/skulab)"

# Politeness: robots.txt, few parallel requests per site, AutoThrottle, retries on 429/5xx.
ROBOTSTXT_OBEY = True
CONCURRENT_REQUESTS_PER_DOMAIN = 4
DOWNLOAD_DELAY = 0.5
AUTOTHROTTLE_ENABLED = True
AUTOTHROTTLE_START_DELAY = 1.0
AUTOTHROTTLE_TARGET_CONCURRENCY = 2.0
RETRY_TIMES = 3
RETRY_HTTP_CODES = [429, 500, 502, 503, 504, 522, 524, 408]
DOWNLOAD_TIMEOUT = 60
REDIRECT_MAX_TIMES = 5
# Nothing bigger than the catalogue would take (db.images.MAX_FILE_BYTES).
DOWNLOAD_MAXSIZE = MAX_FILE_BYTES
DOWNLOAD_WARNSIZE = 10 * 1024 * 1024

DOWNLOADER_MIDDLEWARES = {
    "scraper.middlewares.AllowedHostsMiddleware": 50,  # before robots.txt is fetched
    "scraper.middlewares.KnownImageMiddleware": 60,
}
EXTENSIONS = {
    "scraper.jobdir.JobDirGuard": 0,  # a JOBDIR left by a killed crawl: start over, lose nothing
}
ITEM_PIPELINES = {
    "scraper.pipelines.SkuStatsPipeline": 100,
    "scraper.pipelines.CatalogueIngestPipeline": 300,
}

LOG_LEVEL = "INFO"
FEED_EXPORT_ENCODING = "utf-8"

# skulab's own settings.
SKULAB_MIN_IMAGE_SIDE = 200  # px; smaller pictures (icons, swatches) are skipped
SKULAB_INGEST_BATCH = 16  # pictures per catalogue transaction at most (short write locks)
SKULAB_ALLOWED_HOSTS: list[str] = []  # when set, requests to any other host are refused
NIKE_API_BASE = "https://api.nike.com"  # where the product-wall and launch-feed APIs live
SHOPIFY_MAX_PAGES = 100  # products.json pages per store (250 products each)

# No control ports: a crawl is stopped with Ctrl-C (and resumed with -s JOBDIR=...).
TELNETCONSOLE_ENABLED = False
REMOTE_CONTROL_ENABLED = False
