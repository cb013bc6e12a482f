"""Every kind of bad input gets a 4xx with a JSON error naming what was wrong, and the
service keeps serving."""

from __future__ import annotations

import socket
import struct
import threading
import zlib
from collections.abc import Iterator

import httpx
import pytest

from inference.api import check_pixels
from tests.api.conftest import LIMITS
from tests.api.helpers import LiveServer, _chunk, png_bomb, sneaker_jpeg

MAX_IMAGE = LIMITS["max_image_bytes"]


def _error(r: httpx.Response, status: int, code: str) -> str:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return body["error"]["message"]


@pytest.fixture(autouse=True)
def _still_serving(client: httpx.Client, jpeg: bytes) -> Iterator[None]:
    """After every bad request the service answers a good one."""
    yield
    r = client.post("/v1/predict", content=jpeg, headers={"Content-Type": "image/jpeg"})
    assert r.status_code == 200, r.text


def _raw(client: httpx.Client, data: bytes, ctype: str = "image/jpeg") -> httpx.Response:
    return client.post("/v1/predict", content=data, headers={"Content-Type": ctype})


def test_not_an_image(client: httpx.Client) -> None:
    message = _error(_raw(client, b"%PDF-1.7 this is a document"), 400, "not_an_image")
    assert "not an image" in message


def test_not_an_image_in_multipart_names_the_file(client: httpx.Client) -> None:
    r = client.post("/v1/predict", files={"file": ("notes.txt", b"hello", "text/plain")})
    assert "notes.txt" in _error(r, 400, "not_an_image")


