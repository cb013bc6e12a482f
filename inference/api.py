"""The prediction API: FastAPI on uvicorn, serving the catalogue's active run.

``python -m inference serve [--host 127.0.0.1] [--port 8000] [--run RUN]``

- ``POST /v1/predict``: one image, as multipart field ``file`` or as the raw body with an
  ``image/*`` or ``application/octet-stream`` content type; answers the sneaker model and the SKU with confidences, the top
  3 of each, ``unknown`` below threshold, the run that answered and the time taken.
- ``POST /v1/predict/batch``: several images as multipart fields ``files``.
- ``GET /v1/model``: the run in service. ``GET /healthz``: for load balancers (no key).

Bad input gets a 4xx with ``{"error": {"code", "message"}}``. Bodies are streamed and cut
off at their limit (413) before they are read whole; an image's pixel count is checked from
its header before it is decoded (a small file can claim a huge picture); images are decoded
by :func:`db.images.decode_image` (the bytes only: never a path or a URL) and predicted off
the event loop (see
:mod:`inference.api_service`). The service follows the active run: a promotion swaps the
model in without a restart. Usage goes to the ``api_requests`` table off the request path
(see :mod:`inference.api_usage`).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import io
import json
import logging
import math
import os
import time
import warnings
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import anyio
from fastapi import Depends, FastAPI, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from PIL import Image
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from db.catalogue import Catalogue, open_catalogue
from db.images import ACCEPTED_FORMATS, ImageError, decode_image
from inference.api_schemas import (
    BatchItem,
    BatchResponse,
    ErrorResponse,
    HealthResponse,
    ModelResponse,
    PredictResponse,
    image_answer,
)
from inference.api_service import (
    LoadedRun,
    MicroBatcher,
    ModelHolder,
    Overloaded,
    PredictorLoader,
    RunNotFound,
    load_predictor,
    resolve_run,
)
from inference.api_usage import UsageRecorder, UsageRow

log = logging.getLogger(__name__)

API_KEYS_ENV = "SKULAB_API_KEYS"
SETTINGS_ENV = "SKULAB_API_SETTINGS"
MiB = 1024 * 1024
MULTIPART_OVERHEAD = 64 * 1024
"""Room for multipart boundaries and part headers on top of an image's own bytes."""
IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp", "image/gif", "image/avif")
RAW_TYPES = (*IMAGE_TYPES, "application/octet-stream")
"""Content types documented for a raw image body; any ``image/*`` type is accepted, and the
format is found from the bytes, not from the type."""
RECORDED = frozenset({"/v1/predict", "/v1/predict/batch", "/v1/model"})
"""Endpoints whose requests go to the usage table (not health checks, not the docs)."""


def default_predict_threads() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


@dataclass(frozen=True)
class ApiSettings:
    """How the service runs (most fields have a command-line option: see add_arguments)."""

    data_dir: str | None = None
    run: str | None = None
    """Serve this run (id or name) and never switch; None follows the active run."""
    api_keys: tuple[str, ...] = ()
    max_image_bytes: int = 10 * MiB
    max_pixels: int = 40_000_000
    max_batch: int = 16
    max_batch_bytes: int = 64 * MiB
    poll_s: float = 2.0
    predict_threads: int = field(default_factory=default_predict_threads)
    """Predictions that run at once (one per core)."""
    torch_threads: int | None = 1
    """torch's intra-op threads (process-wide) while the service runs; None leaves them.

    One thread per prediction and one prediction per core is the fastest on a CPU: on two
    cores, 2 x 1 thread gives ~1.8x the throughput of 1 x 2 threads (bench/bench_api.py).
    """
    batch_images: int = 1
    """Images of concurrent requests one forward pass may take (micro-batching). 1: none,
    because on a CPU a batch costs more per image than single images do (measured); raise
    it for a GPU."""
    max_pending_pixels: int = 256_000_000
    """Decoded pixels waiting for the model beyond which requests get 503 (bounds memory:
    ~770 MB as RGB; ~500 product shots or ~20 phone photos)."""
    decode_threads: int = 2
    record_usage: bool = True
    max_request_pixels: int = 128_000_000
    """Pixels one request may bring, counted from the images' headers before any is
    decoded (413 above: ~384 MB as RGB; 16 photos of 8 megapixels)."""
    body_timeout_s: float = 30.0
    """Seconds a client has to send its whole request body (408 after)."""
    max_header_bytes: int = 64 * 1024
    """Request line and headers together, at most (the server closes the connection)."""
    keep_alive_s: int = 5
    """Seconds an idle keep-alive connection stays open."""
    max_connections: int = 256
    """Connections and requests at once beyond which the server answers 503."""

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ApiSettings:
        raw = json.loads(text)
        raw["api_keys"] = tuple(raw.get("api_keys") or ())
        return cls(**raw)


