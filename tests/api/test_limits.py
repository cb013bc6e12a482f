"""The work of one request and of all requests in flight is bounded before decoding, and
slow or oversized requests are cut off by the server (`python -m inference serve`)."""

from __future__ import annotations

import io
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

import inference.api as api
from db.catalogue import Catalogue
from inference.api import create_app
from tests.api.helpers import LiveServer, live_server, settings, sneaker_jpeg
from tests.api.test_cli import _serve, _wait_healthy


def gray_png(side: int) -> bytes:
    out = io.BytesIO()
    Image.new("L", (side, side), 200).save(out, "PNG")
    return out.getvalue()


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the images the server decodes (the server runs in this process)."""
    seen: list[str] = []
    real = api.decode_image

    def counting(data: bytes, name: str = "<upload>") -> Image.Image:
        seen.append(name)
        return real(data, name)

    monkeypatch.setattr(api, "decode_image", counting)
    return seen


@pytest.fixture
def small_server(api_catalogue: Catalogue) -> Iterator[LiveServer]:
    app = create_app(
        settings(max_request_pixels=1_000_000, max_pending_pixels=1_500_000, record_usage=False),
        catalogue=api_catalogue,
    )
    with live_server(app) as srv:
        yield srv


def test_a_batch_over_the_request_pixel_limit_is_refused_before_decoding(
    small_server: LiveServer, decodes: list[str]
) -> None:
    """Each picture is under the per-image limit; together they are over the request's."""
    files = [("files", (f"g{i}.png", gray_png(600), "image/png")) for i in range(3)]
    r = httpx.post(f"{small_server.url}/v1/predict/batch", files=files, timeout=60)
    assert r.status_code == 413, r.text
    assert r.json()["error"]["code"] == "request_too_many_pixels"
    assert "1,080,000 pixels" in r.json()["error"]["message"]
    assert decodes == []  # not one of them was decoded
    ok = [("files", (f"g{i}.png", gray_png(500), "image/png")) for i in range(2)]
    assert httpx.post(f"{small_server.url}/v1/predict/batch", files=ok, timeout=60).is_success


def test_requests_in_flight_share_one_pixel_budget(
    small_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While one big request is being decoded, another that would pass the budget gets
    503 with Retry-After at once, before anything of it is decoded."""
    entered, release = threading.Event(), threading.Event()
    real = api.decode_all

    def held(items, max_pixels):  # type: ignore[no-untyped-def]
        if items and items[0][1] == "big.png":
            entered.set()
            release.wait(60)
        return real(items, max_pixels)

    monkeypatch.setattr(api, "decode_all", held)
    url = f"{small_server.url}/v1/predict"
    result: dict[str, httpx.Response] = {}

    def big() -> None:
        files = {"file": ("big.png", gray_png(900), "image/png")}  # 810,000 pixels
        result["big"] = httpx.post(url, files=files, timeout=60)

    thread = threading.Thread(target=big)
    thread.start()
    try:
        assert entered.wait(60)
        second = httpx.post(url, files={"file": ("b.png", gray_png(900), "image/png")}, timeout=60)
        small = httpx.post(
            url, files={"file": ("s.jpg", sneaker_jpeg(320, 400), "image/jpeg")}, timeout=60
        )
    finally:
        release.set()
        thread.join(60)
    assert second.status_code == 503 and second.headers["retry-after"] == "1", second.text
    assert second.json()["error"]["code"] == "overloaded"
    assert small.status_code == 200, small.text  # small requests still fit beside it
    assert result["big"].status_code == 200
    again = httpx.post(url, files={"file": ("b.png", gray_png(900), "image/png")}, timeout=60)
    assert again.status_code == 200  # the budget was given back


def _raw(port: int, data: bytes, *, then: bytes = b"", timeout: float = 60) -> bytes:
    """Send raw bytes, then ``then`` one byte at a time as long as the server reads; what
    the server answered (b'' when it closed without an answer)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
            for i in range(len(then)):
                sock.sendall(then[i : i + 1])
                sock.settimeout(0.2)
                try:
                    got = sock.recv(65536)
                except TimeoutError:
                    continue
                finally:
                    sock.settimeout(timeout)
                return got + _read_all(sock)
        except (BrokenPipeError, ConnectionResetError):
            pass
        return _read_all(sock)


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except (ConnectionResetError, TimeoutError):
        pass
    return b"".join(chunks)


def test_the_server_cuts_off_slow_bodies_and_huge_headers(
    api_catalogue: Catalogue, tmp_path: Path
) -> None:
    log = tmp_path / "serve.log"
    proc, url = _serve(
        api_catalogue.data_dir, "--body-timeout", "1", "--max-header-kb", "16", "--no-usage",
        log=log,
    )  # fmt: skip
    port = int(url.rsplit(":", 1)[1])
    try:
        _wait_healthy(proc, url, log)
        jpeg = sneaker_jpeg(320, 400)
        head = (
            f"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
            f"Content-Length: {len(jpeg)}\r\n\r\n"
        ).encode()
        # the body, one byte every 0.2 s (100 of its bytes: 20 s)
        slow = _raw(port, head, then=jpeg[:100], timeout=20)
        assert slow.startswith(b"HTTP/1.1 408"), slow[:300]
        assert b"request_timeout" in slow

        huge = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1024 * 1024) + b"\r\n\r\n"
        answer = _raw(port, huge)
        assert not answer.startswith(b"HTTP/1.1 200"), answer[:300]
        assert answer == b"" or answer.startswith(b"HTTP/1.1 4"), answer[:300]

        normal = httpx.post(
            f"{url}/v1/predict", content=jpeg, headers={"Content-Type": "image/jpeg"}, timeout=60
        )
        assert normal.status_code == 200, normal.text
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0, log.read_text()


def test_no_picture_is_kept_after_its_request(
    small_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A big request's pictures are let go when it is answered (the batcher's worker held
    the last batch until the next request came, and with it the memory of a big one)."""
    import gc
    import time
    import weakref

    kept: list[weakref.ref] = []
    real = api.decode_all

    def tracked(items, max_pixels):  # type: ignore[no-untyped-def]
        images = real(items, max_pixels)
        kept.extend(weakref.ref(im) for im in images)
        return images

    monkeypatch.setattr(api, "decode_all", tracked)
    files = [("files", (f"g{i}.png", gray_png(500), "image/png")) for i in range(2)]
    r = httpx.post(f"{small_server.url}/v1/predict/batch", files=files, timeout=60)
    assert r.status_code == 200, r.text
    assert len(kept) == 2
    for _ in range(100):  # the server's thread finishes the request after answering it
        gc.collect()
        if all(ref() is None for ref in kept):
            break
        time.sleep(0.05)
    assert [ref() for ref in kept] == [None, None]
