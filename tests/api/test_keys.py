"""Optional API keys: without a valid key a request gets 401; /healthz stays open."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from inference.api import KeyRing, read_api_keys
from tests.api.conftest import API_KEY
from tests.api.helpers import LiveServer


@pytest.fixture
def keyed(keyed_server: LiveServer) -> httpx.Client:
    return httpx.Client(base_url=keyed_server.url, timeout=60)


def _unauthorized(r: httpx.Response) -> None:
    assert r.status_code == 401, r.text
    assert r.json()["error"]["code"] == "unauthorized"
    assert r.headers["www-authenticate"] == "Bearer"


def test_no_key_is_401(keyed: httpx.Client, jpeg: bytes) -> None:
    _unauthorized(keyed.post("/v1/predict", content=jpeg, headers={"Content-Type": "image/jpeg"}))
    _unauthorized(keyed.get("/v1/model"))
    _unauthorized(keyed.post("/v1/predict/batch", files={"files": ("a.jpg", jpeg, "image/jpeg")}))


def test_wrong_key_is_401(keyed: httpx.Client) -> None:
    _unauthorized(keyed.get("/v1/model", headers={"X-API-Key": API_KEY + "x"}))
    _unauthorized(keyed.get("/v1/model", headers={"X-API-Key": ""}))
    _unauthorized(keyed.get("/v1/model", headers={"Authorization": "Bearer nope"}))
    _unauthorized(keyed.get("/v1/model", headers={"Authorization": f"Basic {API_KEY}"}))


def test_key_in_header_or_as_bearer_token(keyed: httpx.Client, jpeg: bytes) -> None:
    r = keyed.post(
        "/v1/predict",
        content=jpeg,
        headers={"Content-Type": "image/jpeg", "X-API-Key": API_KEY},
    )
    assert r.status_code == 200, r.text
    r = keyed.get("/v1/model", headers={"Authorization": "Bearer second-key-abcdefghijkl"})
    assert r.status_code == 200, r.text


def test_unauthorized_body_is_not_read(keyed: httpx.Client) -> None:
    """The key is checked before the body: a bad image without a key is a 401, not a 400."""
    _unauthorized(keyed.post("/v1/predict", content=b"junk", headers={"Content-Type": "image/png"}))


def test_healthz_needs_no_key(keyed: httpx.Client) -> None:
    r = keyed.get("/healthz")
    assert r.status_code == 200
    assert r.json()["status"] == "ok"


def test_open_server_ignores_keys(client: httpx.Client) -> None:
    assert client.get("/v1/model", headers={"X-API-Key": "anything"}).status_code == 200


def test_keyring() -> None:
    ring = KeyRing(["alpha-key", "beta-key"])
    assert ring
    assert ring.accepts("alpha-key") and ring.accepts("beta-key")
    assert not ring.accepts("alpha-ke") and not ring.accepts("") and not ring.accepts("gamma")
    assert not KeyRing([])
    assert not KeyRing([""])


def test_read_api_keys(tmp_path: Path) -> None:
    path = tmp_path / "keys.txt"
    path.write_text("# shop search\nkey-one\n\n  key-two  # reseller bot\nkey-one\n")
    assert read_api_keys(str(path), None) == ("key-one", "key-two")
    assert read_api_keys(None, " a-key , b-key ,") == ("a-key", "b-key")
    assert read_api_keys(str(path), "key-three") == ("key-one", "key-two", "key-three")
    assert read_api_keys(None, None) == ()