class ApiError(Exception):
    """A request the API refuses: HTTP status, a machine-readable code and a message."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def error_response(status: int, code: str, message: str, **kw: Any) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status, **kw)


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": text}
    for status, text in (
        (400, "Not an image, a corrupt or empty file, a malformed body or an empty batch."),
        (401, "An API key is required and was missing or wrong."),
        (413, "The body, an image, its pixel count or the batch is over its limit."),
        (415, "The content type is not one the endpoint takes."),
        (503, "No model is loaded yet, or too many images are waiting (see Retry-After)."),
    )
}


# --- API keys ------------------------------------------------------------------------------


class KeyRing:
    """The accepted API keys, kept as SHA-256 digests and compared in constant time."""

    def __init__(self, keys: Sequence[str]):
        self._digests = [hashlib.sha256(k.encode()).digest() for k in keys if k]

    def __bool__(self) -> bool:
        return bool(self._digests)

    def accepts(self, key: str) -> bool:
        given = hashlib.sha256(key.encode()).digest()
        ok = False
        for digest in self._digests:  # no early exit: the time does not depend on which key
            ok |= hmac.compare_digest(digest, given)
        return ok


def read_api_keys(path: str | None, env: str | None) -> tuple[str, ...]:
    """Keys from a file (one a line; blank lines and ``#`` comments skipped) and/or ``env``
    (comma-separated)."""
    keys: list[str] = []
    if path:
        for line in Path(path).read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                keys.append(line)
    if env:
        keys += [k.strip() for k in env.split(",") if k.strip()]
    return tuple(dict.fromkeys(keys))


_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="An API key (when the service has keys)."
)
_bearer = HTTPBearer(auto_error=False, description="The same API key as a bearer token.")


async def require_key(
    request: Request,
    key: str | None = Security(_key_header),
    bearer: HTTPAuthorizationCredentials | None = Security(_bearer),
) -> None:
    keys: KeyRing = request.app.state.service.keys
    if not keys:
        return
    given = key if key is not None else (bearer.credentials if bearer is not None else None)
    if given is None or not keys.accepts(given):
        raise ApiError(
            401,
            "unauthorized",
            "missing or invalid API key: send it in the X-API-Key header "
            "or as 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )


# --- reading bodies within their limits ----------------------------------------------------


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _too_large(what: str, limit: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"{what} is over the limit of {limit:,} bytes")


def check_declared_length(request: Request, limit: int, what: str) -> None:
    declared = request.headers.get("content-length")
    if declared is None:
        return
    if not declared.isdigit():
        raise ApiError(400, "bad_request", f"Content-Length {declared[:40]!r} is not a number")
    if int(declared) > limit:
        raise _too_large(what, limit)


def _body_timeout(request: Request) -> float:
    service = getattr(request.app.state, "service", None) if "app" in request.scope else None
    return service.settings.body_timeout_s if service is not None else ApiSettings.body_timeout_s


async def limited_stream(request: Request, limit: int, what: str) -> AsyncIterator[bytes]:
    """The request body chunk by chunk, stopping with 413 as soon as it passes ``limit``,
    and with 408 when it has not all arrived within the body timeout (a client that sends
    slowly holds a connection and its buffers for as long as it likes otherwise)."""
    check_declared_length(request, limit, what)
    seen = 0
    timeout = _body_timeout(request)
    deadline = anyio.current_time() + timeout
    chunks = request.stream().__aiter__()
    try:
        while True:
            with anyio.move_on_after(max(0.0, deadline - anyio.current_time())) as scope:
                try:
                    chunk = await chunks.__anext__()
                except StopAsyncIteration:
                    return
            if scope.cancelled_caught:
                raise ApiError(
                    408,
                    "request_timeout",
                    f"{what} did not arrive within {timeout:g} s (send it at once)",
                )
            seen += len(chunk)
            if seen > limit:
                raise _too_large(what, limit)
            yield chunk
    except ClientDisconnect:
        raise ApiError(400, "client_disconnected", "the client closed the connection") from None


async def read_body(request: Request, limit: int, what: str) -> bytes:
    parts = [chunk async for chunk in limited_stream(request, limit, what)]
    return b"".join(parts)


async def read_form(
    request: Request, limit: int, max_files: int, what: str = "the request body"
) -> FormData:
    """Parse a multipart body streamed within ``limit``; 413 if it has more than ``max_files``."""
    parser = MultiPartParser(
        request.headers,
        limited_stream(request, limit, what),
        max_files=max_files,
        max_fields=16,
        max_part_size=64 * 1024,
    )
    try:
        return await parser.parse()
    except MultiPartException as exc:
        if exc.message.startswith("Too many files"):
            raise ApiError(
                413, "batch_too_large", f"more than {max_files} files in one request"
            ) from None
        raise ApiError(400, "bad_multipart", f"malformed multipart body: {exc.message}") from None


def _display_name(upload: UploadFile, field_name: str, index: int) -> str:
    raw = upload.filename or f"{field_name}[{index}]"
    return raw.replace("\r", " ").replace("\n", " ")[:120]


async def uploads_of(
    form: FormData, field_name: str, max_bytes: int
) -> list[tuple[bytes, str, str | None]]:
    """The files in multipart field ``field_name`` as (bytes, display name, client filename)."""
    values = form.getlist(field_name)
    if not values:
        present = sorted(set(form.keys()))
        got = f" (the body has: {', '.join(present)[:200]})" if present else ""
        raise ApiError(400, "missing_file", f"no file in multipart field {field_name!r}{got}")
    out = []
    for i, value in enumerate(values):
        if not isinstance(value, UploadFile):
            raise ApiError(
                400,
                "missing_file",
                f"multipart field {field_name!r} #{i} is text, not a file upload "
                '(a file part has filename="..." in its Content-Disposition)',
            )
        name = _display_name(value, field_name, i)
        data = await value.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise ApiError(413, "image_too_large", f"{name}: over the limit of {max_bytes:,} bytes")
        out.append((data, name, value.filename))
    return out


# --- decoding ------------------------------------------------------------------------------


def _image_error(exc: ImageError) -> ApiError:
    text = str(exc)
    if "decompression bomb" in text:
        return ApiError(413, "decompression_bomb", text)
    if "not an image" in text:
        return ApiError(400, "not_an_image", text)
    if "too large" in text:
        return ApiError(413, "image_too_large", text)
    if "empty file" in text:
        return ApiError(400, "empty_file", text)
    return ApiError(400, "corrupt_image", text)


def _too_many_pixels(name: str, width: int, height: int, max_pixels: int) -> ApiError:
    return ApiError(
        413,
        "too_many_pixels",
        f"{name}: {width}x{height} is over the limit of {max_pixels:,} pixels",
    )


def check_pixels(data: bytes, name: str, max_pixels: int) -> None:
    """Refuse a picture over ``max_pixels`` from its header, before it is decoded.

    Opening an image reads only its header, which gives its size: a 100 KB PNG can claim
    9000x9000 pixels, which would take seconds and a quarter of a gigabyte to decode.
    Bytes that are not an image are left for the decoder to name.
    """
    formats = [f for f in ACCEPTED_FORMATS if f in Image.OPEN]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=formats) as img:
                width, height = img.size
    except Exception:  # not an image, corrupt, or a bomb: decode_image says which
        return
    if width * height > max_pixels:
        raise _too_many_pixels(name, width, height, max_pixels)


def header_pixels(data: bytes) -> int:
    """The pixel count an image's header claims (0 for bytes that are not an image)."""
    formats = [f for f in ACCEPTED_FORMATS if f in Image.OPEN]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=formats) as img:
                width, height = img.size
    except Exception:  # not an image: the decoder names it
        return 0
    return width * height


