"""A small web site on 127.0.0.1 for crawl tests and the crawl benchmark.

Routes map a path to a function of the request that returns (status, headers, body);
every request is recorded (path, query, headers) so tests can check what was asked for.
"""

from __future__ import annotations

import hashlib
import io
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from PIL import Image, ImageDraw


@dataclass(frozen=True)
class Seen:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]


Reply = tuple[int, dict[str, str], bytes]
Route = Callable[[Seen], Reply]


@dataclass
class LocalSite:
    """Routes by exact path, then by the longest matching path prefix."""

    routes: dict[str, Route] = field(default_factory=dict)
    prefixes: dict[str, Route] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    base: str = ""
    delay_s: float = 0.0  # per reply: a slow site, to stop a crawl half-way

    def reply(self, raw_path: str, headers: dict[str, str]) -> Reply:
        parts = urlsplit(raw_path)
        request = Seen(
            parts.path, parse_qs(parts.query), {k.lower(): v for k, v in headers.items()}
        )
        self.seen.append(request)
        if self.delay_s:
            time.sleep(self.delay_s)
        route = self.routes.get(parts.path)
        if route is None:
            matches = [p for p in self.prefixes if parts.path.startswith(p)]
            route = self.prefixes[max(matches, key=len)] if matches else None
        if route is None:
            return 404, {"Content-Type": "text/plain"}, b"not found"
        return route(request)

    def paths(self, prefix: str = "/") -> list[str]:
        return [s.path for s in self.seen if s.path.startswith(prefix)]


def _handler(site: LocalSite) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real sites do (every reply has a length)

        def do_GET(self) -> None:
            status, headers, body = site.reply(self.path, dict(self.headers.items()))
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that hangs up (a cancelled oversized download) is no server error."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


@contextmanager
def serve(site: LocalSite) -> Iterator[LocalSite]:
    """Runs ``site`` on a free port of 127.0.0.1 in a thread; sets ``site.base``."""
    server = _QuietServer(("127.0.0.1", 0), _handler(site))
    site.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield site
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def content(body: bytes, content_type: str, status: int = 200) -> Route:
    return lambda _request: (status, {"Content-Type": content_type}, body)


def redirect(location: str) -> Route:
    return lambda _request: (302, {"Location": location}, b"")


FORMATS = {
    "jpg": ("JPEG", "image/jpeg"),
    "png": ("PNG", "image/png"),
    "webp": ("WEBP", "image/webp"),
}


def sneaker_picture(seed: str, ext: str, size: tuple[int, int] = (480, 400)) -> bytes:
    """A deterministic picture of a "sneaker" (colours from ``seed``) in JPEG, PNG or WebP.

    PNGs have a transparent background, as product shots often do.
    """
    digest = hashlib.sha256(seed.encode()).digest()
    colour = (digest[0], digest[1], digest[2])
    accent = (digest[3], digest[4], digest[5])
    fmt, _ = FORMATS[ext]
    transparent = fmt == "PNG"
    img = Image.new(
        "RGBA" if transparent else "RGB", size, (0, 0, 0, 0) if transparent else "white"
    )
    draw = ImageDraw.Draw(img)
    w, h = size
    draw.rounded_rectangle((w * 0.1, h * 0.45, w * 0.9, h * 0.8), radius=h // 10, fill=colour)
    draw.ellipse((w * 0.15, h * 0.25, w * 0.55, h * 0.6), fill=accent)
    draw.rectangle((w * 0.1, h * 0.75, w * 0.92, h * 0.85), fill=(240, 240, 240, 255))
    for i in range(12):  # laces and stitching, so the pictures differ in detail too
        x = w * (0.3 + 0.04 * i) + digest[6 + i] % 7
        draw.line((x, h * 0.4, x + 10, h * 0.5), fill=(digest[i], 30, 60, 255), width=3)
    out = io.BytesIO()
    img.save(out, format=fmt, **({"quality": 88} if fmt != "PNG" else {}))
    return out.getvalue()


def picture_route(seed: str, ext: str, size: tuple[int, int] = (480, 400)) -> Route:
    body = sneaker_picture(seed, ext, size)
    return content(body, FORMATS[ext][1])
