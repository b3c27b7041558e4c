"""``fruits-kedro serve``: the evaluation pipeline's classifier over HTTP (FastAPI + uvicorn).

    POST /predict   multipart field ``file``: one photo -> {"top": [{"label", "probability"}, x3]}
    GET  /          a page to pick or drop a photo (or take one, on a phone) and see its top 3
    GET  /health    {"status": "ok", ...}

The classifier is the exported one (:mod:`fruits_kedro.ml.exported_classifier`): ONNX Runtime
and NumPy per request, loaded once at start-up; no JVM, no TensorFlow.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Annotated, Any

from fastapi import FastAPI, File, HTTPException, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse

from fruits_kedro.imaging.decode import ImageDecodeError
from fruits_kedro.ml.exported_classifier import ExportedClassifier

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
TOP = 3


def create_app(classifier: ExportedClassifier, max_upload_bytes: int = MAX_UPLOAD_BYTES) -> FastAPI:
    """The ASGI app serving ``classifier``."""
    app = FastAPI(title="Fruits! classifier", version="1")
    page = files("fruits_kedro").joinpath("serve_page.html").read_text(encoding="utf-8")

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
        data = await file.read(max_upload_bytes + 1)
        if len(data) > max_upload_bytes:
            raise HTTPException(413, f"{file.filename}: larger than {max_upload_bytes // (1024 * 1024)} MB")
        if not data:
            raise HTTPException(422, f"{file.filename}: empty file")
        try:
            pixels = await run_in_threadpool(classifier.decode, data)
        except ImageDecodeError as exc:
            raise HTTPException(415, f"{file.filename}: {exc}") from None
        probabilities = (await run_in_threadpool(classifier.probabilities, pixels[None]))[0]
        best = probabilities.argsort()[::-1][:TOP]
        return {"top": [{"label": classifier.labels[i], "probability": float(probabilities[i])} for i in best]}

    return app


def serve(host: str, port: int, project_path: str = ".", env: str | None = None, params: dict | None = None) -> None:
    import uvicorn

    from fruits_kedro.predict import load_classifier

    app = create_app(load_classifier(project_path, env=env, runtime_params=params))
    uvicorn.run(app, host=host, port=port, log_level="info")