def _give_memory_back() -> None:
    """Hand freed heap memory back to the OS (glibc keeps it otherwise, and a server that
    once decoded a big batch stays gigabytes large)."""
    import ctypes

    with suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


TRIM_ABOVE_PIXELS = 16_000_000
"""Requests that decoded more pixels than this give memory back when they end."""


def decode_all(items: Sequence[tuple[bytes, str]], max_pixels: int) -> list[Image.Image]:
    """Decode each image with the one decoder; the first bad one raises an ApiError naming it."""
    images = []
    for data, name in items:
        if not data:
            raise ApiError(400, "empty_file", f"{name}: empty file (0 bytes)")
        check_pixels(data, name, max_pixels)
        try:
            img = decode_image(data, name)
        except ImageError as exc:
            raise _image_error(exc) from None
        if img.width * img.height > max_pixels:  # a header that understated the size
            raise _too_many_pixels(name, img.width, img.height, max_pixels)
        images.append(img)
    return images


# --- the service ---------------------------------------------------------------------------


@dataclass
class Service:
    """What the endpoints share: settings, keys, the model holder, the batcher, usage."""

    settings: ApiSettings
    catalogue: Catalogue
    holder: ModelHolder
    batcher: MicroBatcher
    keys: KeyRing
    recorder: UsageRecorder | None
    decode_limiter: anyio.CapacityLimiter | None = None

    def retry_after(self) -> dict[str, str]:
        return {"Retry-After": str(max(1, math.ceil(self.settings.poll_s)))}

    def serving(self) -> LoadedRun:
        loaded = self.holder.current  # taken once: the request keeps this run to the end
        if loaded is None:
            raise ApiError(503, "no_model", self.no_model_reason(), headers=self.retry_after())
        return loaded

    def no_model_reason(self) -> str:
        if self.holder.last_error:
            return (
                f"no model is loaded: {self.holder.last_error}; repair the bundle or promote "
                "another run (the service picks it up without a restart)"
            )
        return (
            "no model is loaded: no run is active yet; train a run and promote it "
            "(python -m training fit --promote), the service picks it up without a restart"
        )

    pixels_in_flight: int = 0

    @asynccontextmanager
    async def admitted(self, items: Sequence[tuple[bytes, str]]) -> AsyncIterator[None]:
        """Admit a request's images before any is decoded, from their headers: over
        ``max_request_pixels`` for the request is 413; over ``max_pending_pixels`` for all
        admitted requests together is 503 with Retry-After. The pixels stay counted until
        the request's predictions are done; big requests give their memory back after."""
        claimed = [header_pixels(data) for data, _name in items]
        total = sum(claimed)
        limit = self.settings.max_request_pixels
        if total > limit:
            raise ApiError(
                413,
                "request_too_many_pixels",
                f"the images of this request hold {total:,} pixels together, over the limit "
                f"of {limit:,} per request: send fewer or smaller images at a time",
            )
        pending = self.settings.max_pending_pixels
        if self.pixels_in_flight and self.pixels_in_flight + total > pending:
            raise ApiError(
                503,
                "overloaded",
                f"try again shortly: {self.pixels_in_flight:,} pixels are being worked on "
                f"(limit {pending:,})",
                headers={"Retry-After": "1"},
            )
        self.pixels_in_flight += total
        try:
            yield
        finally:
            self.pixels_in_flight -= total
            if total > TRIM_ABOVE_PIXELS:
                # after the endpoint has let go of its pictures
                asyncio.get_running_loop().call_later(0.2, _give_memory_back)

    async def decode(self, items: Sequence[tuple[bytes, str]]) -> list[Image.Image]:
        return await anyio.to_thread.run_sync(
            decode_all, items, self.settings.max_pixels, limiter=self.decode_limiter
        )

    async def predict(self, loaded: LoadedRun, images: list[Image.Image]) -> list[Any]:
        try:
            return await self.batcher.predict(loaded.predictor, images)
        except Overloaded as exc:
            raise ApiError(
                503, "overloaded", f"try again shortly: {exc}", headers={"Retry-After": "1"}
            ) from None


