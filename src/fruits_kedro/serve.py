"""``fruits-kedro serve``: the evaluation pipeline's classifier over HTTP (FastAPI + uvicorn).

    POST /predict   multipart field ``file``: one photo -> {"top": [{"label", "probability"}, x3]}
    GET  /          a page to pick or drop a photo (or take one, on a phone) and see its top 3
    GET  /health    {"status": "ok", ...}

The classifier is the exported one (:mod:`fruits_kedro.ml.exported_classifier`): ONNX Runtime
and NumPy per request, loaded once at start-up; no JVM, no TensorFlow.

Whatever is uploaded, the server's memory stays bounded (:class:`ServeLimits`): a body larger
than the upload limit is refused before it is stored (413); a photo of more pixels than the
pixel budget is refused from its header (413); a JPEG is decoded at the reduced size the network
needs, other formats are box-reduced right after loading; at most ``max_decodes`` photos are
decoded at once, ``max_queued`` more wait (their uploads on disk), others get 429; and after
each decode the freed memory goes back to the system.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib.resources import files
from typing import Annotated, Any

from fastapi import FastAPI, File, HTTPException, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse

from fruits_kedro.imaging.decode import ImageDecodeError, ImageTooLargeError
from fruits_kedro.ml.exported_classifier import ExportedClassifier

TOP = 3
MULTIPART_OVERHEAD = 64 * 1024  # the form's boundaries and part headers around the photo


@dataclass(frozen=True)
class ServeLimits:
    """What one server accepts and does at once (defaults: ``fruits-kedro serve --help``).

    Args:
        max_upload_bytes: The largest photo file accepted.
        max_pixels: The most pixels (width x height) of a photo that is decoded: a phone photo's.
        max_decodes: Photos decoded at once; each may take up to 8 bytes per pixel of its photo.
        max_queued: Requests that wait for a decode; more at once get 429 (Retry-After).
    """

    max_upload_bytes: int
    max_pixels: int
    max_decodes: int
    max_queued: int

    def __post_init__(self) -> None:
        for name in ("max_upload_bytes", "max_pixels", "max_decodes"):
            if getattr(self, name) < 1:
                raise ValueError(f"serve: {name} must be at least 1, got {getattr(self, name)}")
        if self.max_queued < 0:
            raise ValueError(f"serve: max_queued must be 0 or more, got {self.max_queued}")


class _DecodeSlots:
    """At most ``slots`` holders at once and ``queued`` waiting; beyond that, 429."""

    def __init__(self, slots: int, queued: int) -> None:
        self._semaphore = asyncio.Semaphore(slots)
        self._slots, self._queued, self._waiting = slots, queued, 0

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        if self._semaphore.locked() and self._waiting >= self._queued:
            raise HTTPException(
                429,
                f"busy: {self._slots} photos are being decoded and {self._waiting} wait; retry in a moment",
                headers={"Retry-After": "1"},
            )
        self._waiting += 1
        try:
            await self._semaphore.acquire()
        finally:
            self._waiting -= 1
        try:
            yield
        finally:
            self._semaphore.release()


class _BodyLimit:
    """ASGI middleware: 413 for a request body over ``limit`` bytes, before it is parsed or
    stored (by its Content-Length, or as it streams in when it has none)."""

    def __init__(self, app: Any, limit: int, message: str) -> None:
        self.app, self.limit, self.message = app, limit, message

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.limit:
            await JSONResponse({"detail": self.message}, status_code=413)(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> dict:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise HTTPException(413, self.message)
            return message

        await self.app(scope, limited_receive, send)


def _malloc_function(name: str) -> Any:
    """glibc's ``name`` (mallopt, malloc_trim), or None on another C library."""
    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), name)
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _malloc_function("malloc_trim")


def _return_freed_memory() -> None:
    """Hand the heap's free pages back to the system: glibc keeps them otherwise, and a
    server's decode threads would each keep a photo's worth."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def _map_large_allocations() -> None:
    """Make glibc allocate every block over 1 MB (a decoded photo's) with its own mapping,
    returned to the system when freed; its default threshold grows to 32 MB after the first
    large free, and those blocks then stay in the heap."""
    mallopt = _malloc_function("mallopt")
    if mallopt is not None:
        m_mmap_threshold = -3
        mallopt(m_mmap_threshold, 1024 * 1024)


def create_app(classifier: ExportedClassifier, limits: ServeLimits) -> FastAPI:
    """The ASGI app serving ``classifier`` within ``limits``."""
    app = FastAPI(title="Fruits! classifier", version="1")
    page = files("fruits_kedro").joinpath("serve_page.html").read_text(encoding="utf-8")
    too_large = f"larger than {limits.max_upload_bytes / (1024 * 1024):g} MB"
    app.add_middleware(
        _BodyLimit, limit=limits.max_upload_bytes + MULTIPART_OVERHEAD, message=f"the upload is {too_large}"
    )
    slots = _DecodeSlots(limits.max_decodes, limits.max_queued)

    def decode(data: bytes) -> Any:
        try:
            return classifier.decode(data, max_pixels=limits.max_pixels)
        finally:
            _return_freed_memory()

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "backbone": classifier.settings["backbone"],
            "input_size": classifier.input_size,
            "labels": len(classifier.labels),
        }

    @app.post("/predict")
    async def predict(file: Annotated[UploadFile, File(description="one photo, any size: JPEG, PNG...")]) -> dict:
        if file.size is not None and file.size > limits.max_upload_bytes:
            raise HTTPException(413, f"{file.filename}: {too_large}")
        if file.size == 0:
            raise HTTPException(422, f"{file.filename}: empty file")
        async with slots.hold():  # the upload waits on disk, not in memory
            data = await file.read(limits.max_upload_bytes + 1)
            if len(data) > limits.max_upload_bytes:
                raise HTTPException(413, f"{file.filename}: {too_large}")
            if not data:
                raise HTTPException(422, f"{file.filename}: empty file")
            try:
                pixels = await run_in_threadpool(decode, data)
            except ImageTooLargeError as exc:
                raise HTTPException(413, f"{file.filename}: {exc} (serve --max-pixels)") from None
            except ImageDecodeError as exc:
                raise HTTPException(415, f"{file.filename}: {exc}") from None
            del data
        probabilities = (await run_in_threadpool(classifier.probabilities, pixels[None]))[0]
        best = probabilities.argsort()[::-1][:TOP]
        return {"top": [{"label": classifier.labels[i], "probability": float(probabilities[i])} for i in best]}

    return app


def serve(
    host: str,
    port: int,
    project_path: str = ".",
    env: str | None = None,
    params: dict | None = None,
    *,
    limits: ServeLimits,
) -> None:
    import uvicorn

    from fruits_kedro.predict import load_classifier

    _map_large_allocations()
    app = create_app(load_classifier(project_path, env=env, runtime_params=params), limits)
    uvicorn.run(app, host=host, port=port, log_level="info")