def test_truncated_image(client: httpx.Client, jpeg: bytes) -> None:
    message = _error(_raw(client, jpeg[: len(jpeg) // 2]), 400, "corrupt_image")
    assert "truncated" in message


def test_zero_byte_body(client: httpx.Client) -> None:
    _error(_raw(client, b""), 400, "empty_file")


def test_zero_byte_upload(client: httpx.Client) -> None:
    r = client.post("/v1/predict", files={"file": ("empty.jpg", b"", "image/jpeg")})
    assert "empty.jpg" in _error(r, 400, "empty_file")


def test_image_over_the_size_limit(client: httpx.Client) -> None:
    big = b"\xff\xd8" + b"\0" * MAX_IMAGE
    _error(_raw(client, big), 413, "payload_too_large")


def test_body_over_the_limit_is_cut_off_while_streaming(client: httpx.Client) -> None:
    """No Content-Length (chunked): the server stops reading once the limit is passed."""
    sent = 0

    def chunks() -> Iterator[bytes]:
        nonlocal sent
        for _ in range(64):  # up to 16 MiB, 8x the limit
            sent += 256 * 1024
            yield b"\0" * (256 * 1024)

    try:
        r = client.post("/v1/predict", content=chunks(), headers={"Content-Type": "image/jpeg"})
    except httpx.TransportError:
        pytest.fail("the server should answer 413, not drop the connection")
    _error(r, 413, "payload_too_large")


def test_multipart_image_over_the_size_limit(client: httpx.Client) -> None:
    big = b"\xff\xd8" + b"\0" * MAX_IMAGE
    r = client.post("/v1/predict", files={"file": ("big.jpg", big, "image/jpeg")})
    assert "big.jpg" in _error(r, 413, "image_too_large")


def test_multipart_far_over_the_limit_names_the_image_limit(client: httpx.Client) -> None:
    big = b"\xff\xd8" + b"\0" * (2 * MAX_IMAGE)
    r = client.post("/v1/predict", files={"file": ("big.jpg", big, "image/jpeg")})
    assert f"at most {MAX_IMAGE:,} bytes" in _error(r, 413, "payload_too_large")


def test_decompression_bomb(client: httpx.Client) -> None:
    message = _error(_raw(client, png_bomb(), "image/png"), 413, "decompression_bomb")
    assert "decompression bomb" in message


def png_claiming(width: int, height: int) -> bytes:
    """A PNG of a few bytes whose header claims ``width`` x ``height`` and that has no pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


def test_too_many_pixels_is_refused_from_the_header(client: httpx.Client) -> None:
    """9000x9000 is under Pillow's bomb limit but over the service's: refused before decoding.

    The file has no pixel data, so decoding it would fail as truncated: the 413 shows the
    header was read and the picture never decoded.
    """
    r = client.post(
        "/v1/predict", files={"file": ("huge.png", png_claiming(9000, 9000), "image/png")}
    )
    message = _error(r, 413, "too_many_pixels")
    assert "huge.png" in message and "9000x9000" in message


def test_check_pixels_leaves_non_images_to_the_decoder() -> None:
    check_pixels(b"not an image", "x", 10)
    check_pixels(png_bomb(), "x", 10)  # a bomb: the decoder refuses it with its own code
    check_pixels(png_claiming(10, 10), "x", 100)
    with pytest.raises(Exception, match="over the limit of 99 pixels"):
        check_pixels(png_claiming(10, 10), "x", 99)


@pytest.mark.parametrize(
    "ctype", ["text/plain", "application/json", "application/x-www-form-urlencoded", ""]
)
def test_wrong_content_type(client: httpx.Client, jpeg: bytes, ctype: str) -> None:
    headers = {"Content-Type": ctype} if ctype else {}
    r = client.post("/v1/predict", content=jpeg, headers=headers)
    _error(r, 415, "unsupported_media_type")


def test_json_body_naming_a_file_or_url_is_refused(client: httpx.Client) -> None:
    for body in ('{"url": "https://example.com/shoe.jpg"}', '{"path": "/etc/passwd"}'):
        r = client.post("/v1/predict", content=body, headers={"Content-Type": "application/json"})
        _error(r, 415, "unsupported_media_type")


def test_a_url_or_path_in_any_field_is_never_fetched_or_read(client: httpx.Client) -> None:
    """Whatever a request names (a URL on a listening local port, a server path), the
    service reads only the bytes it was sent: the listener never sees a connection."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/shoe.jpg"
    connections: list[object] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                connections.append(listener.accept()[0])
            except TimeoutError:
                continue

    watcher = threading.Thread(target=accept, daemon=True)
    watcher.start()
    try:
        tries = [
            client.post(
                "/v1/predict", content=url.encode(), headers={"Content-Type": "image/jpeg"}
            ),
            client.post("/v1/predict", files={"file": (url, url.encode(), "text/uri-list")}),
            client.post("/v1/predict", files={"file": ("/etc/passwd", b"", "image/jpeg")}),
            client.post("/v1/predict", files={"file": ("../../etc/hostname", b"x", "image/png")}),
            client.post(
                "/v1/predict/batch", files=[("files", (url, b"file:///etc/passwd", "image/png"))]
            ),
        ]
    finally:
        stop.set()
        watcher.join(5)
        listener.close()
    assert [r.status_code for r in tries] == [400] * len(tries)
    assert connections == []


def test_multipart_without_the_file_field(client: httpx.Client, jpeg: bytes) -> None:
    r = client.post("/v1/predict", files={"image": ("a.jpg", jpeg, "image/jpeg")})
    message = _error(r, 400, "missing_file")
    assert "'file'" in message and "image" in message


def test_multipart_text_field_instead_of_a_file(client: httpx.Client) -> None:
    r = client.post("/v1/predict", data={"file": "https://example.com/shoe.jpg"})
    # A URL is never fetched: a text field is not a file (urlencoded is the wrong type).
    assert r.status_code == 415


def test_multipart_text_part_named_file_is_refused(client: httpx.Client) -> None:
    boundary = "b0undary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"\r\n\r\n'
        f"/etc/passwd\r\n--{boundary}--\r\n"
    ).encode()
    r = client.post(
        "/v1/predict",
        content=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert "not a file upload" in _error(r, 400, "missing_file")


def test_malformed_multipart(client: httpx.Client) -> None:
    r = client.post(
        "/v1/predict",
        content=b"--x\r\nno headers at all",
        headers={"Content-Type": "multipart/form-data"},
    )
    _error(r, 400, "bad_multipart")


def test_two_files_to_the_single_endpoint(client: httpx.Client, jpeg: bytes) -> None:
    files = [("file", ("a.jpg", jpeg, "image/jpeg")), ("file", ("b.jpg", jpeg, "image/jpeg"))]
    _error(client.post("/v1/predict", files=files), 413, "batch_too_large")


def test_empty_batch(client: httpx.Client) -> None:
    r = client.post("/v1/predict/batch", files={"other": ("a.txt", b"x", "text/plain")})
    _error(r, 400, "empty_batch")


def test_batch_with_the_single_field_name_says_which_field(client: httpx.Client) -> None:
    r = client.post("/v1/predict/batch", files={"file": ("a.jpg", b"x", "image/jpeg")})
    message = _error(r, 400, "empty_batch")
    assert "'files'" in message and "the body has: file" in message


def test_batch_without_any_part(client: httpx.Client) -> None:
    r = client.post(
        "/v1/predict/batch",
        content=b"--xx--\r\n",
        headers={"Content-Type": "multipart/form-data; boundary=xx"},
    )
    _error(r, 400, "empty_batch")


def test_batch_over_its_limit(client: httpx.Client) -> None:
    small = sneaker_jpeg(64, 80)
    files = [("files", (f"{i}.jpg", small, "image/jpeg")) for i in range(LIMITS["max_batch"] + 1)]
    _error(client.post("/v1/predict/batch", files=files), 413, "batch_too_large")


def test_batch_body_over_its_limit(client: httpx.Client) -> None:
    part = b"\xff\xd8" + b"\0" * (MAX_IMAGE - 100)
    files = [("files", (f"{i}.jpg", part, "image/jpeg")) for i in range(3)]
    _error(client.post("/v1/predict/batch", files=files), 413, "payload_too_large")


def test_batch_with_one_bad_image_names_it(client: httpx.Client, jpeg: bytes) -> None:
    files = [
        ("files", ("good.jpg", jpeg, "image/jpeg")),
        ("files", ("bad.jpg", b"nope", "image/jpeg")),
    ]
    r = client.post("/v1/predict/batch", files=files)
    assert "bad.jpg" in _error(r, 400, "not_an_image")


def test_batch_needs_multipart(client: httpx.Client, jpeg: bytes) -> None:
    r = client.post("/v1/predict/batch", content=jpeg, headers={"Content-Type": "image/jpeg"})
    _error(r, 415, "unsupported_media_type")


def test_declared_length_over_the_limit_is_refused_before_reading(server: LiveServer) -> None:
    """Headers announcing a huge body get 413 at once: the server does not wait for it."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/predict HTTP/1.1\r\nHost: test\r\nContent-Type: image/jpeg\r\n"
            + f"Content-Length: {MAX_IMAGE * 100}\r\n\r\n".encode()
        )
        reply = sock.recv(65536).decode()
    assert reply.startswith("HTTP/1.1 413"), reply
    assert '"payload_too_large"' in reply


def test_wrong_method(client: httpx.Client) -> None:
    _error(client.get("/v1/predict"), 405, "method_not_allowed")