def _usage(request: Request) -> dict[str, Any]:
    return request.scope.setdefault("state", {}).setdefault("skulab_usage", {})


def _elapsed_ms(request: Request) -> float:
    t0 = request.scope.get("state", {}).get("skulab_t0", time.perf_counter())
    return round((time.perf_counter() - t0) * 1000, 2)


class UsageMiddleware:
    """Times every recorded request and hands its row to the recorder when it is done."""

    def __init__(self, app: ASGIApp, service: Service):
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        recorder = self.service.recorder
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        scope.setdefault("state", {})["skulab_t0"] = t0
        if recorder is None or scope["path"] not in RECORDED:
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            info = scope["state"].get("skulab_usage", {})
            recorder.record(
                UsageRow(
                    endpoint=scope["path"],
                    status_code=status,
                    latency_ms=(time.perf_counter() - t0) * 1000,
                    run_id=info.get("run_id"),
                    model_name=info.get("model_name"),
                    sku=info.get("sku"),
                    n_images=info.get("n_images", 0),
                    error=info.get("error"),
                )
            )


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        _usage(request)["error"] = exc.code
        return error_response(exc.status, exc.code, exc.message, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        _usage(request)["error"] = code
        return error_response(
            exc.status_code, code, str(exc.detail), headers=getattr(exc, "headers", None)
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        _usage(request)["error"] = "invalid_request"
        message = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()
        )
        return error_response(422, "invalid_request", message or "invalid request")

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error in %s %s", request.method, request.url.path)
        _usage(request)["error"] = "internal_error"
        return error_response(500, "internal_error", f"internal error ({type(exc).__name__})")


_SINGLE_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {"file": {"type": "string", "format": "binary"}},
            }
        },
        **{t: {"schema": {"type": "string", "format": "binary"}} for t in RAW_TYPES},
    },
}
_BATCH_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["files"],
                "properties": {
                    "files": {
                        "type": "array",
                        "items": {"type": "string", "format": "binary"},
                        "minItems": 1,
                    }
                },
            }
        }
    },
}


