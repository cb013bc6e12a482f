"""Fixtures of the API tests: a catalogue with two runs, and the real server on a free port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from db.catalogue import Catalogue
from inference.api import create_app
from tests.api.helpers import LiveServer, add_bundle_run, live_server, settings, sneaker_jpeg

MiB = 1024 * 1024

# Small limits so that the over-the-limit tests send little data.
LIMITS = {"max_image_bytes": 2 * MiB, "max_batch": 4, "max_batch_bytes": 5 * MiB}
API_KEY = "test-key-0123456789abcdef"


@pytest.fixture(scope="session")
def api_catalogue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Catalogue]:
    """A catalogue with two succeeded runs; run 1 is active. Shared: do not promote in it."""
    cat = Catalogue(tmp_path_factory.mktemp("api-data"))
    cat.migrate()
    add_bundle_run(cat, "first", seed=0, active=True)
    add_bundle_run(cat, "second", seed=1)
    yield cat
    cat.dispose()


@pytest.fixture(scope="session")
def server(api_catalogue: Catalogue) -> Iterator[LiveServer]:
    """The API on the shared catalogue, following the active run, without keys."""
    app = create_app(settings(**LIMITS), catalogue=api_catalogue)
    with live_server(app) as srv:
        yield srv


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


@pytest.fixture(scope="session")
def keyed_server(api_catalogue: Catalogue) -> Iterator[LiveServer]:
    app = create_app(
        settings(**LIMITS, api_keys=(API_KEY, "second-key-abcdefghijkl"), record_usage=False),
        catalogue=api_catalogue,
    )
    with live_server(app) as srv:
        yield srv


@pytest.fixture(scope="session")
def jpeg() -> bytes:
    """A 640x800 JPEG, the size of a product photo."""
    return sneaker_jpeg()


@pytest.fixture
def fresh_catalogue(tmp_path: Path) -> Iterator[Catalogue]:
    """An empty catalogue of the test's own (for tests that promote runs)."""
    cat = Catalogue(tmp_path / "data")
    cat.migrate()
    yield cat
    cat.dispose()


TRAINED_MODELS = ("Nike Dunk Low", "Air Jordan 1 High")
SPLITS = ("train", "train", "val")


def _labelled_demo(folder: Path) -> Catalogue:
    """Two demo sneaker models, every picture labelled: the smallest catalogue worth training."""
    from db import ops
    from db.demo import generate

    cat = Catalogue(folder)
    cat.migrate()
    seen: dict[str, int] = {}
    with cat.write() as s:
        for item in generate(seed=0, per_colourway=3, size=96):
            if item.junk or item.model not in TRAINED_MODELS or item.style_code is None:
                continue
            i = seen[item.style_code] = seen.get(item.style_code, -1) + 1
            ops.get_or_create_sku(s, item.style_code, item.model)
            ops.ingest_image(
                s,
                cat.store,
                item.data,
                item.name,
                ops.Source(kind="demo", image_url=item.image_url, page_url=item.page_url),
                model=item.model,
                sku=item.style_code,
                split=SPLITS[i % len(SPLITS)],
            )
    return cat


@pytest.fixture(scope="session")
def trained_catalogue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Catalogue]:
    """A catalogue with one run trained by ``training`` (the default backbone) and promoted."""
    from training.fit import FitParams
    from training.jobs import run_fit

    cat = _labelled_demo(tmp_path_factory.mktemp("api-trained"))
    run_id = run_fit(cat, FitParams(flip_augment=False, C=10.0), promote=True, name="api-e2e")
    from db.models import Run

    with cat.read() as s:
        run = s.get(Run, run_id)
        assert run is not None and run.status == "succeeded", run and run.error
    yield cat
    cat.dispose()