def _set_torch_threads(n: int | None) -> int | None:
    """Set torch's intra-op thread count; returns the previous one (None: nothing set)."""
    if n is None:
        return None
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    return before


def create_app(
    settings: ApiSettings | None = None,
    *,
    catalogue: Catalogue | None = None,
    loader: PredictorLoader = load_predictor,
) -> FastAPI:
    """The API as an ASGI app; the model is loaded at startup (lifespan)."""
    settings = settings or ApiSettings()
    cat = catalogue or open_catalogue(settings.data_dir)
    pinned = resolve_run(cat, settings.run) if settings.run is not None else None
    service = Service(
        settings=settings,
        catalogue=cat,
        holder=ModelHolder(cat, pinned_run=pinned, loader=loader),
        batcher=MicroBatcher(
            threads=settings.predict_threads,
            max_images=settings.batch_images,
            max_pending_pixels=settings.max_pending_pixels,
        ),
        keys=KeyRing(settings.api_keys),
        recorder=UsageRecorder(cat) if settings.record_usage else None,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.decode_limiter = anyio.CapacityLimiter(settings.decode_threads)
        torch_threads = _set_torch_threads(settings.torch_threads)
        if pinned is not None:
            service.holder.current = await anyio.to_thread.run_sync(service.holder.load_run, pinned)
        else:
            await anyio.to_thread.run_sync(service.holder.refresh)
            if service.holder.current is None:
                log.warning(
                    "no model to serve in %s (%s); waiting for a run to be promoted",
                    cat.data_dir,
                    service.holder.last_error or "no active run",
                )
        service.batcher.start()
        if service.recorder is not None:
            service.recorder.start()
        watch = None
        if pinned is None:
            watch = asyncio.create_task(service.holder.watch(settings.poll_s))
        try:
            yield
        finally:
            if watch is not None:
                watch.cancel()
                with suppress(asyncio.CancelledError):
                    await watch
            await service.batcher.stop()
            if service.recorder is not None:
                await anyio.to_thread.run_sync(service.recorder.close)
            _set_torch_threads(torch_threads)

    app = FastAPI(
        title="skulab prediction API",
        version="1",
        description=(
            "Send a sneaker photo, get the sneaker model and the SKU (style code) with "
            'calibrated confidences. Errors are `{"error": {"code", "message"}}`.'
        ),
        lifespan=lifespan,
    )
    app.state.service = service
    _install_error_handlers(app)
    app.add_middleware(UsageMiddleware, service=service)

    def health() -> tuple[int, HealthResponse]:
        loaded = service.holder.current
        if loaded is None:
            return 503, HealthResponse(
                status="no_model", run_id=None, message=service.no_model_reason()
            )
        return 200, HealthResponse(
            status="ok", run_id=loaded.run_id, message=service.holder.last_error
        )

    @app.get(
        "/healthz",
        response_model=HealthResponse,
        responses={503: {"model": HealthResponse, "description": "No model is loaded yet."}},
        operation_id="healthz",
    )
    async def healthz() -> Any:
        """For load balancers: 200 when a model is loaded, 503 before. Needs no key.

        `message` says why the wanted run is not in service (a bundle that cannot be
        loaded), also while an older run still answers."""
        status, body = health()
        if status != 200:
            return JSONResponse(body.model_dump(), status, headers=service.retry_after())
        return body

    @app.head("/healthz", include_in_schema=False)
    async def healthz_head() -> Response:
        """The same status without a body, for load balancers that check with HEAD."""
        return Response(status_code=health()[0])

    @app.get(
        "/v1/model",
        operation_id="get_model",
        response_model=ModelResponse,
        responses={k: v for k, v in ERROR_RESPONSES.items() if k in (401, 503)},
        dependencies=[Depends(require_key)],
    )
    async def model_info(request: Request) -> ModelResponse:
        """The run in service: its classes, metrics, thresholds and when it was trained."""
        loaded = service.serving()
        _usage(request)["run_id"] = loaded.run_id
        active = await anyio.to_thread.run_sync(service.holder.active_run_id)
        return ModelResponse(
            **loaded.info,
            active=active == loaded.run_id,
            pinned=service.holder.pinned_run is not None,
            loaded_at=loaded.loaded_at,
        )

    @app.post(
        "/v1/predict",
        operation_id="predict",
        response_model=PredictResponse,
        responses={
            **ERROR_RESPONSES,
            422: {"model": ErrorResponse, "description": "A query parameter is not valid."},
        },
        dependencies=[Depends(require_key)],
        openapi_extra={"requestBody": _SINGLE_BODY},
    )
    async def predict(
        request: Request,
        add_to_catalogue: bool = Query(
            False,
            description="Also store the photo, and each sneaker region found in it, in the "
            "catalogue for labelling (source kind 'api'); the answer says their image ids.",
        ),
    ) -> PredictResponse:
        """One image: multipart field `file`, or the raw bytes with an `image/*` or
        `application/octet-stream` content type (the format is read from the bytes).
        The photo is searched for sneakers and each one found is classified on its own
        region (`sneakers`); `model` and `sku` answer for the main one."""
        loaded = service.serving()
        kind = media_type(request)
        if kind == "multipart/form-data":
            form = await read_form(
                request,
                settings.max_image_bytes + MULTIPART_OVERHEAD,
                1,
                f"the upload (an image of at most {settings.max_image_bytes:,} bytes)",
            )
            try:
                data, name, _ = (await uploads_of(form, "file", settings.max_image_bytes))[0]
            finally:
                await form.close()
        elif kind.startswith("image/") or kind == "application/octet-stream":
            data = await read_body(request, settings.max_image_bytes, "the image")
            name = "the request body"
        else:
            raise ApiError(
                415,
                "unsupported_media_type",
                f"content type {kind or '(none)'!r}: send multipart/form-data with the "
                "image in field 'file', or the image bytes with an image/* or "
                "application/octet-stream content type",
            )
        async with service.admitted([(data, name)]):
            images = await service.decode([(data, name)])
            answer = (await service.predict(loaded, images))[0]
            del images
        body = image_answer(answer)
        if add_to_catalogue:
            from inference.feedback import add_photo

            added = await anyio.to_thread.run_sync(
                lambda: add_photo(
                    service.holder.catalogue,
                    data,
                    name,
                    answer if hasattr(answer, "sneakers") else None,
                    "api",
                    kind="api",
                )
            )
            body["added"] = {"image_id": added.photo_id, "region_ids": added.region_ids}
        _usage(request).update(
            run_id=loaded.run_id,
            n_images=1,
            model_name=body["model"].name,
            sku=body["sku"].name,
        )
        return PredictResponse(**body, run_id=loaded.run_id, time_ms=_elapsed_ms(request))

    @app.post(
        "/v1/predict/batch",
        operation_id="predict_batch",
        response_model=BatchResponse,
        responses=ERROR_RESPONSES,
        dependencies=[Depends(require_key)],
        openapi_extra={"requestBody": _BATCH_BODY},
    )
    async def predict_batch(request: Request) -> BatchResponse:
        """Several images as multipart fields `files` (at most the batch limit)."""
        loaded = service.serving()
        kind = media_type(request)
        if kind != "multipart/form-data":
            raise ApiError(
                415,
                "unsupported_media_type",
                f"content type {kind or '(none)'!r}: send multipart/form-data with the "
                "images in fields 'files'",
            )
        form = await read_form(request, settings.max_batch_bytes, settings.max_batch)
        try:
            if not form.getlist("files"):
                present = sorted(set(form.keys()))
                got = f"; the body has: {', '.join(present)[:200]}" if present else ""
                raise ApiError(
                    400,
                    "empty_batch",
                    f"the batch has no images (send them in multipart fields 'files'{got})",
                )
            items = await uploads_of(form, "files", settings.max_image_bytes)
        finally:
            await form.close()
        pairs = [(data, name) for data, name, _ in items]
        async with service.admitted(pairs):
            images = await service.decode(pairs)
            answers = await service.predict(loaded, images)
            n_images = len(images)
            del images
        _usage(request).update(run_id=loaded.run_id, n_images=n_images)
        return BatchResponse(
            run_id=loaded.run_id,
            predictions=[
                BatchItem(**image_answer(a), index=i, filename=items[i][2])
                for i, a in enumerate(answers)
            ],
            time_ms=_elapsed_ms(request),
        )

    return app


def app_from_env() -> FastAPI:
    """App factory for ``uvicorn --factory`` with several workers (settings in the env)."""
    raw = os.environ.get(SETTINGS_ENV)
    return create_app(ApiSettings.from_json(raw) if raw else ApiSettings())


# --- command line --------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m inference serve``."""
    d = ApiSettings()
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on")
    parser.add_argument(
        "--run", default=None, help="serve this run (id or name) only; default: the active run"
    )
    parser.add_argument(
        "--data", default=None, help="data folder (default: $SKULAB_DATA or ./data)"
    )
    parser.add_argument(
        "--api-keys-file",
        default=None,
        help=f"file of API keys, one a line; also ${API_KEYS_ENV} (comma-separated). "
        "With keys, requests need X-API-Key or 'Authorization: Bearer'",
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="server processes (each loads the model)"
    )
    parser.add_argument(
        "--max-image-mb", type=float, default=d.max_image_bytes / MiB, help="largest image accepted"
    )
    parser.add_argument("--max-batch", type=int, default=d.max_batch, help="most images per batch")
    parser.add_argument(
        "--max-batch-mb",
        type=float,
        default=d.max_batch_bytes / MiB,
        help="largest batch request body",
    )
    parser.add_argument(
        "--predict-threads",
        type=int,
        default=d.predict_threads,
        help="predictions at once (default: one per core)",
    )
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=d.torch_threads,
        help="torch threads per prediction (0: torch's default)",
    )
    parser.add_argument(
        "--batch-images",
        type=int,
        default=d.batch_images,
        help="images of concurrent requests batched into one forward pass (1: none)",
    )
    parser.add_argument(
        "--poll",
        type=float,
        default=d.poll_s,
        help="seconds between checks for a newly promoted run",
    )
    parser.add_argument(
        "--no-usage", action="store_true", help="do not record requests in the catalogue"
    )
    parser.add_argument(
        "--max-request-megapixels",
        type=float,
        default=d.max_request_pixels / 1e6,
        help="pixels one request may bring, from the images' headers, before decoding",
    )
    parser.add_argument(
        "--body-timeout",
        type=float,
        default=d.body_timeout_s,
        help="seconds a client has to send its request body (408 after)",
    )
    parser.add_argument(
        "--max-header-kb",
        type=int,
        default=d.max_header_bytes // 1024,
        help="largest request line and headers together",
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=d.max_connections,
        help="connections and requests at once beyond which the server answers 503",
    )


def settings_from_args(args: argparse.Namespace) -> ApiSettings:
    d = ApiSettings()
    keys = read_api_keys(getattr(args, "api_keys_file", None), os.environ.get(API_KEYS_ENV))
    return replace(
        d,
        data_dir=getattr(args, "data", None),
        run=None if getattr(args, "run", None) is None else str(args.run),
        api_keys=keys,
        max_image_bytes=int(getattr(args, "max_image_mb", d.max_image_bytes / MiB) * MiB),
        max_batch=getattr(args, "max_batch", d.max_batch),
        max_batch_bytes=int(getattr(args, "max_batch_mb", d.max_batch_bytes / MiB) * MiB),
        poll_s=getattr(args, "poll", d.poll_s),
        predict_threads=getattr(args, "predict_threads", d.predict_threads),
        torch_threads=getattr(args, "torch_threads", d.torch_threads) or None,
        batch_images=getattr(args, "batch_images", d.batch_images),
        record_usage=not getattr(args, "no_usage", False),
        max_request_pixels=int(
            getattr(args, "max_request_megapixels", d.max_request_pixels / 1e6) * 1e6
        ),
        body_timeout_s=getattr(args, "body_timeout", d.body_timeout_s),
        max_header_bytes=getattr(args, "max_header_kb", d.max_header_bytes // 1024) * 1024,
        max_connections=getattr(args, "max_connections", d.max_connections),
    )


def server_limits(settings: ApiSettings) -> dict[str, Any]:
    """uvicorn's own limits for the service: the h11 protocol, whose limit on the request
    line and headers uvicorn sets (its default parser, httptools, takes headers of any
    size), idle keep-alive connections closed, and 503 beyond ``max_connections``."""
    return {
        "http": "h11",
        "h11_max_incomplete_event_size": settings.max_header_bytes,
        "timeout_keep_alive": settings.keep_alive_s,
        "limit_concurrency": settings.max_connections,
        "timeout_graceful_shutdown": 10,
    }


def main(args: argparse.Namespace) -> int:
    """Start the service (blocks until it is stopped); returns the exit status."""
    import uvicorn

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = settings_from_args(args)
    except OSError as exc:
        log.error("cannot read the API keys file: %s", exc)
        return 2
    workers = getattr(args, "workers", 1) or 1
    try:
        if workers > 1:
            if settings.run is not None:
                resolve_run(open_catalogue(settings.data_dir), settings.run)
            os.environ[SETTINGS_ENV] = settings.to_json()
            uvicorn.run(
                "inference.api:app_from_env",
                factory=True,
                host=args.host,
                port=args.port,
                workers=workers,
                **server_limits(settings),
            )
        else:
            uvicorn.run(
                create_app(settings), host=args.host, port=args.port, **server_limits(settings)
            )
    except RunNotFound as exc:
        log.error("%s", exc)
        return 2
    return 0


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(prog="python -m inference.api", description=__doc__)
    add_arguments(_parser)
    raise SystemExit(main(_parser.parse_args()))
